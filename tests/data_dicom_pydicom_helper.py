"""Reports what pydicom reads from its own public test files, for tests/data_dicom_pydicom.rs.

Usage: data_dicom_pydicom_helper.py NAME...   prints one JSON object per line: the file's path,
transfer syntax, size, geometry attributes and its pixel values after pydicom's modality LUT.
"""
import json
import sys

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_modality_lut


def floats(ds, keyword):
    value = ds.get(keyword)
    if value is None:
        return None
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return [float(v) for v in value]
    return [float(value)]


def describe(name):
    path = get_testdata_file(name)
    if path is None:
        raise SystemExit(f"pydicom has no test file {name}")
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    out = {
        "name": name,
        "file": path,
        "transfer_syntax": str(ds.file_meta.TransferSyntaxUID),
        "transfer_syntax_name": ds.file_meta.TransferSyntaxUID.name,
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "position": floats(ds, "ImagePositionPatient"),
        "orientation": floats(ds, "ImageOrientationPatient"),
        "pixel_spacing": floats(ds, "PixelSpacing"),
        "slice_thickness": floats(ds, "SliceThickness"),
        "series_uid": str(ds.get("SeriesInstanceUID", "")),
    }
    try:
        full = pydicom.dcmread(path)
        values = apply_modality_lut(full.pixel_array, full).astype(np.float64)
        out["values"] = values.ravel().tolist()
    except Exception as e:  # noqa: BLE001 - the Rust test checks that Hepar fails too
        out["error"] = f"{type(e).__name__}: {e}"
    return out


for name in sys.argv[1:]:
    print(json.dumps(describe(name)))
