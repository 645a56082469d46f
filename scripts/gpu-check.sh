#!/usr/bin/env bash
# Checks Hepar on a machine with an NVIDIA GPU (H100/H200, CUDA 12 or 13 driver) that has no Rust
# toolchain: build a bundle of stripped release executables here, carry it there, run it there.
#
#   bash scripts/gpu-check.sh bundle [DIR]   # here: release binary + op-suite test executables
#                                            # + the seed fixtures, stripped, into DIR (gpu-bundle)
#   bash scripts/gpu-check.sh run [DIR]      # there: the op suite on cpu and cuda, `hepar verify
#                                            # --device cuda`, `hepar bench --device cuda`
#
# `run` needs NVRTC and the CUDA headers on the GPU machine: it finds them in the CUDA toolkit
# (/usr/local/cuda) or the Python wheels of PyTorch's CUDA (nvidia/cu13, nvidia/cuda_nvrtc), or
# takes HEPAR_NVRTC_LIB and HEPAR_CUDA_INCLUDE as given. Logs go to $OUT when it is set (the
# device tool's folder that comes back), else to DIR/logs. The whole run takes a few minutes.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
dir=${2:-gpu-bundle}

# The op suite: every test file whose tests loop over HEPAR_TEST_DEVICES.
SUITE=(ops_forward ops_backward ops_conv ops_pool_upsample ops_errors networks cuda_kernels gpu_reduce gpu_norm gpu_pool_upsample gpu_matmul_conv gpu_conv_implicit gpu_conv_wgrad)
FIXTURES=(liver3d_forward tumor2d_forward train2d_small train3d_small
    unet2d_classic_forward unet2d_classic_train keras_unet2d_forward keras_unet2d_train
    unet3d_3class_forward unet3d_3class_train res3dunet_forward res3dunet_train)

bundle() {
    set -e
    rm -rf "$dir"
    mkdir -p "$dir/tests" "$dir/fixtures/seed"
    cargo build --release --locked
    cp target/release/hepar "$dir/hepar"
    # Test executables: cargo prints each one's path as JSON.
    local listing
    listing=$(cargo test --release --locked --no-run --message-format=json "${SUITE[@]/#/--test=}")
    for name in "${SUITE[@]}"; do
        local exe
        exe=$(printf '%s\n' "$listing" | python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name and "test" in m["target"]["kind"]:
        print(m["executable"])
' "$name")
        [ -n "$exe" ] || { echo "gpu-check: no test executable for $name" >&2; exit 1; }
        cp "$exe" "$dir/tests/$name"
    done
    strip "$dir/hepar" "$dir"/tests/*
    local fx=../shared/fixtures
    [ -d "$fx" ] || { echo "gpu-check: $fx is missing" >&2; exit 1; }
    for f in "${FIXTURES[@]}"; do cp "$fx/$f.safetensors" "$dir/fixtures/"; done
    cp "$fx"/seed/*.pth "$dir/fixtures/seed/"
    du -sh "$dir"
    echo "bundle ready: carry '$dir' and run: bash scripts/gpu-check.sh run $dir"
}

# Points the loader and Hepar at an NVRTC and at cuda_fp16.h on the GPU machine.
find_cuda_tools() {
    local lib=${HEPAR_NVRTC_LIB:-}
    if [ -z "$lib" ]; then
        lib=$(python3 - <<'EOF' 2>/dev/null
import glob, os, site, sys
roots = site.getsitepackages() + [site.getusersitepackages()] + sys.path
pats = ["/usr/local/cuda/lib64/libnvrtc.so*", "/usr/local/cuda/targets/*/lib/libnvrtc.so*"]
for r in roots:
    pats += [os.path.join(r, "nvidia/cu13/lib/libnvrtc.so*"), os.path.join(r, "nvidia/cuda_nvrtc/lib/libnvrtc.so*")]
for p in pats:
    for f in sorted(glob.glob(p)):
        if "builtins" not in f and "alt" not in f:
            print(f); sys.exit()
EOF
)
    fi
    [ -n "$lib" ] || { echo "gpu-check: no libnvrtc found; set HEPAR_NVRTC_LIB" >&2; return 1; }
    # cudarc opens NVRTC by the name libnvrtc.so: give it one pointing at the library found.
    local shim=/tmp/hepar-nvrtc
    mkdir -p "$shim"
    ln -sf "$(readlink -f "$lib")" "$shim/libnvrtc.so"
    export HEPAR_NVRTC_LIB="$shim/libnvrtc.so"
    export LD_LIBRARY_PATH="$shim:$(dirname "$(readlink -f "$lib")")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if [ -z "${HEPAR_CUDA_INCLUDE:-}" ]; then
        local inc
        inc=$(ls -d /usr/local/cuda/include /usr/local/cuda/targets/*/include 2>/dev/null | while read -r d; do [ -f "$d/cuda_fp16.h" ] && echo "$d" && break; done)
        if [ -z "$inc" ]; then
            inc=$(python3 -c 'import glob,site; print(next(iter(sorted(d[:-12] for r in site.getsitepackages() for d in glob.glob(r+"/nvidia/*/include/cuda_fp16.h"))), ""))' 2>/dev/null)
        fi
        [ -n "$inc" ] && export HEPAR_CUDA_INCLUDE="$inc"
    fi
    echo "NVRTC: $(readlink -f "$lib"); CUDA headers: ${HEPAR_CUDA_INCLUDE:-none found}"
}

step() {
    local name=$1
    shift
    local started=$SECONDS
    echo "== $name: $*"
    "$@" >"$logs/$name.log" 2>&1
    local rc=$?
    tail -n 15 "$logs/$name.log"
    echo "== $name: exit $rc in $((SECONDS - started)) s"
    [ $rc -eq 0 ] || failures+=("$name")
}

run_checks() {
    [ -x "$dir/hepar" ] || { echo "gpu-check: $dir/hepar is missing; run 'bundle' first" >&2; exit 1; }
    logs=$(realpath -m "${OUT:-$dir/logs}")
    mkdir -p "$logs"
    failures=()
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$logs/nvidia-smi.txt"
    find_cuda_tools || exit 1
    step version "$dir/hepar" version
    export HEPAR_TEST_DEVICES=cpu,cuda
    for t in "${SUITE[@]}"; do
        step "test-$t" "$dir/tests/$t" --test-threads 4
    done
    (cd "$dir/fixtures" && step verify ../hepar verify --device cuda ./*.safetensors)
    step bench "$dir/hepar" bench --device cuda --repeats 3
    step bench-cpu "$dir/hepar" bench --device cpu --repeats 1 liver3d-step
    if [ ${#failures[@]} -gt 0 ]; then
        echo "gpu-check: FAILED: ${failures[*]}"
        exit 1
    fi
    echo "gpu-check: all passed"
}

case "$mode" in
    bundle) bundle ;;
    run) run_checks ;;
    *)
        sed -n '2,13p' "$0"
        exit 2
        ;;
esac
