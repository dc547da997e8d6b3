#!/usr/bin/env python3
"""Seconds per step and peak memory of neural-style beside PyTorch, measured in one run on
this machine (VGG19, random weights, content relu4_2 + style relu1_1..relu5_1, forward and
backward to the image). Each engine runs in its own process; peak RSS comes from the
kernel's accounting of that process (wait4).

    python3 tools/bench.py [--sizes 256,512] [--steps 5] [--repeats 1] [--threads 1,2] [--device cpu|gpu]

GFLOP/s counts the multiply-adds of a direct convolution (2 FLOP each) in the forward pass
and in the gradient to the image (twice the forward): the same count for both engines, so
an engine that computes convolutions with fewer multiplications (Winograd) shows more.

`--whole-run` times whole runs instead, as a user runs them: tubingen + The Starry Night
(../shared/testdata) resized to the size, real weights (vgg16-hed by default), the
reference's objective (content relu4_2, style relu1_1..relu5_1, mean loss form, zero
padding, one size), our CLI against torch_reference.py's `run` (torch.optim.LBFGS), each
the median seconds between successive evaluations after two warm-up ones, with the spread
(the larger distance from the median to min or max):

    python3 tools/bench.py --whole-run --sizes 512 --threads 2 [--evaluations 22] [--extra "--precision bf16"]

Needs torch and safetensors (pip install torch safetensors) and a release build
(cargo build --release).
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


def step_gflop(size, arch):
    """Direct-convolution FLOPs of one step (forward + gradient to the image) up to conv5_1."""
    blocks = [(3, 64, 2), (64, 128, 2), (128, 256, 4 if arch == "vgg19" else 3),
              (256, 512, 4 if arch == "vgg19" else 3), (512, 512, 1)]
    flop, side = 0.0, size
    for cin, cout, convs in blocks:
        for i in range(convs):
            flop += 2 * (cin if i == 0 else cout) * cout * 9 * side * side
        side //= 2
    return 2 * flop / 1e9


def gpu_memory_mib(pid):
    """The GPU memory nvidia-smi reports for process `pid` (0 when none or no nvidia-smi)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0.0
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(pid):
            return float(parts[1])
    return 0.0


def measure(cmd, gpu=False):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=ROOT)
    gpu_peak = [0.0]
    if gpu:
        import threading

        def poll():
            while proc.poll() is None:
                gpu_peak[0] = max(gpu_peak[0], gpu_memory_mib(proc.pid))
        threading.Thread(target=poll, daemon=True).start()
    out = proc.stdout.read()
    _, status, rusage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"failed ({status}): {' '.join(cmd)}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_rss_mib"] = rusage.ru_maxrss / 1024.0
    result["peak_gpu_mib"] = gpu_peak[0]
    return result


def spread_percent(xs):
    """The larger distance from the median to min or max, as a percentage of the median."""
    med = statistics.median(xs)
    return max(med - min(xs), max(xs) - med) / med * 100


