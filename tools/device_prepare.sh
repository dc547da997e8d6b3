#!/usr/bin/env bash
# Builds what tools/device_check.sh runs on a GPU machine that cannot reach the package
# registries: the CLI and the parity/controls test binaries with the wgpu backend, stripped
# and xz-compressed into device-bin/ (about 36 MB; gitignored), to be carried there.
# (The `cuda` feature cannot be built offline: a build script of burn's CUDA stack
# downloads LLVM. wgpu reaches NVIDIA GPUs through their Vulkan driver.)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-gpu}
cargo build --release --locked -p neural-style-cli --features neural-style-cli/wgpu
json=$(cargo test --release --locked -p neural-style --features neural-style/wgpu --no-run \
    --test parity --test controls --message-format=json)
rm -rf device-bin && mkdir -p device-bin
cp "$CARGO_TARGET_DIR/release/neural-style" device-bin/neural-style
for t in parity controls; do
    exe=$(echo "$json" | grep "\"name\":\"$t\"" | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -1)
    cp "$exe" "device-bin/$t"
done
strip device-bin/*
xz -T0 -6 device-bin/*
ls -la device-bin
