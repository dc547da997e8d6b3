#!/usr/bin/env python3
"""Run the default settings over the quality test set and build contact sheets.

    python3 tools/test_pairs.py                       # writes target/pairs
    python3 tools/quality_sheet.py run --label after --sizes 256,512,1024
    python3 tools/quality_sheet.py sheet --labels before,after --sizes 256,512,1024
    python3 tools/quality_sheet.py run --label after --sizes 256 \
        --pairs skyline-cubist,beach-starry,rocket-scream --factors 0.5,1,2,4
    python3 tools/quality_sheet.py lengths --label after --sizes 256 \
        --pairs skyline-cubist,beach-starry,rocket-scream --factors 0.5,1,2,4
    python3 tools/quality_sheet.py lengths --label after --sizes 512 --factors 1,0.5 --suffix=-1-0.5

`run` makes one cell per pair, size (and run-length factor): the default command line on
vgg16-hed (no weight flags; `-n` 500 times the factor: 0.5 is today's default), and records in
docs/quality/cells/LABEL/SIZE[xFACTOR]/PAIR.json the structure figure (coarse SSIM with the
photo), the style loss at the end as a share of the photo's own style loss at that size
(measured with one more evaluation), the evaluations, the wall time and the commit, beside
a JPEG of the result (at most 512 px). Cells already recorded are skipped, so a run that was
cut short continues where it stopped. `sheet` lays the cells out, a row per pair (photo,
painting, then each label), labelled with both figures, into docs/quality/SIZE[xFACTOR].jpg;
`lengths` lays out one label's run lengths side by side (a column per factor) into
docs/quality/SIZE-lengths[SUFFIX].jpg; `table` prints one label's figures per factor as
Markdown.
Needs ../shared/testdata/weights, pillow and a release build (`--binary` for another one).
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "..", "shared", "testdata", "weights", "vgg16-hed.safetensors")
# The -n that factor 1 means: the default when issue 21's sheets were made. Issue 23 halved
# neural_style::config::DEFAULT_ITERATIONS to 250, so today's default is factor 0.5; the
# cells keep their names (SIZE for 500, SIZExF for F times 500) and every run passes -n.
BASE_ITERATIONS = 500
CELL = 256  # the sheet's cell height


def cell_dir(results, label, size, factor):
    sub = str(size) if factor == 1 else f"{size}x{factor:g}"
    return os.path.join(results, "cells", label, sub)


def run_cell(args, pair, size, factor, out_dir):
    name = pair["name"]
    record = os.path.join(out_dir, name + ".json")
    if os.path.exists(record):
        return json.load(open(record))
    tmp = tempfile.mkdtemp(prefix="quality-")
    photo = os.path.join(args.pairs_dir, pair["photo"])
    painting = os.path.join(args.pairs_dir, pair["painting"])
    base = [args.binary, "-c", photo, "-s", painting, "-w", WEIGHTS, "--size", str(size), "-q"]
    base += shlex.split(args.extra)
    flags = ["-n", str(round(BASE_ITERATIONS * factor))]
    flags += shlex.split(args.extra_run)
    out, log = os.path.join(tmp, "out.png"), os.path.join(tmp, "log.jsonl")
    start = time.monotonic()
    r = subprocess.run(base + flags + ["-o", out, "--log", log], capture_output=True, text=True)
    wall = time.monotonic() - start
    if r.returncode != 0:
        sys.exit(f"{name} at {size}: failed\n{r.stderr}")
    lines = [json.loads(line) for line in open(log)]
    result = lines[-1]
    evals = [line for line in lines if "evaluation" in line]
    # The photo's own style loss at the output size: one evaluation at that size.
    start_log = os.path.join(tmp, "start.jsonl")
    r = subprocess.run(base + ["-n", "1", "--no-multiscale", "--log", start_log, "-o",
                               os.path.join(tmp, "start.png")], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{name} at {size}: the start evaluation failed\n{r.stderr}")
    first = json.loads(open(start_log).readline())
    last = evals[-1]
    cell = {
        "pair": name, "size": size, "factor": factor, "evaluations": result["evaluations"],
        "structure": result["structure"], "style_share": last["style"] / max(first["style"], 1e-30),
        "style": last["style"], "content": last["content"], "start_style": first["style"],
        "wall_s": round(wall, 1), "commit": args.commit, "extra": args.extra,
        "extra_run": args.extra_run,
    }
    img = Image.open(out).convert("RGB")
    img.thumbnail((512, 512), Image.LANCZOS)
    os.makedirs(out_dir, exist_ok=True)
    img.save(os.path.join(out_dir, name + ".jpg"), quality=88)
    with open(record, "w") as f:
        json.dump(cell, f, indent=1)
    return cell


def cmd_run(args, pairs):
    for factor in args.factors:
        for size in args.sizes:
            out_dir = cell_dir(args.results, args.label, size, factor)
            for pair in pairs:
                c = run_cell(args, pair, size, factor, out_dir)
                print(f"{args.label} {size}px x{factor:g} {c['pair']}: structure {c['structure']:.3f}, "
                      f"style {100 * c['style_share']:.1f}% of the photo's, {c['evaluations']} evaluations, "
                      f"{c['wall_s']:.0f} s", flush=True)


def thumb(path, height):
    img = Image.open(path).convert("RGB")
    return img.resize((max(1, round(img.width * height / img.height)), height), Image.LANCZOS)


def read_cell(args, pair, label, size, factor):
    """A cell's record, or None when it was not run."""
    rec = os.path.join(cell_dir(args.results, label, size, factor), pair["name"] + ".json")
    return json.load(open(rec)) if os.path.exists(rec) else None


