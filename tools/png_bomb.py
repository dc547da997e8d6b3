#!/usr/bin/env python3
"""Writes a decompression bomb: a PNG of WIDTH x HEIGHT pixels, all zero (transparent
black for RGBA), that deflate shrinks to well under a megabyte. For the memory figures of
docs/hostile.md (issue 43, D9):

    python3 tools/png_bomb.py bomb16.png 9999 9999 rgba16
    python3 tools/png_bomb.py bomb8.png 10000 10000 rgb8
"""
import struct
import sys
import zlib


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def main():
    path, width, height, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    colour, depth, samples = {"rgba16": (6, 16, 8), "rgb8": (2, 8, 3)}[kind]
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    row = b"\0" * (1 + width * samples)
    deflate = zlib.compressobj(9)
    idat = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


if __name__ == "__main__":
    main()
