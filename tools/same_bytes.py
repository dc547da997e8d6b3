"""Same bytes from two builds: runs a fixed set of seeded jobs with one `neural-style`
binary and prints the SHA-256 of everything they write, so that a refactoring can be shown
to leave every output unchanged (run it with the build before and the build after, then
compare the two JSON files). Not a test: it prints figures and writes a JSON file.

    python3 tools/same_bytes.py --bin /path/to/neural-style --out before.json
    python3 tools/same_bytes.py --bin target/release/neural-style --out after.json
    python3 tools/same_bytes.py --compare before.json after.json

The jobs (vgg16-hed from ../shared/testdata, tubingen and The Starry Night, 2 threads):
the 256 px parity run (one size, 100 evaluations, seed 1); the default 512 px run; two
styles by region (--mask); the W2 style loss; 768 px by tiles of 256; a batch of 2 photos
x 2 paintings; a run with checkpoints, its last checkpoint, and a run interrupted by SIGINT
then resumed from its checkpoint; a job through `serve --queue` and a `worker` on a Redis
started here (needs redis-server; every process listens on 127.0.0.1 only).
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from queue_bench import free_port, start, stop, wait_port  # noqa: E402
from web_load import Client, multipart  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "testdata")
WEIGHTS = os.path.join(DATA, "weights", "vgg16-hed.safetensors")
PHOTO = os.path.join(DATA, "content", "tubingen.jpg")
CAT = os.path.join(DATA, "content", "chelsea.png")
STARRY = os.path.join(DATA, "style", "starry_night.jpg")
SCREAM = os.path.join(DATA, "style", "the_scream.jpg")


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def checkpoint_state(path):
    """The SHA-256 of a checkpoint's state apart from its header's layout: every tensor
    (name, shape, bytes) but the best loss, and the metadata but the checksum, with the
    stage under one name and the best loss's four terms as numbers. Checkpoints that differ
    only in how the header names things (the stage key `scale` then `stage`; the best loss
    as a tensor then as JSON) give the same value."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = dict(header.pop("__metadata__", {}))
    meta.pop("checksum", None)
    meta["stage"] = meta.pop("stage", meta.pop("scale", None))
    best = meta.pop("best_loss", None)
    if best is not None:
        terms = json.loads(best)
        best = [terms[k] for k in ("total", "content", "style", "tv")]
    h = hashlib.sha256()
    for name in sorted(header):
        info = header[name]
        begin, end = info["data_offsets"]
        raw = data[8 + n + begin:8 + n + end]
        if name == "best_loss":
            best = list(struct.unpack(f"<{len(raw) // 4}f", raw))
            continue
        h.update(f"{name}{info['shape']}".encode() + raw)
    h.update(json.dumps(sorted(meta.items())).encode())
    h.update(struct.pack("<4f", *best) if best else b"")
    return h.hexdigest()


