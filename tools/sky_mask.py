#!/usr/bin/env python3
"""Writes a sky mask for a photo with a clear blue sky (for the README's --mask example).

A pixel is sky when it is clearly blue (B - R > 40, B > 140) and every pixel above it in
its column is too (gaps of a few pixels, like wires, are closed first); the mask is then
blurred by a few pixels so that the regions meet softly. Needs numpy and Pillow.
Writes SKY (white = sky) and GROUND (its inverse).

    python3 tools/sky_mask.py ../shared/testdata/content/tubingen.jpg sky.png ground.png
"""
import sys

import numpy as np
from PIL import Image, ImageFilter


def main(photo, sky_path, ground_path):
    rgb = np.asarray(Image.open(photo).convert("RGB")).astype(np.int32)
    r, b = rgb[..., 0], rgb[..., 2]
    blue = (b - r > 40) & (b > 140)
    closed = Image.fromarray((blue * 255).astype(np.uint8))
    closed = closed.filter(ImageFilter.MaxFilter(7)).filter(ImageFilter.MinFilter(7))
    blue = np.asarray(closed) > 127
    # Sky: the blue run from the top of each column down to its first non-blue pixel.
    sky = np.cumprod(blue, axis=0).astype(bool)
    img = Image.fromarray((sky * 255).astype(np.uint8))
    img = img.filter(ImageFilter.GaussianBlur(radius=max(rgb.shape[:2]) / 300))
    img.save(sky_path)
    Image.fromarray(255 - np.asarray(img)).save(ground_path)
    print(f"{sky_path}: {sky.mean():.1%} of the image is sky")


if __name__ == "__main__":
    main(*sys.argv[1:4])
