#!/usr/bin/env python3
"""Write the quality test set: photo/painting pairs wider than ../shared/testdata.

    python3 tools/test_pairs.py [--out target/pairs]

Photos come from scikit-image's and matplotlib's bundled sample data (public domain or
CC0, installed by `pip install scikit-image matplotlib`) and from scenes drawn here that
stress what the defaults must keep: a night skyline (small dark buildings under a large
sky) and a beach with distant people. Paintings are ../shared/testdata/style (when present)
and ones drawn here: cubist facets, pointillist dots, a Mondrian-like grid and
expressionist strokes. Everything drawn is seeded, so the set is the same on every machine.
Writes OUT/photos/*.png, OUT/paintings/*.png and OUT/pairs.json ([{"name", "photo",
"painting"}], paths relative to OUT).
"""
import argparse
import json
import math
import os
import random
import shutil

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_STYLE = os.path.join(ROOT, "..", "shared", "testdata", "style")

# (name, photo, painting): photos and paintings named by the keys of PHOTOS and PAINTINGS.
PAIRS = [
    ("skyline-cubist", "skyline", "cubist"),
    ("skyline-composition", "skyline", "composition_vii"),
    ("beach-starry", "beach", "starry_night"),
    ("rocket-scream", "rocket", "the_scream"),
    ("camera-shipwreck", "camera", "shipwreck"),
    ("astronaut-cubist", "astronaut", "cubist"),
    ("hopper-starry", "grace_hopper", "starry_night"),
    ("chelsea-composition", "chelsea", "composition_vii"),
    ("coffee-pointillist", "coffee", "pointillist"),
    ("motorcycle-strokes", "motorcycle", "strokes"),
    ("beach-cubist", "beach", "cubist"),
    ("rocket-mondrian", "rocket", "mondrian"),
]


def skimage_photo(file):
    """A file of scikit-image's bundled data folder (read directly: some have no loader)."""
    import skimage.data

    return Image.open(os.path.join(os.path.dirname(skimage.data.__file__), file)).convert("RGB")


def grace_hopper():
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return Image.open(f).convert("RGB")


def vertical_gradient(w, h, top, bottom):
    t = np.linspace(0, 1, h)[:, None, None]
    rows = np.array(top)[None, None, :] * (1 - t) + np.array(bottom)[None, None, :] * t
    return np.repeat(rows, w, axis=1)


