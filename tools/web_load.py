#!/usr/bin/env python3
"""Load test of `neural-style serve` on loopback (a benchmark, not a test: it prints figures).

Starts the server (one worker), queues 20 jobs at once, lets 50 clients watch them (half
follow the server-sent event stream, half poll the job and its preview), sends oversize and
non-image uploads during the load, and reports: every job's end state (none may be lost),
each refused upload's status (413 / 415 expected), the answers and events the clients got,
and the server's resident memory sampled every 50 ms (peak = VmHWM).

    cargo build --release -p neural-style-cli
    python3 tools/web_load.py [--bin target/release/neural-style] [--weights FILE]
                              [--size 64] [--iterations 100]

Exit status 1 when a job was lost or failed, or an upload got another status.
"""

import argparse
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors")


def png(w, h, phase):
    """A smooth colourful PNG, written with zlib alone."""
    import math
    rows = []
    for y in range(h):
        row = bytearray([0])
        for x in range(w):
            fx, fy = x / w, y / h
            row += bytes([
                int(127 + 120 * math.sin(6 * fx + phase)),
                int(127 + 120 * math.cos(5 * fy - phase)),
                int(127 + 120 * math.sin(4 * (fx + fy))),
            ])
        rows.append(bytes(row))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))


def multipart(parts):
    boundary = "----neural-style-load-7d3f"
    out = io.BytesIO()
    for name, filename, ctype, data in parts:
        out.write(f"--{boundary}\r\n".encode())
        if filename:
            out.write(f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                      f"Content-Type: {ctype}\r\n\r\n".encode())
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(data)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


