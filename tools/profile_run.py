#!/usr/bin/env python3
"""Where a real run's time goes, per evaluation: the network's forward pass, the loss terms,
the gradient to the image, and the rest (the optimiser and the run's bookkeeping between
two evaluations), at each size.

    python3 tools/profile_run.py [--sizes 256,512,1024] [--evaluations 30,20,8] [--extra "--precision bf16"]

Runs the release binary single-scale (`--no-multiscale -n N`) on tubingen + The Starry Night
with vgg16-hed from ../shared/testdata, reads its `--log` (each evaluation's `forward_s`,
`losses_s`, `backward_s`, `evaluation_s`, and `seconds` since the start), drops the first two
evaluations (warm-up) and prints the median of each part with its min-max spread.
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "testdata")


def run(binary, size, evaluations, extra):
    tmp = tempfile.mkdtemp(prefix="profile-")
    log = os.path.join(tmp, "log.jsonl")
    cmd = [binary, "-c", os.path.join(DATA, "content", "tubingen.jpg"),
           "-s", os.path.join(DATA, "style", "starry_night.jpg"),
           "-w", os.path.join(DATA, "weights", "vgg16-hed.safetensors"),
           "--size", str(size), "--no-multiscale", "-n", str(evaluations), "-q",
           "-o", os.path.join(tmp, "out.png"), "--log", log] + shlex.split(extra)
    subprocess.run(cmd, check=True, capture_output=True)
    lines = [json.loads(l) for l in open(log)]
    return [l for l in lines if "evaluation" in l and "forward_s" in l]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--evaluations", default="30,20,8", help="per size")
    p.add_argument("--extra", default="", help="more flags for every run")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "neural-style"))
    args = p.parse_args()
    if not os.path.isdir(DATA):
        sys.exit(f"{DATA} is absent: this profile needs the shared weights and images")
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(n) for n in args.evaluations.split(",")]
    print(f"flags: {args.extra or '(defaults)'}; seconds per evaluation, median (min-max)")
    print("| size | evaluations timed | forward | losses | backward | optimiser + other | whole interval |")
    print("|---|---|---|---|---|---|---|")
    for size, n in zip(sizes, counts + counts[-1:] * len(sizes)):
        evals = run(args.binary, size, n, args.extra)
        rows = []
        for prev, cur in zip(evals, evals[1:]):
            interval = cur["seconds"] - prev["seconds"]
            rows.append((cur["forward_s"], cur["losses_s"], cur["backward_s"],
                         interval - cur["evaluation_s"], interval))
        rows = rows[2:]
        cells = []
        for part in zip(*rows):
            cells.append(f"{statistics.median(part):.3f} ({min(part):.3f}-{max(part):.3f})")
        print(f"| {size} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
