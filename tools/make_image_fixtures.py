#!/usr/bin/env python3
"""Writes small images in formats the Rust `image` crate reads but cannot write, for the
input-conversion tests: a CMYK JPEG and palette PNGs (with and without transparency).

    python3 tools/make_image_fixtures.py crates/neural-style/tests/fixtures/images

Each is 8x6: the left half red (255, 0, 0), the right half blue (0, 0, 255); in the
transparent palette PNG the right half is fully transparent (so it becomes white).
"""
import os
import sys

from PIL import Image


def base():
    img = Image.new("RGB", (8, 6), (255, 0, 0))
    img.paste((0, 0, 255), (4, 0, 8, 6))
    return img


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    base().convert("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=95)
    base().convert("P", palette=Image.ADAPTIVE, colors=4).save(os.path.join(out, "palette.png"))
    p = base().convert("P", palette=Image.ADAPTIVE, colors=4)
    blue = p.getpixel((6, 3))
    p.save(os.path.join(out, "palette-transparent.png"), transparency=blue)


if __name__ == "__main__":
    main()