class Client:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, ctype=None, timeout=60):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        # Jobs belong to the client token that made them (see docs/web.md).
        headers = {"X-Client-Token": "web-load-script-client"}
        if ctype:
            headers["Content-Type"] = ctype
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            return r.status, r.read()
        except (ConnectionResetError, BrokenPipeError) as e:
            # The server may answer 413 and close before the whole body is sent.
            return None, str(e).encode()
        finally:
            c.close()


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/neural-style"))
    ap.add_argument("--weights", default=TINY)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=100)
    a = ap.parse_args()

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = tempfile.mkdtemp(prefix="neural-style-load-")
    server = subprocess.Popen(
        [a.bin, "serve", "--weights", a.weights, "--bind", f"127.0.0.1:{port}", "--results", results,
         "--max-upload", "4M", "--max-queue", str(max(32, a.jobs))],
        stderr=subprocess.PIPE, text=True)
    client = Client(port)
    for _ in range(300):
        try:
            if client.request("GET", "/api/info")[0] == 200:
                break
        except OSError:
            time.sleep(0.05)
    else:
        server.kill()
        sys.exit("the server did not start: " + server.stderr.read())

    samples = []
    stop_sampling = threading.Event()

    def sample():
        while not stop_sampling.is_set():
            v = rss_kib(server.pid)
            if v:
                samples.append(v)
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    idle_rss = rss_kib(server.pid)

    # 20 jobs queued at once.
    t0 = time.time()
    ids, submit_status = [], []
    lock = threading.Lock()

    def submit(i):
        settings = json.dumps({"size": a.size, "iterations": a.iterations, "seed": i})
        body, ctype = multipart([
            ("settings", None, None, settings.encode()),
            ("content", "photo.png", "image/png", png(96, 72, 0.1 * i)),
            ("style", "painting.png", "image/png", png(64, 64, 2.0 + 0.1 * i)),
        ])
        status, data = client.request("POST", "/api/jobs", body, ctype)
        with lock:
            submit_status.append(status)
            if status == 201:
                ids.append(json.loads(data)["id"])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(a.jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    positions = sorted(json.loads(client.request("GET", f"/api/jobs/{i}")[1]).get("position") or 0
                       for i in ids)

    # 50 watchers: half follow the event stream, half poll the job and its preview.
    counts = {"events": 0, "polls": 0, "previews": 0, "errors": 0}

    def stream(job_id):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            c.request("GET", f"/api/jobs/{job_id}/events")
            r = c.getresponse()
            n = 0
            for line in r:
                if line.startswith(b"data: "):
                    n += 1
                    if json.loads(line[6:])["status"] not in ("queued", "running"):
                        break
            c.close()
            with lock:
                counts["events"] += n
        except Exception:
            with lock:
                counts["errors"] += 1

    def poll(job_id):
        n = p = 0
        try:
            while True:
                status, data = client.request("GET", f"/api/jobs/{job_id}")
                n += 1
                job = json.loads(data)
                if job["preview_version"]:
                    s, _ = client.request("GET", f"/api/jobs/{job_id}/preview")
                    p += s == 200
                if job["status"] not in ("queued", "running"):
                    break
                time.sleep(0.1)
        except Exception:
            with lock:
                counts["errors"] += 1
        with lock:
            counts["polls"] += n
            counts["previews"] += p

    watchers = []
    for k in range(a.clients):
        job_id = ids[k % len(ids)]
        watchers.append(threading.Thread(target=stream if k % 2 == 0 else poll, args=(job_id,)))
    for t in watchers:
        t.start()

    # Bad uploads during the load.
    refused = []
    for i in range(5):
        body, ctype = multipart([("content", "big.png", "image/png", os.urandom(5 << 20)),
                                 ("style", "p.png", "image/png", png(64, 64, 0))])
        refused.append(("oversize", 413, client.request("POST", "/api/jobs", body, ctype)[0]))
        body, ctype = multipart([("content", "notes.png", "image/png", b"not an image at all " * 50),
                                 ("style", "p.png", "image/png", png(64, 64, 0))])
        refused.append(("non-image", 415, client.request("POST", "/api/jobs", body, ctype)[0]))

    for t in watchers:
        t.join()
    elapsed = time.time() - t0
    final = {i: json.loads(client.request("GET", f"/api/jobs/{i}")[1]) for i in ids}
    downloads = sum(client.request("GET", f"/api/jobs/{i}/result")[1][:8] == b"\x89PNG\r\n\x1a\n"
                    for i in ids)
    peak = rss_kib(server.pid, "VmHWM")
    stop_sampling.set()
    server.terminate()
    server.wait(timeout=30)

    states = {}
    for j in final.values():
        states[j["status"]] = states.get(j["status"], 0) + 1
    print(f"server: {a.bin} serve --weights {os.path.basename(a.weights)} (1 worker), jobs of "
          f"{a.size} px x {a.iterations} iterations")
    print(f"submitted {a.jobs} jobs at once: statuses {sorted(set(submit_status))}, "
          f"{positions.count(0)} running at once, queue places {min(p for p in positions if p) if any(positions) else 0}..{positions[-1]}")
    print(f"{a.clients} watchers ({(a.clients + 1) // 2} event streams, {a.clients // 2} pollers): "
          f"{counts['events']} events, {counts['polls']} polls, {counts['previews']} previews fetched, "
          f"{counts['errors']} client errors")
    print(f"all jobs finished in {elapsed:.1f} s: {states}; {downloads}/{len(ids)} results downloaded as PNG")
    bad = [r for r in refused if r[1] != r[2]]
    print("refused uploads: " + ", ".join(f"{k} -> {got}" for k, _, got in refused))
    print(f"server RSS: idle {idle_rss / 1024:.1f} MiB, median under load "
          f"{sorted(samples)[len(samples) // 2] / 1024:.1f} MiB, peak (VmHWM) {peak / 1024:.1f} MiB "
          f"({len(samples)} samples)")
    lost = len(ids) != a.jobs or states.get("done", 0) != a.jobs or downloads != a.jobs
    if lost or bad or counts["errors"]:
        print("FAILED: " + ("jobs lost or unfinished; " if lost else "") + (f"wrong statuses {bad}" if bad else ""))
        sys.exit(1)


if __name__ == "__main__":
    main()
