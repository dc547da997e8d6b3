#!/usr/bin/env python3
"""How steady this machine is: a fixed amount of arithmetic, timed again and again.

    python3 tools/machine_noise.py [--threads 1] [--chunks 40] [--size 1024] [--products 20]

Each chunk multiplies the same two SIZE x SIZE float32 matrices PRODUCTS times with
PyTorch on THREADS threads, so every chunk does exactly the same work; the script prints
the median seconds per chunk, min, max and the spread (the largest distance from the
median, as a share of it: the figure `tools/bench.py --whole-run` prints for the runs'
evaluations), then each chunk's time. On a quiet machine the spread is a few percent; what
it shows above that is the machine's, and it bounds how steady any run's evaluations can
look on it (docs/speed.md, "How steady an evaluation can be here").
Needs torch (`pip install torch`).
"""
import argparse
import statistics
import time

from bench import spread_percent


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--chunks", type=int, default=40)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--products", type=int, default=20, help="matrix products per chunk")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(args.size, args.size, generator=gen)
    b = torch.randn(args.size, args.size, generator=gen)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(args.chunks):
        start = time.perf_counter()
        for _ in range(args.products):
            a @ b
        times.append(time.perf_counter() - start)
    med = statistics.median(times)
    spread = spread_percent(times)
    gflops = 2 * args.size**3 * args.products / med / 1e9
    print(f"threads {args.threads}: {args.chunks} chunks of {args.products} products "
          f"{args.size}^3, median {med:.3f} s ({gflops:.0f} GFLOP/s), min {min(times):.3f}, "
          f"max {max(times):.3f}, spread {spread:.0f}%")
    print("chunks: " + " ".join(f"{t:.2f}" for t in times))


if __name__ == "__main__":
    main()
