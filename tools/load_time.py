#!/usr/bin/env python3
"""Load time of VGG19-shaped weights: a full torchvision-style `.pth` vs its conv-only
`.safetensors` (what the model cache keeps after the first load).

    python3 tools/load_time.py [--runs 5] [--workdir /tmp/load-time]

Writes a random VGG19 state_dict with torchvision's keys and shapes (features and
classifier, ~548 MiB, like vgg19-dcbb9e9d.pth) with torch.save, converts it with
`neural-style weights convert`, then times whole `neural-style` runs that load each file
and do one evaluation on a 32 px image (so the time is almost all loading). Prints median
and spread. Needs torch and a release build.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def vgg19_state_dict():
    g = torch.Generator().manual_seed(0)
    sd, c, i = {}, 3, 0
    for v in CFG:
        if v == "M":
            i += 1
            continue
        sd[f"features.{i}.weight"] = torch.randn(v, c, 3, 3, generator=g) * (2.0 / (9 * c)) ** 0.5
        sd[f"features.{i}.bias"] = torch.zeros(v)
        c, i = v, i + 2
    for j, (o, n) in zip((0, 3, 6), ((4096, 25088), (4096, 4096), (1000, 4096))):
        sd[f"classifier.{j}.weight"] = torch.randn(o, n, generator=g) * 0.01
        sd[f"classifier.{j}.bias"] = torch.zeros(o)
    return sd


def timed(cmd, runs):
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        out.append(time.perf_counter() - t)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--workdir", default="/tmp/load-time")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "neural-style"))
    args = p.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    pth = os.path.join(args.workdir, "vgg19-like.pth")
    st = os.path.join(args.workdir, "vgg19-like.conv.safetensors")
    img = os.path.join(args.workdir, "style.png")
    if not os.path.exists(pth):
        torch.save(vgg19_state_dict(), pth)
    from PIL import Image
    Image.new("RGB", (32, 32), (120, 80, 200)).save(img)
    t = time.perf_counter()
    subprocess.run([args.binary, "weights", "convert", pth, st], check=True, capture_output=True)
    convert_s = time.perf_counter() - t
    print(f".pth {os.path.getsize(pth) / 2**20:.0f} MiB -> conv-only .safetensors "
          f"{os.path.getsize(st) / 2**20:.0f} MiB in {convert_s:.2f} s")
    for name, w in ((".pth", pth), (".safetensors", st)):
        cmd = [args.binary, "-s", img, "-w", w, "-n", "1", "--size", "32", "-q", "-o",
               os.path.join(args.workdir, "out.png")]
        ts = timed(cmd, args.runs)
        print(f"run loading {name}: median {statistics.median(ts):.3f} s (min {min(ts):.3f}, max {max(ts):.3f}, "
              f"{len(ts)} runs)")


if __name__ == "__main__":
    sys.exit(main())
