#!/usr/bin/env python3
"""Throughput of the queue across machines on this machine (a benchmark, not a test: it
prints figures). Runs the same batch of small jobs on the tiny weights, so that the engine
and the store dominate: once through `serve` without `--queue` (one process, one job at a
time), then through `serve --queue` with 1, 2 and 3 `worker` processes on a Redis started
here. Each setting is repeated; the figures are medians with the spread (min-max).

For each it reports jobs/s, and for the queue the engine's share per job:
- Redis commands (scripts' inner commands included, the page's reads left out) and Redis
  CPU time (user + system, from INFO) per job;
- the wall time per job beyond the one-process run, with one worker.

    cargo build --release -p neural-style-cli
    python3 tools/queue_bench.py [--bin target/release/neural-style] [--jobs 30]
                                 [--repeats 3] [--size 32] [--iterations 20]

Needs redis-server (Debian package). Every process listens on 127.0.0.1 only.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from web_load import TINY, Client, multipart, png  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, limit=20):
    start = time.time()
    while time.time() - start < limit:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing answered on port {port}")


# The server's reads for the page (job lists, views): left out of the per-job count, since
# they grow with how often clients look, not with the jobs.
READS = {"hmget", "zrank", "zrevrange"}


def redis_info(port):
    """Commands run for submissions and workers (every command, scripts' inner ones
    included, less the page's reads) and CPU seconds of the Redis server (INFO)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "all"], capture_output=True,
                         text=True, check=True).stdout
    info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    cpu = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    calls = 0
    for key, value in info.items():
        if key.startswith("cmdstat_") and key[len("cmdstat_"):] not in READS:
            calls += int(value.split("calls=")[1].split(",")[0])
    return calls, cpu


def run_batch(args, port, jobs):
    """Submits `jobs` jobs at once and waits until all are done: seconds."""
    client = Client(port)
    body, ctype = multipart([
        ("settings", None, None, json.dumps({"size": args.size,
                                             "iterations": args.iterations}).encode()),
        ("content", "c.png", "image/png", png(80, 60, 0.0)),
        ("style", "s.png", "image/png", png(60, 60, 2.0)),
    ])
    start = time.perf_counter()
    ids = []
    for _ in range(jobs):
        status, answer = client.request("POST", "/api/jobs", body, ctype)
        if status != 201:
            raise SystemExit(f"submit: {status} {answer[:200]!r}")
        ids.append(json.loads(answer)["id"])
    while True:
        status, answer = client.request("GET", "/api/jobs")
        views = [v for v in json.loads(answer) if v["id"] in ids]
        if any(v["status"] not in ("queued", "running", "done") for v in views):
            raise SystemExit(f"a job ended badly: {views}")
        if len(views) == jobs and all(v["status"] == "done" for v in views):
            return time.perf_counter() - start
        time.sleep(0.05)


def start(cmd, log):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def embedded(args, tmp):
    port = free_port()
    server = start([args.bin, "serve", "-w", args.weights, "--bind", f"127.0.0.1:{port}",
                    "--results", os.path.join(tmp, "results"), "--threads", "1",
                    "--max-queue", str(args.jobs), "--max-per-client", "0"],
                   os.path.join(tmp, "serve.log"))
    try:
        wait_port(port)
        run_batch(args, port, 2)  # warm up
        return [run_batch(args, port, args.jobs) for _ in range(args.repeats)]
    finally:
        stop([server])


def queued(args, tmp, workers):
    rport, port = free_port(), free_port()
    rdir = os.path.join(tmp, f"redis-{workers}")
    os.makedirs(rdir)
    redis = start(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "yes", "--appendfsync", "always", "--dir", rdir],
                  os.path.join(tmp, "redis.log"))
    wait_port(rport)
    url = f"redis://127.0.0.1:{rport}"
    store = os.path.join(tmp, f"store-{workers}")
    procs = [redis]
    try:
        procs.append(start([args.bin, "serve", "-w", args.weights, "--bind", f"127.0.0.1:{port}",
                            "--queue", url, "--store", store, "--max-per-client", "0",
                            "--max-queue", str(args.jobs)], os.path.join(tmp, "serve-q.log")))
        for i in range(workers):
            procs.append(start([args.bin, "worker", "-w", args.weights, "--queue", url,
                                "--store", store, "--name", f"w{i}", "--threads", "1"],
                               os.path.join(tmp, f"worker-{i}.log")))
        wait_port(port)
        run_batch(args, port, 2)  # warm up
        times, commands, cpu = [], [], []
        for _ in range(args.repeats):
            c0, u0 = redis_info(rport)
            times.append(run_batch(args, port, args.jobs))
            c1, u1 = redis_info(rport)
            commands.append((c1 - c0) / args.jobs)
            cpu.append((u1 - u0) / args.jobs * 1000)
        return times, commands, cpu
    finally:
        stop(procs[1:] + procs[:1])


def spread(values, fmt="{:.2f}"):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/neural-style"))
    ap.add_argument("--weights", default=TINY)
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = embedded(args, tmp)
        print(f"{args.jobs} jobs of {args.size} px, {args.iterations} iterations, tiny weights, "
              f"{args.repeats} repeats; {os.cpu_count()} cores")
        print("| setting | jobs/s | s per batch | Redis commands per job | Redis CPU ms per job |")
        print("|---|---|---|---|---|")
        print(f"| one process, no --queue | {spread([args.jobs / t for t in base])} "
              f"| {spread(base)} | | |")
        one = None
        for workers in (1, 2, 3):
            times, commands, cpu = queued(args, tmp, workers)
            if workers == 1:
                one = times
            print(f"| --queue, {workers} worker{'s' if workers > 1 else ''} "
                  f"| {spread([args.jobs / t for t in times])} | {spread(times)} "
                  f"| {spread(commands, '{:.0f}')} | {spread(cpu)} |")
        extra = [(q - b) / args.jobs * 1000 for q, b in zip(sorted(one), sorted(base))]
        print(f"\nwall time per job beyond one process, 1 worker: {spread(extra, '{:.0f}')} ms")


if __name__ == "__main__":
    main()