def mask_png(path, w, h, left):
    """A black and white PNG: white on the left half (or the right when `left` is False)."""
    import struct
    import zlib
    rows = b"".join(
        b"\0" + bytes(255 if (x < w // 2) == left else 0 for x in range(w)) for _ in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class Runner:
    def __init__(self, binary, tmp):
        self.bin, self.tmp, self.results, self.seconds = binary, tmp, {}, {}

    def path(self, name):
        return os.path.join(self.tmp, name)

    def run(self, name, args, outputs):
        """Runs the command; records the hash of each output (a file, or every file of a
        folder) under `name`."""
        cmd = [self.bin] + args + ["--threads", "2", "-q"]
        started = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        self.seconds[name] = round(time.perf_counter() - started, 1)
        self.record(name, outputs)

    def record(self, name, outputs):
        for out in outputs:
            if os.path.isdir(out):
                for f in sorted(os.listdir(out)):
                    self.results[f"{name}/{f}"] = sha(os.path.join(out, f))
            else:
                self.results[f"{name}/{os.path.basename(out)}"] = sha(out)
                if out.endswith(".ckpt"):
                    self.results[f"{name}/{os.path.basename(out)} (state)"] = \
                        checkpoint_state(out)
        print(f"{name}: {self.seconds.get(name, '-')} s", flush=True)


def base(*extra):
    return ["-w", WEIGHTS, "-c", PHOTO, "-s", STARRY, "--seed", "1", *extra]


def jobs(r):
    r.run("parity-256", base("--size", "256", "--no-multiscale", "-n", "100",
                             "-o", r.path("parity.png")), [r.path("parity.png")])
    r.run("default-512", base("--size", "512", "-o", r.path("default.png")),
          [r.path("default.png")])
    mask_png(r.path("left.png"), 64, 48, True)
    mask_png(r.path("right.png"), 64, 48, False)
    r.run("masked-256", ["-w", WEIGHTS, "-c", PHOTO, "-s", STARRY, "-s", SCREAM,
                         "--mask", r.path("left.png"), "--mask", r.path("right.png"),
                         "--seed", "1", "--size", "256", "-n", "100", "-o", r.path("masked.png")],
          [r.path("masked.png")])
    r.run("w2-256", base("--size", "256", "--no-multiscale", "-n", "100", "--style-loss", "w2",
                         "-o", r.path("w2.png")), [r.path("w2.png")])
    r.run("tiled-768", base("--size", "768", "--no-multiscale", "-n", "20", "--tile", "256",
                            "-o", r.path("tiled.png")), [r.path("tiled.png")])
    photos = r.path("photos")
    os.makedirs(photos)
    shutil.copy(PHOTO, photos)
    shutil.copy(CAT, photos)
    r.run("batch-2x2", ["batch", "-w", WEIGHTS, "-c", photos, "-s", STARRY, "-s", SCREAM,
                        "--seed", "1", "--size", "128", "-n", "30", "-o", r.path("batch")],
          [r.path("batch")])
    ck_args = base("--size", "256", "--no-multiscale", "-n", "60", "--checkpoint-every", "20")
    r.run("checkpoint-256", ck_args + ["--checkpoint", r.path("whole.ckpt"),
                                       "-o", r.path("whole.png")],
          [r.path("whole.ckpt"), r.path("whole.png")])
    # Interrupted once its first checkpoint is on disk, then resumed.
    cut = r.path("cut.ckpt")
    cmd = [r.bin] + ck_args + ["--checkpoint", cut, "-o", r.path("resumed.png"),
                               "--threads", "2", "-q"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not os.path.exists(cut) and p.poll() is None:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    p.wait()
    r.run("resume-256", ck_args + ["--checkpoint", cut, "--resume", cut,
                                   "-o", r.path("resumed.png")], [r.path("resumed.png")])
    queue_job(r)


def queue_job(r):
    rport, port = free_port(), free_port()
    rdir, store = r.path("redis"), r.path("store")
    os.makedirs(rdir)
    procs = [start(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                    "--dir", rdir], r.path("redis.log"))]
    try:
        wait_port(rport)
        url = f"redis://127.0.0.1:{rport}"
        procs.append(start([r.bin, "serve", "-w", WEIGHTS, "--bind", f"127.0.0.1:{port}",
                            "--queue", url, "--store", store], r.path("serve.log")))
        procs.append(start([r.bin, "worker", "-w", WEIGHTS, "--queue", url, "--store", store,
                            "--name", "w0", "--threads", "2"], r.path("worker.log")))
        wait_port(port)
        client = Client(port)
        with open(PHOTO, "rb") as c, open(STARRY, "rb") as s:
            body, ctype = multipart([
                ("settings", None, None, json.dumps({"size": 128, "iterations": 40,
                                                     "seed": 1}).encode()),
                ("content", "tubingen.jpg", "image/jpeg", c.read()),
                ("style", "starry_night.jpg", "image/jpeg", s.read()),
            ])
        started = time.perf_counter()
        status, answer = client.request("POST", "/api/jobs", body, ctype)
        if status != 201:
            raise SystemExit(f"submit: {status} {answer[:200]!r}")
        job = json.loads(answer)["id"]
        while True:
            status, answer = client.request("GET", f"/api/jobs/{job}")
            view = json.loads(answer)
            if view["status"] == "done":
                break
            if view["status"] not in ("queued", "running"):
                raise SystemExit(f"the queued job ended badly: {view}")
            time.sleep(0.1)
        status, image = client.request("GET", f"/api/jobs/{job}/result")
        r.seconds["queue-128"] = round(time.perf_counter() - started, 1)
        r.results["queue-128/result"] = hashlib.sha256(image).hexdigest()
        print(f"queue-128: {r.seconds['queue-128']} s", flush=True)
    finally:
        stop(procs[1:] + procs[:1])


def compare(a, b):
    with open(a) as f:
        left = json.load(f)["sha256"]
    with open(b) as f:
        right = json.load(f)["sha256"]
    same = 0
    for key in sorted(set(left) | set(right)):
        ok = left.get(key) == right.get(key)
        same += ok
        print(f"{'same' if ok else 'DIFFERENT'}  {key}  {left.get(key, '-')[:16]}  "
              f"{right.get(key, '-')[:16]}")
    print(f"{same} of {len(set(left) | set(right))} outputs identical")
    return same == len(set(left) | set(right))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--out")
    ap.add_argument("--compare", nargs=2)
    args = ap.parse_args()
    if args.compare:
        sys.exit(0 if compare(*args.compare) else 1)
    for f in (WEIGHTS, PHOTO, CAT, STARRY, SCREAM):
        if not os.path.exists(f):
            raise SystemExit(f"{f} is missing: this needs ../shared/testdata")
    with tempfile.TemporaryDirectory() as tmp:
        r = Runner(os.path.abspath(args.bin), tmp)
        jobs(r)
        with open(args.out, "w") as f:
            json.dump({"bin": args.bin, "seconds": r.seconds, "sha256": r.results}, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
