"""Reference reader for tests/data_nibabel.rs: nibabel reads NIfTI files and writes test files.

describe FILE...   one JSON object per line: what nibabel reports for each file
write DIR          writes small NIfTI files with nibabel's header code and prints their names
"""
import gzip
import json
import math
import os
import sys

import numpy as np
import nibabel as nib


def finite_or_text(x):
    x = float(x)
    return x if math.isfinite(x) else str(x)


def load(path):
    img = nib.load(path)
    if not hasattr(img.header, "get_best_affine"):  # CIFTI-2 is a NIfTI-2 file underneath
        img = nib.Nifti2Image.from_filename(path)
    return img


def describe(path):
    img = load(path)
    hdr = img.header
    data = np.asarray(img.get_fdata(), dtype=np.float64)
    flat = data.ravel(order="F")  # file order: dim[1] fastest
    picks = np.unique(np.linspace(0, flat.size - 1, min(flat.size, 2000)).astype(np.int64))
    affine = hdr.get_best_affine()
    return {
        "file": path,
        "shape": [int(s) for s in img.shape],
        "datatype": hdr.get_data_dtype().name,
        "spacing": [float(z) for z in hdr.get_zooms()],
        "affine": affine.tolist(),
        "orientation": "".join(nib.aff2axcodes(affine)),
        "min": finite_or_text(data.min()),
        "max": finite_or_text(data.max()),
        "mean": finite_or_text(data.mean()),
        "sample_index": picks.tolist(),
        "sample_value": [finite_or_text(v) for v in flat[picks]],
    }


def write(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(3)
    shape = (5, 4, 3)
    theta = 0.3
    rot = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([0.8, 0.9, 2.5])
    affine[:3, 3] = [-20.5, 13.0, 7.25]
    sform = affine.copy()
    sform[0, 1] = 0.05  # sform differs from qform, so which one is chosen is visible
    names = []
    kinds = ["uint8", "int8", "int16", "uint16", "int32", "float32", "float64"]
    for version in (1, 2):
        for endian in ("<", ">"):
            for kind in kinds:
                for forms in ("both", "qform", "none"):
                    if forms != "both" and kind != "int16":
                        continue
                    dt = np.dtype(kind).newbyteorder(endian)
                    info = np.iinfo(kind) if np.dtype(kind).kind in "iu" else None
                    lo, hi = (info.min, info.max) if info else (-1e4, 1e4)
                    raw = rng.uniform(max(lo, -3e4), min(hi, 3e4), size=shape)
                    raw = raw.astype(kind) if info else raw
                    hdr = (nib.Nifti1Header if version == 1 else nib.Nifti2Header)(endianness=endian)
                    hdr.set_data_shape(shape)
                    hdr.set_data_dtype(dt)
                    if forms in ("both", "qform"):
                        hdr.set_qform(affine, 1)
                    if forms == "both":
                        hdr.set_sform(sform, 2)
                    if forms == "none":
                        hdr.set_zooms((0.8, 0.9, 2.5))
                    if kind == "int16":
                        hdr["scl_slope"] = 2.5
                        hdr["scl_inter"] = -10.0
                    offset = 352 if version == 1 else 544
                    hdr.set_data_offset(offset)
                    body = np.asarray(raw, dtype=dt).tobytes(order="F")
                    name = f"nib-v{version}-{'be' if endian == '>' else 'le'}-{kind}-{forms}.nii"
                    blob = bytearray(hdr.binaryblock)
                    blob += b"\0" * (offset - len(blob))
                    blob += body
                    gz = kind in ("int16", "float32")
                    path = os.path.join(out, name + (".gz" if gz else ""))
                    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
                        f.write(bytes(blob))
                    names.append(path)
    for n in names:
        print(n)


if __name__ == "__main__":
    if sys.argv[1] == "describe":
        for p in sys.argv[2:]:
            print(json.dumps(describe(p)))
    elif sys.argv[1] == "write":
        write(sys.argv[2])
    elif sys.argv[1] == "datadir":
        print(os.path.join(os.path.dirname(nib.__file__), "tests", "data"))
