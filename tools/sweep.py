#!/usr/bin/env python3
"""Sweep loss weights over the shared weights and images and build a labelled contact sheet.

    python3 tools/sweep.py --out docs/sweep-256.png --size 256 --style-weights 3,10,30 \
        [--iterations 150] [--extra "--tv-weight 0.1"]

Rows: weights files; columns: (content, style) pairs x style weights (with --style-weights
default, one run per pair with no weight flags at all). Each cell is labelled
with the style weight and the style loss at the end as a fraction of the style loss of the
starting image at the output size; a summary table is printed. Needs ../shared/testdata, pillow, and a release build.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "testdata")
PAIRS = [("tubingen.jpg", "starry_night.jpg"), ("chelsea.png", "the_scream.jpg"), ("astronaut.png", "composition_vii.jpg")]
WEIGHTS = ["vgg16-hed.safetensors", "vgg19-normalised-to-conv3_1.safetensors"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=150)
    p.add_argument("--style-weights", default="default")
    p.add_argument("--extra", default="", help="more flags for every run")
    p.add_argument("--weights", default=",".join(WEIGHTS))
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "neural-style"))
    args = p.parse_args()
    if not os.path.isdir(DATA):
        sys.exit(f"{DATA} is absent: nothing to sweep")
    binary = args.binary
    sws = args.style_weights.split(",")
    tmp = tempfile.mkdtemp(prefix="sweep-")
    rows = []
    for weights in args.weights.split(","):
        cells = []
        for content, style in PAIRS:
            for sw in sws:
                name = f"{weights.split('.')[0]}-{content.split('.')[0]}-{style.split('.')[0]}-{sw}"
                out, log = os.path.join(tmp, name + ".png"), os.path.join(tmp, name + ".jsonl")
                base = [binary, "-c", os.path.join(DATA, "content", content), "-s", os.path.join(DATA, "style", style),
                        "-w", os.path.join(DATA, "weights", weights), "--size", str(args.size), "-q"]
                base += shlex.split(args.extra) + ([] if sw == "default" else ["--style-weight", sw])
                cmd = base + ["-n", str(args.iterations), "-o", out, "--log", log]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr}")
                lines = [json.loads(l) for l in open(log)]
                lines = [l for l in lines if "evaluation" in l]  # the last line is the result's
                # The style loss of the starting image at the output size: with coarse-to-fine
                # the log's first line is at a smaller size, so measure it with one evaluation.
                start_log = os.path.join(tmp, name + ".start.jsonl")
                start_cmd = base + ["-n", "1", "--no-multiscale", "--log", start_log,
                                    "-o", os.path.join(tmp, name + ".start.png")]
                r = subprocess.run(start_cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"failed: {' '.join(start_cmd)}\n{r.stderr}")
                start = json.loads(open(start_log).readline())
                ratio = lines[-1]["style"] / max(start["style"], 1e-30)
                worst = max(l["total"] for l in lines) / max(lines[0]["total"], 1e-30)
                secs = lines[-1]["seconds"]
                print(f"{name}: style {start['style']:.4g} -> {lines[-1]['style']:.4g} ({100 * ratio:.1f}%), "
                      f"content {lines[-1]['content']:.4g}, max total/first {worst:.2f}, {secs:.0f} s", flush=True)
                cells.append((out, f"{weights.split('-')[0]} sw={sw} style {100 * ratio:.1f}%"))
        rows.append(cells)
    tiles = [[Image.open(o).convert("RGB") for o, _ in r] for r in rows]
    cw = max(t.width for r in tiles for t in r)
    ch = max(t.height for r in tiles for t in r) + 14
    sheet = Image.new("RGB", (cw * len(rows[0]), ch * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (r, cells) in enumerate(zip(tiles, rows)):
        for j, (t, (_, label)) in enumerate(zip(r, cells)):
            sheet.paste(t, (j * cw, i * ch + 14))
            draw.text((j * cw + 2, i * ch + 1), label, fill="black")
    sheet.save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
