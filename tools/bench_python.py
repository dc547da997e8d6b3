#!/usr/bin/env python3
"""The Python package's overhead against the command: the same run, alternately through the
Rust binary and through `neural_style.transfer` in a fresh interpreter, timed from outside
(wall time of each process: start, imports, loading, the run, writing), and inside Python the
call alone. Prints medians and spreads, and checks that both wrote byte-identical files.

    python3 tools/bench_python.py --python target/py-venv/bin/python --repeats 5

Needs a release build of the command (`cargo build --release`), the package installed in the
given interpreter (tools/python_check.sh makes target/py-venv), and a weights file (default
../shared/testdata/weights/vgg16-hed.safetensors with the shared Tübingen and Starry Night).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "testdata")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--python", default=os.path.join(ROOT, "target", "py-venv", "bin", "python"))
    p.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "neural-style"))
    p.add_argument("--weights", default=os.path.join(SHARED, "weights", "vgg16-hed.safetensors"))
    p.add_argument("--content", default=os.path.join(SHARED, "content", "tubingen.jpg"))
    p.add_argument("--style", default=os.path.join(SHARED, "style", "starry_night.jpg"))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    for path in (a.python, a.binary, a.weights, a.content, a.style):
        if not os.path.exists(path):
            sys.exit(f"{path} is absent (see the docstring)")
    tmp = tempfile.mkdtemp(prefix="bench-python-")
    flags = ["-w", a.weights, "--size", str(a.size), "-n", str(a.iterations)]
    code = (
        "import time, sys, neural_style\n"
        "t = time.perf_counter()\n"
        f"neural_style.transfer({a.content!r}, {a.style!r}, weights={a.weights!r}, size={a.size},"
        f" iterations={a.iterations}, output=sys.argv[1], progress=None)\n"
        "print(time.perf_counter() - t)\n"
    )
    cli, py, call = [], [], []
    for i in range(a.repeats):
        out_cli, out_py = os.path.join(tmp, f"cli{i}.png"), os.path.join(tmp, f"py{i}.png")
        t = time.perf_counter()
        subprocess.run([a.binary, "-c", a.content, "-s", a.style, *flags, "-q", "-o", out_cli],
                       check=True, capture_output=True)
        cli.append(time.perf_counter() - t)
        t = time.perf_counter()
        r = subprocess.run([a.python, "-c", code, out_py], check=True, capture_output=True, text=True)
        py.append(time.perf_counter() - t)
        call.append(float(r.stdout.strip().splitlines()[-1]))
        same = open(out_cli, "rb").read() == open(out_py, "rb").read()
        print(f"run {i + 1}: command {cli[-1]:.2f} s, python process {py[-1]:.2f} s "
              f"(transfer() {call[-1]:.2f} s), files {'identical' if same else 'DIFFER'}", flush=True)
        if not same:
            sys.exit("the command and Python wrote different files")

    def summary(xs):
        return f"median {statistics.median(xs):.2f} s (spread {min(xs):.2f}-{max(xs):.2f})"

    print(f"{a.size} px, {a.iterations} evaluations, {a.repeats} runs each, alternating:")
    print(f"  command (Rust binary):        {summary(cli)}")
    print(f"  python -c transfer(...):      {summary(py)}")
    print(f"  transfer() call alone:        {summary(call)}")
    overhead = [p_ - c for p_, c in zip(py, cli)]
    print(f"  python process - command:     median {statistics.median(overhead):+.2f} s, "
          f"ratio {statistics.median(py) / statistics.median(cli):.3f}")


if __name__ == "__main__":
    main()
