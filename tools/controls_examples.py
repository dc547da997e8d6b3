#!/usr/bin/env python3
"""Makes the README's pictures of the artistic controls with the real vgg16-hed weights.

    python3 tools/controls_examples.py [--only masks,blend,scale,sheet] [--iterations 150]

Writes docs/controls-masks.png, docs/controls-content-mask.png, docs/controls-blend.png, docs/controls-style-scale.png,
docs/controls-w2.png and docs/controls-sheet.png, each a row of labelled panels (the sheet comes from
`neural-style sheet` itself), and prints every command it runs. Needs ../shared/testdata,
numpy, Pillow and a release build (cargo build --release).
"""
import argparse
import os
import shlex
import subprocess
import sys
import tempfile

from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "testdata")
BIN = os.path.join(ROOT, "target", "release", "neural-style")
WEIGHTS = os.path.join(DATA, "weights", "vgg16-hed.safetensors")


def img(kind, name):
    return os.path.join(DATA, kind, name)


def run(args):
    head = args[:1] if args[:1] == ["sheet"] else []
    cmd = [BIN] + head + ["-w", WEIGHTS, "--quiet"] + args[len(head):]
    print("$ " + " ".join(shlex.quote(os.path.relpath(a, ROOT) if os.path.exists(a) else a) for a in cmd[1:]), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(out.stderr)
    print(out.stderr.strip().splitlines()[-1], flush=True)


def panels(items, path, height=256):
    """A row of (image path, caption) panels, each scaled to `height`."""
    ims = [Image.open(p).convert("RGB") for p, _ in items]
    ims = [im.resize((round(im.width * height / im.height), height), Image.LANCZOS) for im in ims]
    cap = 22
    sheet = Image.new("RGB", (sum(i.width for i in ims) + 8 * (len(ims) + 1), height + cap + 16), "white")
    draw = ImageDraw.Draw(sheet)
    x = 8
    for im, (_, caption) in zip(ims, items):
        sheet.paste(im, (x, 8))
        draw.text((x + 4, height + 12), caption, fill="black")
        x += im.width + 8
    sheet.save(path)
    print(f"wrote {os.path.relpath(path, ROOT)}")


def main():
    global BIN
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="masks,blend,scale,w2,sheet")
    p.add_argument("--iterations", default="150")
    p.add_argument("--binary", default=None)
    a = p.parse_args()
    BIN = a.binary or BIN
    if not os.path.isdir(DATA):
        sys.exit(f"{DATA} is absent: nothing to make")
    only = a.only.split(",")
    n = ["-n", a.iterations]
    docs = os.path.join(ROOT, "docs")
    tub, chelsea = img("content", "tubingen.jpg"), img("content", "chelsea.png")
    starry, scream = img("style", "starry_night.jpg"), img("style", "the_scream.jpg")
    ship = img("style", "shipwreck.jpg")
    with tempfile.TemporaryDirectory() as t:
        o = lambda name: os.path.join(t, name)  # noqa: E731
        if "masks" in only:
            subprocess.run([sys.executable, os.path.join(ROOT, "tools", "sky_mask.py"), tub, o("sky.png"), o("ground.png")], check=True)
            run(["-c", tub, "-s", starry, "--mask", o("sky.png"), "-s", scream, "--mask", o("ground.png"), "--size", "384"] + n + ["-o", o("masked.png")])
            run(["-c", tub, "-s", starry, "-s", scream, "--size", "384"] + n + ["-o", o("unmasked.png")])
            panels([(tub, "photo"), (o("sky.png"), "--mask sky.png (starry night)"), (o("unmasked.png"), "both styles, no masks"), (o("masked.png"), "sky: van Gogh, town: Munch")], os.path.join(docs, "controls-masks.png"))
            run(["-c", tub, "-s", starry, "--size", "384"] + n + ["-o", o("plain.png")])
            run(["-c", tub, "-s", starry, "--content-mask", o("ground.png"), "--size", "384"] + n + ["-o", o("kept.png")])
            panels([(o("ground.png"), "--content-mask ground.png"), (o("plain.png"), "no content mask"), (o("kept.png"), "with it: town kept, sky free")], os.path.join(docs, "controls-content-mask.png"))
        if "blend" in only:
            run(["-c", tub, "-s", starry, "--size", "256"] + n + ["-o", o("a.png")])
            run(["-c", tub, "-s", starry, "-s", ship, "--style-blend", "0.5,0.5", "--size", "256"] + n + ["-o", o("ab.png")])
            run(["-c", tub, "-s", ship, "--size", "256"] + n + ["-o", o("b.png")])
            panels([(o("a.png"), "starry night"), (o("ab.png"), "--style-blend 0.5,0.5"), (o("b.png"), "shipwreck")], os.path.join(docs, "controls-blend.png"))
        if "scale" in only:
            items = []
            for f in ["0.5", "1", "2"]:
                run(["-c", tub, "-s", starry, "--style-scale", f, "--size", "384"] + n + ["-o", o(f"scale{f}.png")])
                items.append((o(f"scale{f}.png"), f"--style-scale {f}"))
            panels(items, os.path.join(docs, "controls-style-scale.png"))
        if "w2" in only:
            run(["-c", tub, "-s", starry, "--size", "256"] + n + ["-o", o("gram.png")])
            run(["-c", tub, "-s", starry, "--style-loss", "w2", "--size", "256"] + n + ["-o", o("w2.png")])
            panels([(tub, "photo"), (o("gram.png"), "--style-loss gram (default)"), (o("w2.png"), "--style-loss w2")], os.path.join(docs, "controls-w2.png"))
        if "sheet" in only:
            run(["sheet", "-c", tub, "-s", starry, "--size", "192", "--style-weights", "1,10,100,1000",
                 "--layer-sets", "relu1_1;relu1_1,relu2_1,relu3_1;relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"] + n
                + ["-o", os.path.join(docs, "controls-sheet.png")])


if __name__ == "__main__":
    main()