def result_cell(args, pair, label, size, factor, caption):
    """A cell's picture and its caption (`caption` + both figures), grey when not run."""
    c = read_cell(args, pair, label, size, factor)
    if c is None:
        return Image.new("RGB", (CELL, CELL), "lightgrey"), f"{caption}: not run"
    d = cell_dir(args.results, label, size, factor)
    return (thumb(os.path.join(d, pair["name"] + ".jpg"), CELL),
            f"{caption}: S {c['structure']:.2f}, style {100 * c['style_share']:.1f}%")


def save_rows(rows, path):
    """Lays out rows of (picture, caption) in aligned columns and writes `path`."""
    widths = [max(r[i][0].width for r in rows) for i in range(len(rows[0]))]
    sheet = Image.new("RGB", (sum(widths), (CELL + 16) * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for j, row in enumerate(rows):
        x = 0
        for i, (img, text) in enumerate(row):
            sheet.paste(img, (x, j * (CELL + 16)))
            draw.text((x + 2, j * (CELL + 16) + CELL + 2), text, fill="black")
            x += widths[i]
    sheet.save(path, quality=85)
    print(f"wrote {path}")


def inputs_row(args, pair):
    return [(thumb(os.path.join(args.pairs_dir, pair["photo"]), CELL), pair["name"]),
            (thumb(os.path.join(args.pairs_dir, pair["painting"]), CELL), "painting")]


def cmd_sheet(args, pairs):
    for factor in args.factors:
        for size in args.sizes:
            rows = [inputs_row(args, pair) + [result_cell(args, pair, label, size, factor, label)
                                              for label in args.labels] for pair in pairs]
            name = str(size) if factor == 1 else f"{size}x{factor:g}"
            save_rows(rows, os.path.join(args.results, f"{name}.jpg"))


def cmd_lengths(args, pairs):
    label = args.label or args.labels[0]
    for size in args.sizes:
        rows = [inputs_row(args, pair) + [result_cell(args, pair, label, size, f, f"{f:g}x")
                                          for f in args.factors] for pair in pairs]
        save_rows(rows, os.path.join(args.results, f"{size}-lengths{args.suffix}.jpg"))


def cmd_table(args, pairs):
    """Prints, per size, a Markdown table of one label's figures at each factor."""
    label = args.label or args.labels[0]
    for size in args.sizes:
        cols = [f"{f:g}x (-n {round(BASE_ITERATIONS * f)})" for f in args.factors]
        print(f"\n{size} px\n\n| pair | " + " | ".join(f"S {c}" for c in cols) + " | "
              + " | ".join(f"style {c}" for c in cols) + " |")
        print("|---" * (1 + 2 * len(cols)) + "|")
        for pair in pairs:
            cells = [read_cell(args, pair, label, size, f) for f in args.factors]
            s = [f"{c['structure']:.2f}" if c else "not run" for c in cells]
            st = [f"{100 * c['style_share']:.1f}%" if c else "not run" for c in cells]
            print(f"| {pair['name']} | " + " | ".join(s + st) + " |")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["run", "sheet", "lengths", "table"])
    p.add_argument("--label", help="run: the name the cells are kept under (before, after)")
    p.add_argument("--labels", default="before,after", help="sheet: the columns")
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--factors", default="1", help="run lengths, times -n 500 (BASE_ITERATIONS)")
    p.add_argument("--suffix", default="", help="lengths: added to the sheet's name (SIZE-lengthsSUFFIX.jpg)")
    p.add_argument("--pairs", default="", help="pair names (default: all)")
    p.add_argument("--pairs-dir", default=os.path.join(ROOT, "target", "pairs"))
    p.add_argument("--results", default=os.path.join(ROOT, "docs", "quality"))
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "neural-style"))
    p.add_argument("--extra", default="", help="run: more flags for every run (for trying a change)")
    p.add_argument("--extra-run", default="", help="run: flags for the run but not for the photo's "
                   "start evaluation (-n, --no-multiscale)")
    p.add_argument("--commit", help="run: the commit the binary was built from (default: HEAD)")
    args = p.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.factors = [float(f) for f in args.factors.split(",")]
    args.labels = args.labels.split(",")
    listing = os.path.join(args.pairs_dir, "pairs.json")
    if not os.path.exists(listing):
        sys.exit(f"{listing} is absent: run tools/test_pairs.py first")
    pairs = json.load(open(listing))
    if args.pairs:
        wanted = args.pairs.split(",")
        pairs = [q for q in pairs if q["name"] in wanted]
    if args.action == "run":
        if not args.label:
            sys.exit("run needs --label")
        if not os.path.exists(WEIGHTS):
            sys.exit(f"{WEIGHTS} is absent: nothing to run")
        args.commit = args.commit or subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip()
        cmd_run(args, pairs)
    elif args.action == "lengths":
        cmd_lengths(args, pairs)
    elif args.action == "table":
        cmd_table(args, pairs)
    else:
        cmd_sheet(args, pairs)


if __name__ == "__main__":
    main()
