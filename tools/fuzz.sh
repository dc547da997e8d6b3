#!/usr/bin/env bash
# Fuzz the image decoder and the weights parser with cargo-fuzz (libFuzzer; needs a nightly
# toolchain, installed with rustup if missing, and cargo-fuzz, installed if missing).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]   (default 600)
#
# Seeds come from the test fixtures; the corpus lives in fuzz/corpus/ (ignored by git) and is
# minimised after each run so it stays small. A crash stops the script with the input saved
# under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/image_decode fuzz/corpus/weights_parse
# Seeds: a few small images of different formats, and the tiny weights fixtures.
python3 - <<'PY' 2>/dev/null || true
from PIL import Image
img = Image.new("RGB", (5, 4), (200, 30, 90))
for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif"), ("WEBP", "webp")):
    img.save(f"fuzz/corpus/image_decode/seed.{ext}", fmt)
Image.new("LA", (3, 3)).save("fuzz/corpus/image_decode/seed-la.png")
PY
cp crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors fuzz/corpus/weights_parse/seed.safetensors
cp crates/neural-style-testdata/fixtures/tiny_vgg19.pth fuzz/corpus/weights_parse/seed.pth
for target in image_decode weights_parse; do
  maxlen=65536
  [ "$target" = weights_parse ] && maxlen=400000
  echo "== $target: $secs s"
  cargo +nightly fuzz run --fuzz-dir fuzz -s none "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -max_len=$maxlen -rss_limit_mb=4096 -print_final_stats=1 2>&1 \
    | grep -E "^(#|stat::|Done|==|SUMMARY|artifact)" | tail -n 12
  cargo +nightly fuzz cmin --fuzz-dir fuzz -s none "$target" "fuzz/corpus/$target" >/dev/null 2>&1 || true
done
