#!/usr/bin/env bash
# GPU check (issue 9), one run on a machine with a GPU (fits in 10 minutes on 16 cores):
# builds the CLI and the tests with a GPU backend, runs the parity and control tests on the
# GPU (NEURAL_STYLE_DEVICE=gpu; the parity test fails if no GPU answers), then benchmarks
# neural-style --device gpu beside PyTorch on CUDA at 512², 1024² and 2048² (s/step and peak
# GPU memory from nvidia-smi; tools/bench.py).
#
#   tools/device_check.sh [cuda|wgpu]      (default: cuda; wgpu for Vulkan/Metal/DX12)
#
# Without a GPU, `tools/device_check.sh wgpu` runs the same on a CPU Vulkan driver (Debian's
# mesa-vulkan-drivers: lavapipe) with the benchmark at 256² only.
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${1:-cuda}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-gpu}
export NEURAL_STYLE_DEVICE=gpu
features="neural-style/$backend,neural-style-cli/$backend"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
command -v vulkaninfo >/dev/null && vulkaninfo --summary 2>/dev/null | grep -E "deviceName|driverName" || true

echo "== build ($backend)"
time cargo build --release --locked -p neural-style-cli --features "$features"
time cargo test --release --locked -p neural-style --features "neural-style/$backend" --no-run

echo "== parity and controls on the GPU"
cargo test --release --locked -p neural-style --features "neural-style/$backend" \
    --test parity --test controls -- --nocapture 2>&1 | grep -E "^test |backend|result|panicked|error"

bin="$CARGO_TARGET_DIR/release/neural-style"
if command -v nvidia-smi >/dev/null; then
    echo "== benchmark: neural-style on the GPU beside PyTorch on CUDA"
    python3 tools/bench.py --device gpu --sizes 512,1024,2048 --steps 5 --binary "$bin" \
        || echo "(benchmark failed: is torch with CUDA installed?)"
else
    echo "== benchmark: no NVIDIA GPU, so the same build on its GPU device and on the CPU"
    "$bin" bench --device gpu --size 128 --steps 3
    "$bin" bench --device cpu --size 128 --steps 3
fi