def skyline(w=1024, h=640, seed=1):
    """A city at night: buildings in the lowest quarter, lit windows, a large dark sky."""
    rng = random.Random(seed)
    sky = vertical_gradient(w, h, (8, 10, 30), (60, 40, 70))
    img = Image.fromarray(sky.astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(120):  # stars
        x, y = rng.randrange(w), rng.randrange(int(h * 0.6))
        b = rng.randrange(120, 255)
        d.point((x, y), fill=(b, b, b))
    d.ellipse((int(w * 0.78), int(h * 0.1), int(w * 0.78) + 44, int(h * 0.1) + 44), fill=(235, 232, 210))
    ground = int(h * 0.9)
    x = 0
    while x < w:
        bw = rng.randrange(w // 40, w // 14)
        bh = rng.randrange(h // 12, h // 4)
        shade = rng.randrange(18, 40)
        d.rectangle((x, ground - bh, x + bw, ground), fill=(shade, shade, shade + 6))
        if rng.random() < 0.2:  # an antenna
            d.line((x + bw // 2, ground - bh, x + bw // 2, ground - bh - h // 25), fill=(shade, shade, shade), width=2)
        for wy in range(ground - bh + 5, ground - 6, 9):
            for wx in range(x + 4, x + bw - 5, 8):
                if rng.random() < 0.35:
                    d.rectangle((wx, wy, wx + 3, wy + 4), fill=(250, rng.randrange(190, 230), 110))
        x += bw + rng.randrange(0, 6)
    d.rectangle((0, ground, w, h), fill=(12, 12, 18))
    for _ in range(40):  # reflections on the water
        rx, ry = rng.randrange(w), rng.randrange(ground + 3, h - 2)
        d.line((rx, ry, rx + rng.randrange(4, 14), ry), fill=(120, 100, 60))
    return img.filter(ImageFilter.GaussianBlur(0.6))


def beach(w=1024, h=640, seed=2):
    """A wide beach in daylight with a few people, each about a twentieth of the height."""
    rng = random.Random(seed)
    img = Image.fromarray(vertical_gradient(w, h, (90, 150, 220), (190, 215, 240)).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(6):  # clouds
        cx, cy = rng.randrange(w), rng.randrange(int(h * 0.35))
        for _ in range(5):
            r = rng.randrange(20, 45)
            ox, oy = rng.randrange(-50, 50), rng.randrange(-12, 12)
            d.ellipse((cx + ox - 2 * r, cy + oy - r, cx + ox + 2 * r, cy + oy + r), fill=(245, 247, 250))
    img = img.filter(ImageFilter.GaussianBlur(6))
    d = ImageDraw.Draw(img)
    sea, sand = int(h * 0.5), int(h * 0.62)
    d.rectangle((0, sea, w, sand), fill=(40, 100, 150))
    for _ in range(60):  # waves
        x, y = rng.randrange(w), rng.randrange(sea, sand)
        d.line((x, y, x + rng.randrange(10, 40), y), fill=(200, 225, 240), width=1)
    d.rectangle((0, sand, w, h), fill=(222, 200, 150))
    for i in range(7):  # people
        px = int(w * (0.08 + 0.13 * i + rng.uniform(-0.03, 0.03)))
        py = rng.randrange(int(h * 0.66), int(h * 0.9))
        ph = int(h * rng.uniform(0.045, 0.07))
        colour = rng.choice([(200, 40, 40), (30, 30, 120), (240, 200, 30), (20, 120, 60), (250, 250, 250)])
        d.ellipse((px - ph // 8, py - ph, px + ph // 8, py - ph + ph // 4), fill=(120, 80, 60))
        d.rectangle((px - ph // 6, py - ph + ph // 4, px + ph // 6, py - ph // 3), fill=colour)
        d.rectangle((px - ph // 7, py - ph // 3, px + ph // 7, py), fill=(110, 75, 55))
    # an umbrella
    ux, uy = int(w * 0.62), int(h * 0.72)
    d.line((ux, uy, ux, uy + 40), fill=(80, 60, 40), width=3)
    d.pieslice((ux - 45, uy - 25, ux + 45, uy + 25), 180, 360, fill=(230, 60, 60))
    return img.filter(ImageFilter.GaussianBlur(0.6))


def cubist(w=900, h=700, seed=3):
    """Analytic-cubist facets: angular planes in ochre, brown and grey with dark outlines."""
    rng = random.Random(seed)
    palette = [(150, 120, 80), (110, 90, 60), (180, 160, 120), (90, 90, 85), (60, 55, 45), (200, 180, 140),
               (130, 110, 95), (170, 140, 90)]
    img = Image.new("RGB", (w, h), (140, 120, 90))
    d = ImageDraw.Draw(img)
    for _ in range(260):
        cx, cy = rng.randrange(w), rng.randrange(h)
        n = rng.randrange(3, 6)
        r = rng.randrange(30, 140)
        pts = [(cx + r * math.cos(a) * rng.uniform(0.5, 1.2), cy + r * math.sin(a) * rng.uniform(0.5, 1.2))
               for a in sorted(rng.uniform(0, 2 * math.pi) for _ in range(n))]
        d.polygon(pts, fill=rng.choice(palette), outline=(30, 25, 20))
        if rng.random() < 0.4:
            d.line(pts[:2], fill=(20, 18, 15), width=3)
    arr = np.asarray(img).astype(np.float32)
    arr += np.random.default_rng(seed).normal(0, 8, arr.shape)  # brush texture
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))


def pointillist(w=900, h=700, seed=4):
    """Dots of pure colour over a landscape of sky, trees and water."""
    rng = random.Random(seed)
    img = Image.new("RGB", (w, h), (240, 235, 220))
    d = ImageDraw.Draw(img)
    bands = [(0.0, [(120, 170, 230), (250, 220, 120), (200, 220, 250)]),
             (0.45, [(40, 140, 60), (20, 90, 50), (200, 180, 60)]),
             (0.7, [(40, 90, 200), (120, 180, 230), (250, 250, 250), (230, 120, 40)])]
    for _ in range(26000):
        x, y = rng.randrange(w), rng.randrange(h)
        colours = [c for start, c in bands if y >= start * h][-1]
        r = rng.randrange(2, 5)
        d.ellipse((x - r, y - r, x + r, y + r), fill=rng.choice(colours))
    return img


def mondrian(w=800, h=800, seed=5):
    """A grid of black bars with a few primary-coloured rectangles on white."""
    rng = random.Random(seed)
    img = Image.new("RGB", (w, h), (245, 242, 232))
    d = ImageDraw.Draw(img)
    xs = sorted(rng.sample(range(60, w - 60), 5))
    ys = sorted(rng.sample(range(60, h - 60), 5))
    cells = [(a, b, c, e) for a, c in zip([0] + xs, xs + [w]) for b, e in zip([0] + ys, ys + [h])]
    for box in rng.sample(cells, 7):
        d.rectangle(box, fill=rng.choice([(200, 30, 30), (30, 60, 160), (240, 200, 40)]))
    for x in xs:
        d.rectangle((x - 7, 0, x + 7, h), fill=(15, 15, 15))
    for y in ys:
        d.rectangle((0, y - 7, w, y + 7), fill=(15, 15, 15))
    return img


def strokes(w=900, h=700, seed=6):
    """Expressionist brushwork: thick curved strokes of saturated colour."""
    rng = random.Random(seed)
    img = Image.new("RGB", (w, h), (30, 30, 50))
    d = ImageDraw.Draw(img)
    palette = [(230, 80, 30), (250, 200, 40), (40, 120, 200), (200, 40, 120), (60, 180, 90), (240, 240, 230)]
    for _ in range(500):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        a = rng.uniform(0, 2 * math.pi)
        colour = rng.choice(palette)
        width = rng.randrange(6, 22)
        pts = []
        for _ in range(rng.randrange(4, 10)):
            pts.append((x, y))
            a += rng.uniform(-0.6, 0.6)
            x, y = x + 18 * math.cos(a), y + 18 * math.sin(a)
        d.line(pts, fill=colour, width=width, joint="curve")
    return img.filter(ImageFilter.GaussianBlur(1.0))


PHOTOS = {
    "skyline": skyline,
    "beach": beach,
    "rocket": lambda: skimage_photo("rocket.jpg"),
    "camera": lambda: skimage_photo("camera.png"),
    "astronaut": lambda: skimage_photo("astronaut.png"),
    "grace_hopper": grace_hopper,
    "chelsea": lambda: skimage_photo("chelsea.png"),
    "coffee": lambda: skimage_photo("coffee.png"),
    "motorcycle": lambda: skimage_photo("motorcycle_left.png"),
}
PAINTINGS = {"cubist": cubist, "pointillist": pointillist, "mondrian": mondrian, "strokes": strokes}
SHARED = ["starry_night", "shipwreck", "the_scream", "composition_vii"]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(ROOT, "target", "pairs"))
    args = p.parse_args()
    os.makedirs(os.path.join(args.out, "photos"), exist_ok=True)
    os.makedirs(os.path.join(args.out, "paintings"), exist_ok=True)
    have_shared = os.path.isdir(SHARED_STYLE)
    if not have_shared:
        print(f"notice: {SHARED_STYLE} is absent: the pairs with its paintings are left out")
    pairs = []
    written = set()
    for name, photo, painting in PAIRS:
        if painting in SHARED and not have_shared:
            continue
        photo_path = os.path.join("photos", photo + ".png")
        if photo not in written:
            PHOTOS[photo]().save(os.path.join(args.out, photo_path))
            written.add(photo)
        if painting in SHARED:
            painting_path = os.path.join("paintings", painting + ".jpg")
            if painting not in written:
                shutil.copyfile(os.path.join(SHARED_STYLE, painting + ".jpg"), os.path.join(args.out, painting_path))
        else:
            painting_path = os.path.join("paintings", painting + ".png")
            if painting not in written:
                PAINTINGS[painting]().save(os.path.join(args.out, painting_path))
        written.add(painting)
        pairs.append({"name": name, "photo": photo_path, "painting": painting_path})
    with open(os.path.join(args.out, "pairs.json"), "w") as f:
        json.dump(pairs, f, indent=1)
    print(f"{len(pairs)} pairs in {args.out}")


if __name__ == "__main__":
    main()
