#!/usr/bin/env python3
"""The hostile-user cases of issue 19, run against one `neural-style` binary: what each case
did (exit status and first error line, HTTP status, time, whether an input survived).
Run it on an old and a new build to get a before/after table. A report, not a test: the
tests that hold each line are in crates/*/tests (named in the last column).

    cargo build -p neural-style-cli
    python3 tools/hostile.py --bin target/debug/neural-style [--markdown]

Needs Pillow (for the JPEG cases). Every file is made in a temporary folder.
"""

import argparse
import hashlib
import http.client
import io
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "crates/neural-style-testdata/fixtures/tiny_vgg19.safetensors")


def png_bytes(w, h, color=(40, 160, 90)):
    """A flat PNG of any size, streamed through zlib (a 9000x9000 one is ~100 KB)."""
    comp = zlib.compressobj(9)
    row = b"\x00" + bytes(color) * w
    data = b"".join(comp.compress(row) for _ in range(h)) + comp.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def busy_image(w, h, path, fmt=None, **save):
    from PIL import Image
    img = Image.new("RGB", (w, h))
    img.putdata([((4 * x) % 256, (x * y * 7) % 256, ((x ^ y) * 4) % 256) for y in range(h) for x in range(w)])
    img.save(path, fmt, **save)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Cli:
    def __init__(self, binary, tmp):
        self.bin, self.tmp = binary, tmp
        self.c, self.s = self.p("content.png"), self.p("style.png")
        self.w = self.p("weights.safetensors")
        self.restore()

    def restore(self):
        """The inputs as they were (an old build may have destroyed them)."""
        busy_image(48, 40, self.c)
        busy_image(40, 40, self.s)
        shutil.copy(TINY, self.w)

    def p(self, name):
        return os.path.join(self.tmp, name)

    def run(self, args, timeout=60, base=True):
        argv = [self.bin] + (["-c", self.c, "-s", self.s, "-w", self.w, "--size", "32", "-n", "2", "-q"] if base else []) + args
        t = time.time()
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
            code, err = p.returncode, p.stderr
        except subprocess.TimeoutExpired as e:
            code, err = "timeout", (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        lines = [l for l in err.splitlines() if l.strip()]
        said = next((l for l in lines if l.startswith("error:")), lines[-1] if lines else "")
        if "panicked" in err:
            said = "PANIC: " + next(l for l in lines if "panicked" in l)
        said = re.sub(r"x{20,}", "x…x", said.replace(self.tmp + "/", ""))
        return code, said[:170], time.time() - t


def outcome(code, said, extra=""):
    return f"exit {code}" + (f": {said}" if said else "") + (f"; {extra}" if extra else "")


def cli_cases(cli):
    rows = []

    def survives(name, args):
        path = cli.p(name)
        before = sha(path)
        code, said, _ = cli.run(args, base=False)
        kept = sha(path) == before if os.path.exists(path) else False
        cli.restore()
        rows.append((f"`{' '.join(a if not a.startswith(cli.tmp) else os.path.basename(a) for a in args)}`",
                     outcome(code, said, "input kept" if kept else "INPUT DESTROYED")))

    usual = ["-s", cli.s, "-w", cli.w, "-n", "2", "-q"]
    survives("content.png", ["-c", cli.c, *usual, "--log", cli.c, "-o", cli.p("o1.png")])
    survives("style.png", ["-c", cli.c, *usual, "--checkpoint", cli.s, "--checkpoint-every", "1", "-o", cli.p("o2.png")])
    survives("weights.safetensors", ["-c", cli.c, *usual, "--log", cli.w, "-o", cli.p("o3.png")])
    shutil.copy(cli.c, cli.p("out_0001.png"))
    survives("out_0001.png", ["-c", cli.p("out_0001.png"), *usual, "--save-every", "1", "-o", cli.p("out.png")])

    def case(label, args, base=True, timeout=60):
        code, said, secs = cli.run(args, timeout=timeout, base=base)
        rows.append((label, outcome(code, said) + f" ({secs:.1f} s)"))

    from PIL import Image
    Image.new("RGB", (5000, 2), (9, 9, 9)).save(cli.p("thin.png"))
    Image.new("RGB", (300, 2), (9, 9, 9)).save(cli.p("long.png"))
    case("content 5000x2", ["-c", cli.p("thin.png"), *usual, "--size", "32", "-o", cli.p("o.png")], base=False)
    case("content 300x2, --size 512", ["-c", cli.p("long.png"), *usual, "--size", "512", "-o", cli.p("o.png")], base=False)
    case("--lbfgs-history 18446744073709551615", ["--lbfgs-history", "18446744073709551615", "-o", cli.p("o.png")])

    busy_image(96, 64, cli.p("whole.jpg"))
    busy_image(96, 64, cli.p("prog.jpg"), "JPEG", progressive=True, quality=90)
    for src, name in (("whole.jpg", "cut.jpg"), ("prog.jpg", "cut-prog.jpg")):
        data = open(cli.p(src), "rb").read()
        open(cli.p(name), "wb").write(data[: len(data) // 2])
    data = bytearray(open(cli.p("whole.jpg"), "rb").read())
    data[len(data) // 2:] = bytes(len(data) - len(data) // 2)
    open(cli.p("zeroed.jpg"), "wb").write(bytes(data))
    case("JPEG cut at 50% as content", ["-c", cli.p("cut.jpg"), *usual, "--size", "32", "-o", cli.p("o.png")], base=False)
    case("progressive JPEG cut at 50% as style", ["-c", cli.c, "-s", cli.p("cut-prog.jpg"), "-w", cli.w, "--size", "32", "-n", "2", "-q", "-o", cli.p("o.png")], base=False)
    case("JPEG zeroed from 50% as --init", ["--init", cli.p("zeroed.jpg"), "-o", cli.p("o.png")])
    case("JPEG cut at 50% as --content-mask", ["--content-mask", cli.p("cut.jpg"), "-o", cli.p("o.png")])

    case("output name of 250 bytes", ["-o", cli.p("x" * 246 + ".png")])
    case("--checkpoint in a missing folder", ["--checkpoint", cli.p("missing/run.ckpt"), "-o", cli.p("o.png")])
    case("--threads 100000", ["--threads", "100000", "-o", cli.p("o.png")], timeout=30)
    case("--threads 1000", ["--threads", "1000", "-o", cli.p("o.png")], timeout=60)

    # Resume across networks, and a flipped byte.
    ckpt = cli.p("run.ckpt")
    cli.run(["-c", cli.c, "-s", cli.s, "-w", cli.w, "--size", "32", "-n", "8", "-q", "--checkpoint", ckpt, "--checkpoint-every", "1", "-o", cli.p("r.png")], base=False)
    raw = bytearray(open(TINY, "rb").read())
    header = struct.unpack("<Q", raw[:8])[0]
    raw[8 + header] ^= 1
    open(cli.p("nudged.safetensors"), "wb").write(bytes(raw))
    case("--resume with other weights", ["-c", cli.c, "-s", cli.s, "-w", cli.p("nudged.safetensors"), "--size", "32", "-n", "2", "-q", "--resume", ckpt, "-o", cli.p("r2.png")], base=False)
    data = bytearray(open(ckpt, "rb").read())
    data[-40] ^= 0x10
    open(cli.p("flipped.ckpt"), "wb").write(bytes(data))
    case("--resume a checkpoint with a flipped bit", ["--resume", cli.p("flipped.ckpt"), "-o", cli.p("r3.png")])

    os.mkfifo(cli.p("fifo.png"))
    case("a FIFO as content", ["-c", cli.p("fifo.png"), *usual, "--size", "32", "-o", cli.p("o.png")], base=False, timeout=10)
    case("/dev/urandom as content", ["-c", "/dev/urandom", *usual, "--size", "32", "-o", cli.p("o.png")], base=False, timeout=10)
    case("--preserve-colors without content", usual + ["--size", "32", "--preserve-colors", "luminance", "-o", cli.p("o.png")], base=False)
    case("--style-layers ,", ["--style-layers", ",", "-o", cli.p("o.png")])
    case("--cache-dir is a file (OS error)", ["-c", cli.c, "-s", cli.s, "-n", "2", "-q", "--size", "32", "-m", "vgg19", "--cache-dir", cli.c, "-o", cli.p("o.png")], base=False)

    # SIGHUP during a long run.
    log = cli.p("hup.jsonl")
    argv = [cli.bin, "-c", cli.c, "-s", cli.s, "-w", cli.w, "--size", "48", "-n", "100000", "-q", "--log", log, "-o", cli.p("hup.png")]
    p = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    while not os.path.exists(log) or len(open(log).read().splitlines()) < 3:
        time.sleep(0.05)
    # A second run on the same log while the first writes it.
    second_argv = [cli.bin, "-c", cli.c, "-s", cli.s, "-w", cli.w, "--size", "32", "-n", "2", "-q", "--log", log, "-o", cli.p("second.png")]
    second = subprocess.run(second_argv, capture_output=True, text=True)
    p.send_signal(signal.SIGHUP)
    p.wait(timeout=30)
    partial = os.path.exists(cli.p("hup.partial.png"))
    rows.append(("SIGHUP during a run", outcome(p.returncode, "", "best image kept" if partial else "NOTHING SAVED")))
    lines = open(log).read().splitlines()
    broken = sum(1 for l in lines if not (l.startswith("{") and l.endswith("}")))
    second_said = next((l for l in second.stderr.splitlines() if l.startswith("error:")), "").replace(cli.tmp + "/", "")
    rows.append(("a second run with the same --log", outcome(second.returncode, second_said[:150], f"{broken} broken lines in the log")))

    # A batch whose output folder is its input folder.
    os.makedirs(cli.p("pairs"), exist_ok=True)
    shutil.copy(cli.c, cli.p("pairs/a.png"))
    code, said, _ = cli.run(["batch", "-c", cli.p("pairs"), "-s", cli.s, "-w", cli.w, "--size", "32", "-n", "1", "-q", "-o", cli.p("pairs")], base=False)
    rows.append(("batch -o into its input folder", outcome(code, said)))
    return rows


class Server:
    def __init__(self, binary, tmp, extra=()):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.proc = subprocess.Popen(
            [binary, "serve", "-w", TINY, "--bind", f"127.0.0.1:{self.port}", "--results", os.path.join(tmp, "results"), *extra],
            stderr=subprocess.PIPE, text=True)
        while "serving" not in self.proc.stderr.readline():
            if self.proc.poll() is not None:
                raise SystemExit("the server did not start")

    def raw(self, data, timeout=10):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        s.close()
        return out

    def request(self, method, path, body=None, headers=None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def peak_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        t = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return "did not stop in 30 s"
        return f"stopped in {time.time() - t:.1f} s"


def multipart(parts):
    out = b""
    for name, data, ctype in parts:
        out += f'--B\r\nContent-Disposition: form-data; name="{name}"'.encode()
        if ctype:
            out += f'; filename="f"\r\nContent-Type: {ctype}'.encode()
        out += b"\r\n\r\n" + data + b"\r\n"
    return out + b"--B--\r\n"


def web_cases(binary, tmp):
    rows = []
    srv = Server(binary, tmp)
    small = png_bytes(64, 48)
    form = multipart([("settings", b'{"size": 32, "iterations": 2}', None), ("content", small, "image/png"), ("style", small, "image/png")])
    mp = {"Content-Type": "multipart/form-data; boundary=B"}
    mine = {"X-Client-Token": "hostile-client-token-a1"}
    status, body = srv.request("POST", "/api/jobs", form, {**mp, **mine})
    job = body.decode().split('"id":"')[1].split('"')[0] if status == 201 else "0000000000000000"
    # What a browser sends for another site's form post (no cookie: SameSite).
    status, _ = srv.request("POST", "/api/jobs", form, {**mp, "Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"})
    rows.append(("cross-site form POST /api/jobs (Origin evil.example)", f"HTTP {status}"))
    status, _ = srv.request("GET", "/api/jobs", None, {"Host": f"rebound.example:{srv.port}", **mine})
    rows.append(("DNS rebinding: GET /api/jobs with Host rebound.example", f"HTTP {status}"))
    status, _ = srv.request("GET", f"/api/jobs/{job}", None, {"Host": f"rebound.example:{srv.port}", **mine})
    rows.append(("DNS rebinding: GET a job", f"HTTP {status}"))
    other = {"X-Client-Token": "hostile-client-token-b2"}
    status, body = srv.request("GET", "/api/jobs", None, other)
    seen = body.count(b'"id"')
    rows.append(("another client lists the jobs", f"HTTP {status}, {seen} jobs seen"))
    status, _ = srv.request("POST", f"/api/jobs/{job}/stop", None, other)
    rows.append(("another client stops a job", f"HTTP {status}"))
    status, _ = srv.request("DELETE", f"/api/jobs/{job}", None, other)
    rows.append(("another client deletes a job", f"HTTP {status}"))

    answer = srv.raw(b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Client-Token: hostile-client-token-a1\r\n"
                     b"Content-Type: multipart/form-data; boundary=B\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"5\r\n--B\r\n\r\nzz-not-a-size\r\n")
    rows.append(("malformed chunked body", answer.split(b"\r\n")[0].decode(errors="replace")))
    status, body = srv.request("POST", "/api/jobs", multipart([("n" * (1 << 20), b"x", None)]), {**mp, **mine})
    rows.append(("1 MB form field name", f"HTTP {status}, {len(body)} bytes answered"))
    from PIL import Image
    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 48), bytes(range(256)) * 36).save(buf, "JPEG")
    cut = buf.getvalue()[: len(buf.getvalue()) // 2]
    status, body = srv.request("POST", "/api/jobs", multipart([("content", cut, "image/jpeg"), ("style", small, "image/png")]), {**mp, **mine})
    rows.append(("upload of a JPEG cut at 50%", f"HTTP {status}: {body[:110].decode(errors='replace')}"))

    bomb = png_bytes(9000, 9000)
    base = srv.peak_kib()
    t = time.time()
    status, _ = srv.request("POST", "/api/jobs", multipart([("content", bomb, "image/png"), ("style", small, "image/png")]), {**mp, **mine})
    rows.append((f"one {len(bomb) // 1024} KB PNG declaring 9000x9000",
                 f"HTTP {status} in {time.time() - t:.1f} s; server peak RSS {max(base, srv.peak_kib()) / 1024:.0f} MiB (was {base / 1024:.0f})"))

    # Half a request header, then SIGTERM.
    s = socket.create_connection(("127.0.0.1", srv.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    time.sleep(0.3)
    rows.append(("SIGTERM with half a request header open", srv.stop()))
    s.close()

    srv = Server(binary, tmp)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    t = time.time()
    try:
        closed = s.recv(100) == b""
    except socket.timeout:
        closed = False
    rows.append(("half a request header, then silence",
                 f"closed by the server after {time.time() - t:.0f} s" if closed else "still open after 60 s"))
    srv.stop()
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/debug/neural-style"))
    args = ap.parse_args()
    binary = os.path.abspath(args.bin)
    with tempfile.TemporaryDirectory() as tmp:
        rows = cli_cases(Cli(binary, tmp)) + web_cases(binary, tmp)
    for case, result in rows:
        print(f"| {case} | {result} |")


if __name__ == "__main__":
    sys.exit(main())
