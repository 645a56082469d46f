#!/usr/bin/env bash
# Installs Hepar's non-Rust prerequisites from PyPI: NVRTC and the CUDA headers (kernels are compiled at
# run time and run on the PTX virtual machine when no GPU is present), ptxas (`hepar kernels report`
# assembles every kernel with it), nibabel (tests compare our NIfTI reader with it), pydicom (the
# DICOM reader's cross-check, with its public test files) and opencv-python-headless (the CLAHE
# reference). Safe to run again.
set -euo pipefail
python3 -m pip install --quiet --disable-pip-version-check \
  nvidia-cuda-nvrtc-cu12 nvidia-cuda-runtime-cu12 nvidia-cuda-nvcc-cu12 nibabel pydicom opencv-python-headless
