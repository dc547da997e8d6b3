#!/usr/bin/env bash
# GPU check (issue 9), one run on a machine with a GPU (fits in 10 minutes on 16 cores):
# builds the CLI and the tests with a GPU backend, runs the parity and control tests on the
# GPU (NEURAL_STYLE_DEVICE=gpu; the parity test fails if no GPU answers), then benchmarks
# neural-style --device gpu beside PyTorch on CUDA at 512², 1024² and 2048² (s/step and peak
# GPU memory from nvidia-smi; tools/bench.py).
#
#   tools/device_check.sh [wgpu|cuda]      (default: wgpu: Vulkan/Metal/DX12)
#
# A machine that cannot reach crates.io cannot build: run tools/device_prepare.sh here first
# and carry device-bin/ (prebuilt wgpu binaries, xz-compressed); they are used when present.
# Without a GPU, `tools/device_check.sh wgpu` runs the same on a CPU Vulkan driver (Debian's
# mesa-vulkan-drivers: lavapipe) with a 128² benchmark instead.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-wgpu}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-gpu}
export NEURAL_STYLE_DEVICE=gpu
features="neural-style/$backend,neural-style-cli/$backend"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
command -v vulkaninfo >/dev/null && vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName" || true

export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
if [ -d device-bin ]; then
    echo "== prebuilt binaries (device-bin/)"
    for f in device-bin/*.xz; do xz -dkf "$f"; done
    chmod +x device-bin/neural-style device-bin/parity device-bin/controls
    bin=device-bin/neural-style
    echo "== parity and controls on the GPU"
    # Test binaries find their fixtures relative to the crate.
    (cd crates/neural-style && ../../device-bin/parity --nocapture && ../../device-bin/controls --nocapture) 2>&1 \
        | grep -E "^test |backend|rel err|result|panicked|error"
else
    echo "== build ($backend)"
    time cargo build --release --locked -p neural-style-cli --features "$features"
    echo "== parity and controls on the GPU"
    cargo test --release --locked -p neural-style --features "neural-style/$backend" \
        --test parity --test controls -- --nocapture 2>&1 | grep -E "^test |backend|rel err|result|panicked|error"
    bin="$CARGO_TARGET_DIR/release/neural-style"
fi

if command -v nvidia-smi >/dev/null; then
    echo "== benchmark: neural-style on the GPU beside PyTorch on CUDA"
    python3 tools/bench.py --device gpu --sizes 512,1024,2048 --steps 5 --binary "$bin" \
        || echo "(benchmark failed: is torch with CUDA installed?)"
else
    echo "== benchmark: no NVIDIA GPU, so the same build on its GPU device and on the CPU"
    "$bin" bench --device gpu --size 128 --steps 3
    "$bin" bench --device cpu --size 128 --steps 3
fi