def whole_run(args, size, n_threads):
    """One whole run of each engine on the same pictures and objective: seconds between
    successive evaluations (an evaluation and the optimiser's step), after two warm-up ones."""
    data = os.path.join(ROOT, "..", "shared", "testdata")
    if not os.path.isdir(data):
        sys.exit(f"{data} is absent: --whole-run needs the shared images and weights")
    reference = os.path.join(ROOT, "crates", "neural-style-testdata", "fixtures", "torch_reference.py")
    tmp = tempfile.mkdtemp(prefix="bench-run-")
    content, style = os.path.join(tmp, "content.png"), os.path.join(tmp, "style.png")
    subprocess.run([sys.executable, reference, "resize", os.path.join(data, "content", "tubingen.jpg"), content, str(size)], check=True)
    subprocess.run([sys.executable, reference, "resize", os.path.join(data, "style", "starry_night.jpg"), style, str(size)], check=True)
    weights = os.path.join(data, "weights", args.weights)
    # The reference's objective: content relu4_2 (5), style relu1_1..relu5_1 (100), TV 1e-3,
    # mean loss form, zero padding, max pooling, L-BFGS history 100, one size. The weighted
    # terms are flags of the same names for both engines.
    objective = ["--content-layers", "relu4_2", "--content-weight", "5", "--style-weight", "100", "--tv-weight", "1e-3"]
    threads = ["--threads", str(n_threads)] if n_threads else []
    log = os.path.join(tmp, "log.jsonl")
    ours = [args.binary, "-c", content, "-s", style, "-w", weights, "--size", str(size), "--no-multiscale",
            "-n", str(args.evaluations), "--loss-form", "mean", "--padding", "zero", "--style-scale", "1",
            "-o", os.path.join(tmp, "ours.png"), "--log", log, "-q"] + objective + threads + shlex.split(args.extra)
    subprocess.run(ours, check=True, capture_output=True)
    seconds = [json.loads(line)["seconds"] for line in open(log) if '"forward_s"' in line]
    intervals = {"neural-style": [b - a for a, b in zip(seconds, seconds[1:])]}
    torch_cmd = [sys.executable, reference, "run", "--content", content, "--style", style, "--weights", weights,
                 "--arch", "vgg16" if "vgg16" in args.weights else args.arch, "--iterations", str(args.evaluations)] + objective + threads
    out = subprocess.run(torch_cmd, check=True, capture_output=True, text=True).stdout
    intervals["pytorch"] = json.loads(out.strip().splitlines()[-1])["intervals_s"]
    medians = {}
    label = str(n_threads) if n_threads else "all"
    for engine, xs in intervals.items():
        xs = xs[2:]
        med = statistics.median(xs)
        medians[engine] = med
        spread = spread_percent(xs)
        print(f"{size:>6} {label:>7} {engine:>13} {med:>14.3f} {min(xs):>7.3f} {max(xs):>7.3f} {len(xs):>6} {spread:>7.0f}%")
    print(f"{size:>6} {label:>7} {'ratio':>13} {medians['neural-style'] / medians['pytorch']:>13.2f}x   (neural-style / PyTorch)", flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,512")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1, help="alternate the two engines this many times")
    p.add_argument("--arch", default="vgg19")
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "neural-style"))
    p.add_argument("--device", default="cpu", help="cpu, or gpu (neural-style --device gpu beside PyTorch on cuda; memory from nvidia-smi)")
    p.add_argument("--threads", default="0", help="comma-separated thread counts for both engines (0: all cores)")
    p.add_argument("--extra", default="", help="more flags for neural-style (e.g. \"--precision bf16\")")
    p.add_argument("--whole-run", action="store_true",
                   help="time whole runs instead (tubingen + The Starry Night from ../shared, real weights): s/evaluation")
    p.add_argument("--weights", default="vgg16-hed.safetensors", help="--whole-run: the weights file in ../shared/testdata/weights")
    p.add_argument("--evaluations", type=int, default=22, help="--whole-run: evaluations per run (the first two are not counted)")
    args = p.parse_args()
    gpu = args.device == "gpu"
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} not found: run `cargo build --release` first")
    if args.whole_run:
        print(f"{'size':>6} {'threads':>7} {'engine':>13} {'median s/eval':>14} {'min':>7} {'max':>7} {'evals':>6} {'spread':>8}")
        for size, n_threads in [(int(s), int(t)) for s in args.sizes.split(",") for t in args.threads.split(",")]:
            whole_run(args, size, n_threads)
        return
    memory = "peak GPU MiB" if gpu else "peak RSS MiB"
    print(f"{'size':>6} {'threads':>7} {'engine':>13} {'median s/step':>14} {'min':>7} {'max':>7} {'GFLOP/s':>8} {memory:>13}")
    for size, n_threads in [(int(s), int(t)) for s in args.sizes.split(",") for t in args.threads.split(",")]:
        threads = ["--threads", str(n_threads)] if n_threads else []
        label = str(n_threads) if n_threads else "all"
        gflop = step_gflop(size, args.arch)
        runs = {"neural-style": [], "pytorch": []}
        for _ in range(args.repeats):
            runs["neural-style"].append(measure([args.binary, "bench", "--json", "--size", str(size), "--steps", str(args.steps), "--arch", args.arch,
                                                 "--device", "gpu" if gpu else "cpu"] + threads + shlex.split(args.extra), gpu))
            runs["pytorch"].append(measure([sys.executable, os.path.join(ROOT, "crates", "neural-style-testdata", "fixtures", "torch_reference.py"), "bench", "--size", str(size), "--steps", str(args.steps),
                                            "--arch", args.arch, "--device", "cuda" if gpu else "cpu"] + threads, gpu))
        summary = {}
        for engine, rs in runs.items():
            med = statistics.median(r["median_s"] for r in rs)
            lo = min(r["min_s"] for r in rs)
            hi = max(r["max_s"] for r in rs)
            rss = max(r["peak_gpu_mib" if gpu else "peak_rss_mib"] for r in rs)
            summary[engine] = (med, rss)
            print(f"{size:>6} {label:>7} {engine:>13} {med:>14.3f} {lo:>7.3f} {hi:>7.3f} {gflop / med:>8.0f} {rss:>13.0f}")
        t = summary["neural-style"][0] / summary["pytorch"][0]
        m = summary["neural-style"][1] / summary["pytorch"][1]
        print(f"{size:>6} {label:>7} {'ratio':>13} {t:>13.2f}x {'':>7} {'':>7} {'':>8} {m:>12.2f}x   (neural-style / PyTorch)", flush=True)


if __name__ == "__main__":
    main()
