#!/usr/bin/env bash
# Fuzz the image decoder, the weights parser, the web server's upload path and the
# checkpoint reader with
# cargo-fuzz (libFuzzer; needs a nightly toolchain, installed with rustup if missing, and
# cargo-fuzz, installed if missing).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]   (default 600; image_decode
#                                                    weights_parse web_upload
#                                                    checkpoint_load)
#
# Seeds come from the test fixtures; the corpus lives in fuzz/corpus/ (ignored by git) and is
# minimised after each run so it stays small. A crash stops the script with the input saved
# under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
shift || true
if [ $# -gt 0 ]; then targets=("$@"); else targets=(image_decode weights_parse web_upload checkpoint_load); fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p fuzz/corpus/image_decode fuzz/corpus/weights_parse fuzz/corpus/web_upload fuzz/corpus/checkpoint_load
# Seeds: a few small images of different formats, and the tiny weights fixtures.
python3 - <<'PY' 2>/dev/null || true
from PIL import Image
img = Image.new("RGB", (5, 4), (200, 30, 90))
for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif"), ("WEBP", "webp")):
    img.save(f"fuzz/corpus/image_decode/seed.{ext}", fmt)
Image.new("LA", (3, 3)).save("fuzz/corpus/image_decode/seed-la.png")
# Job uploads as the page sends them (boundary FUZZ, as the target's request declares).
import io
def part(name, data, filename=None, ctype=None):
    head = f'--FUZZ\r\nContent-Disposition: form-data; name="{name}"'
    if filename:
        head += f'; filename="{filename}"\r\nContent-Type: {ctype}'
    return head.encode() + b"\r\n\r\n" + data + b"\r\n"
def encoded(fmt, size=(24, 18)):
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, fmt)
    return out.getvalue()
settings = b'{"size": 32, "iterations": 2}'
jpeg = encoded("JPEG")
for name, parts in {
    "png": [part("settings", settings), part("content", encoded("PNG"), "c.png", "image/png"),
            part("style", encoded("PNG", (16, 16)), "s.png", "image/png")],
    "jpeg": [part("content", jpeg, "c.jpg", "image/jpeg"), part("style", jpeg, "s.jpg", "image/jpeg")],
    "cut": [part("content", jpeg[: len(jpeg) // 2], "c.jpg", "image/jpeg"),
            part("style", encoded("GIF"), "s.gif", "image/gif")],
}.items():
    with open(f"fuzz/corpus/web_upload/seed-{name}", "wb") as f:
        f.write(b"".join(parts) + b"--FUZZ--\r\n")
PY
cp crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors fuzz/corpus/weights_parse/seed.safetensors
cp crates/neural-style-testdata/fixtures/tiny_vgg19.pth fuzz/corpus/weights_parse/seed.pth
# Checkpoints of a tiny run: after its first iterations, and later with a fuller history.
if [ ! -e fuzz/corpus/checkpoint_load/seed-4.ckpt ]; then
  cargo build -q -p neural-style-cli
  seeds=$(mktemp -d)
  for k in 1 2; do
    python3 -c "import zlib,struct,sys
k=$k
def chunk(t,d): b=t+d; return struct.pack('>I',len(d))+b+struct.pack('>I',zlib.crc32(b))
raw=b''.join(b'\\0'+bytes((x*9*k+y*5)%256 for x in range(48)) for y in range(16))
sys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n'+chunk(b'IHDR',struct.pack('>IIBBBBB',16,16,8,2,0,0,0))+chunk(b'IDAT',zlib.compress(raw))+chunk(b'IEND',b''))" > "$seeds/in$k.png"
  done
  for n in 4 8; do
    target/debug/neural-style -c "$seeds/in1.png" -s "$seeds/in2.png" \
      -w crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors --size 16 \
      --no-coarse-to-fine -n "$n" --lbfgs-history 3 --checkpoint "fuzz/corpus/checkpoint_load/seed-$n.ckpt" \
      --checkpoint-every 2 -o "$seeds/out.png" -q
  done
  rm -r "$seeds"
fi
for target in "${targets[@]}"; do
  maxlen=65536
  [ "$target" = weights_parse ] && maxlen=400000
  [ "$target" = checkpoint_load ] && maxlen=131072
  echo "== $target: $secs s"
  cargo +nightly fuzz run --fuzz-dir fuzz -s none "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$secs" -max_len=$maxlen -rss_limit_mb=4096 -print_final_stats=1 2>&1 \
    | grep -E "^(#|stat::|Done|==|SUMMARY|artifact)" | tail -n 12
  cargo +nightly fuzz cmin --fuzz-dir fuzz -s none "$target" "fuzz/corpus/$target" >/dev/null 2>&1 || true
done
