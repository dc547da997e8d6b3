#!/usr/bin/env python3
"""Video example: a clip made from the shared images (tubingen.jpg held still, a patch of
chelsea.png gliding across it, a little camera noise on every frame), stylised by
`neural-style video` with and without the temporal term; prints both summaries (flicker
and time per frame). Needs ../shared/testdata and a release build."""
import os, subprocess, sys
import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "testdata")
if not os.path.isdir(DATA):
    print("NOTICE: ../shared/testdata is absent; nothing to do")
    sys.exit(0)
out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/video-example"
frames, size, n = 8, int(os.environ.get("SIZE", "160")), os.environ.get("ITER", "60")
clip = os.path.join(out, "clip")
os.makedirs(clip, exist_ok=True)
bg = Image.open(os.path.join(DATA, "content", "tubingen.jpg")).convert("RGB")
bg = np.asarray(bg.resize((size, size * bg.height // bg.width)), dtype=np.float32)
cat = Image.open(os.path.join(DATA, "content", "chelsea.png")).convert("RGB")
cat = np.asarray(cat.resize((size // 4, size // 5)), dtype=np.float32)
rng = np.random.default_rng(0)
for t in range(frames):
    f = bg.copy()
    x, y = 8 + 4 * t, bg.shape[0] // 2
    f[y : y + cat.shape[0], x : x + cat.shape[1]] = cat
    f = np.clip(f + rng.normal(0, 2.0, f.shape), 0, 255).astype(np.uint8)
    Image.fromarray(f).save(os.path.join(clip, f"{t:03d}.png"))
exe = os.path.join(ROOT, "target", "release", "neural-style")
common = ["video", "-c", clip, "-s", os.path.join(DATA, "style", "starry_night.jpg"),
          "-w", os.path.join(DATA, "weights", "vgg16-hed.safetensors"),
          "--size", str(size), "-n", n, "-q"]
for name, extra in [("independent", ["--no-temporal"]), ("temporal", [])]:
    cmd = common + ["-o", os.path.join(out, name)] + extra
    print("$", " ".join(cmd), flush=True)
    r = subprocess.run([exe] + cmd[0:], capture_output=True, text=True)
    print(r.stderr.strip().splitlines()[-2] if r.returncode == 0 else r.stderr)

# A picture: frames 1, 4 and 8 of the clip, of the independent and of the temporal results,
# and the change from frame 7 to 8 of each result (x3) side by side.
import glob
def strip(name):
    files = sorted(glob.glob(os.path.join(out, name, "*.png")))
    return np.concatenate([np.asarray(Image.open(files[i]).convert("RGB")) for i in (0, 3, 7)], 1)
def change(name):
    files = sorted(glob.glob(os.path.join(out, name, "*.png")))
    a, b = (np.asarray(Image.open(f).convert("RGB")).astype(np.float32) for f in files[6:8])
    return np.clip(np.abs(a - b) * 3, 0, 255).astype(np.uint8)
rows = [strip(n) for n in ("clip", "independent", "temporal")]
diff = np.concatenate([change("independent"), change("temporal")], 1)
pad = np.full((diff.shape[0], rows[0].shape[1] - diff.shape[1], 3), 255, np.uint8)
rows.append(np.concatenate([diff, pad], 1))
Image.fromarray(np.concatenate(rows, 0)).save(os.path.join(out, "video.png"))
print("wrote", os.path.join(out, "video.png"))
