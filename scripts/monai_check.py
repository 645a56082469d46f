"""Cross-check of `hepar infer` and `hepar eval` against MONAI itself, on cases made here.

Sliding windows: the seed's liver network (../shared/fixtures/seed/liver3d.pth) over random
volumes through `hepar infer`, and the same weights in PyTorch (benches/pytorch/hepar_bench.py's
CotNextUNet) through `monai.inferers.sliding_window_inference`; the sigmoid probabilities must
agree voxel for voxel (float32 arithmetic on both sides). The cases cover uneven window
placement, a volume smaller than the window (padding), overlap 0 and both blend modes.

Metrics: random blob masks on an anisotropic grid through `hepar eval`, and MONAI's
`compute_dice`, `compute_iou`, `compute_hausdorff_distance(percentile=95)` and
`compute_average_surface_distance(symmetric=True)` with the same spacing.

Needs torch, monai and nibabel (`pip install torch monai nibabel`) and a built hepar:
    python3 scripts/monai_check.py [--hepar target/release/hepar] [--seed-dir DIR]
Exits non-zero when a difference exceeds its tolerance.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import nibabel as nib
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "benches", "pytorch"))
from hepar_bench import CotNextUNet  # noqa: E402

# (volume z,y,x; roi z,y,x; overlap; blend; batch)
WINDOW_CASES = [
    ((40, 72, 60), (32, 48, 48), 0.5, "gaussian", 2),
    ((20, 40, 56), (32, 48, 48), 0.25, "constant", 1),
    ((48, 64, 64), (32, 32, 32), 0.0, "constant", 3),
    ((36, 50, 70), (16, 32, 32), 0.7, "gaussian", 4),
]
PROBABILITY_TOLERANCE = 2e-5
METRIC_TOLERANCE = 1e-4


def write_nifti(path, zyx, spacing_zyx=(1.0, 1.0, 1.0), dtype=np.float32):
    affine = np.diag([spacing_zyx[2], spacing_zyx[1], spacing_zyx[0], 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(zyx.transpose(2, 1, 0)).astype(dtype), affine), path)


def read_zyx(path):
    return np.asarray(nib.load(path).dataobj).transpose(2, 1, 0)


def check_windows(hepar, seed_dir, work):
    from monai.inferers import sliding_window_inference

    weights = os.path.join(seed_dir, "liver3d.pth")
    model = CotNextUNet(3, 1, 1, 16).eval()
    model.load_state_dict(torch.load(weights, map_location="cpu"), strict=False)
    rng = np.random.default_rng(7)
    worst = 0.0
    for i, (shape, roi, overlap, blend, batch) in enumerate(WINDOW_CASES):
        volume = rng.standard_normal(shape).astype(np.float32)
        src, out = os.path.join(work, f"vol{i}.nii.gz"), os.path.join(work, f"prob{i}.nii.gz")
        write_nifti(src, volume)
        subprocess.run(
            [hepar, "infer", "--model", weights, "--arch", "cotnext3d", "--in-channels", "1",
             "--n-channels", "16", "--input", src, "--output", out,
             "--roi", ",".join(map(str, roi)), "--overlap", str(overlap), "--blend", blend,
             "--batch", str(batch)],
            check=True, capture_output=True)
        ours = read_zyx(out)
        with torch.no_grad():
            logits = sliding_window_inference(
                torch.from_numpy(volume)[None, None], roi, batch, model, overlap=overlap,
                mode=blend, sigma_scale=0.125, padding_mode="constant", cval=0.0)
        theirs = torch.sigmoid(logits)[0, 0].numpy()
        diff = float(np.abs(ours - theirs).max())
        worst = max(worst, diff)
        print(f"window case {i}: volume {shape} roi {roi} overlap {overlap} {blend}: "
              f"max |hepar - monai| = {diff:.2e}")
    return worst <= PROBABILITY_TOLERANCE


def blobs(rng, shape, count, radius):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    mask = np.zeros(shape, bool)
    for _ in range(count):
        centre = rng.uniform(0, shape)
        r = rng.uniform(radius / 2, radius, 3)
        mask |= (((grid - centre) / r) ** 2).sum(-1) < 1.0
    return mask


def check_metrics(hepar, work):
    from monai.metrics import (compute_average_surface_distance, compute_dice,
                               compute_hausdorff_distance, compute_iou)

    rng = np.random.default_rng(11)
    spacing = (2.5, 0.8, 0.7)
    shape = (24, 48, 40)
    ok = True
    for i in range(4):
        # The prediction: the truth shifted, with a blob added and one cut out.
        liver_t = blobs(rng, shape, 2, 14)
        liver_p = (np.roll(liver_t, (1, 2, -1), (0, 1, 2)) | blobs(rng, shape, 1, 6)) & ~blobs(rng, shape, 1, 5)
        tumor_t = blobs(rng, shape, 8, 8) & liver_t
        tumor_p = (np.roll(tumor_t, (0, -1, 2), (0, 1, 2)) | blobs(rng, shape, 1, 3)) & liver_p
        truth = np.where(tumor_t, 2, np.where(liver_t, 1, 0)).astype(np.uint8)
        pred = np.where(tumor_p, 2, np.where(liver_p, 1, 0)).astype(np.uint8)
        p, t = os.path.join(work, f"pred{i}.nii.gz"), os.path.join(work, f"truth{i}.nii.gz")
        write_nifti(p, pred, spacing, np.uint8)
        write_nifti(t, truth, spacing, np.uint8)
        report = os.path.join(work, f"report{i}.json")
        subprocess.run([hepar, "eval", "--pred", p, "--truth", t, "--json", report],
                       check=True, capture_output=True)
        case = json.load(open(report))["cases"][0]
        for name, (mp, mt) in {"liver": (pred >= 1, truth >= 1), "tumor": (pred == 2, truth == 2)}.items():
            yp = torch.from_numpy(mp[None, None].astype(np.float32))
            yt = torch.from_numpy(mt[None, None].astype(np.float32))
            theirs = {
                "dice": compute_dice(yp, yt, include_background=True).item(),
                "iou": compute_iou(yp, yt, include_background=True).item(),
                "hd95_mm": compute_hausdorff_distance(yp, yt, include_background=True, percentile=95,
                                                      spacing=spacing).item(),
                "assd_mm": compute_average_surface_distance(yp, yt, include_background=True,
                                                            symmetric=True, spacing=spacing).item(),
            }
            for key, value in theirs.items():
                ours = case[name][key]
                if ours is None or not np.isfinite(value):
                    # Empty masks: MONAI gives nan/inf where hepar's report has null (or its
                    # documented empty-mask convention); nothing to compare.
                    print(f"metrics case {i} {name} {key}: hepar {ours} monai {value} (undefined)")
                    continue
                diff = abs(ours - value)
                bad = diff > METRIC_TOLERANCE * max(1.0, abs(value))
                ok &= not bad
                print(f"metrics case {i} {name} {key}: hepar {ours:.6f} monai {value:.6f}"
                      f"{'  MISMATCH' if bad else ''}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hepar", default=os.path.join(HERE, "..", "target", "release", "hepar"))
    parser.add_argument("--seed-dir", default=os.path.join(HERE, "..", "..", "shared", "fixtures", "seed"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory() as work:
        windows = check_windows(args.hepar, args.seed_dir, work)
        metrics = check_metrics(args.hepar, work)
    print(f"sliding windows {'agree' if windows else 'DISAGREE'}; metrics {'agree' if metrics else 'DISAGREE'}")
    return 0 if windows and metrics else 1


if __name__ == "__main__":
    sys.exit(main())
