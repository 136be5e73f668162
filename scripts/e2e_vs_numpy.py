#!/usr/bin/python3
"""Target 4 of docs/performance.md: large GEMMs end to end through a DeviceGEMM server
against numpy's matmul alone on the same shape, in the same process and environment.

    /usr/bin/python3 scripts/e2e_vs_numpy.py HOST:PORT [rounds [MxNxK ...]]

Every round times, for each shape, one numpy matmul (into a preallocated output) and one
op through the server (one connection, TCP_NODELAY, the frame sent with one sendmsg from
the arrays' own memory, the answer read into a preallocated buffer), alternating which
goes first, each sample after a pause of PAUSE_S (0.2 s): OpenBLAS's idle pool threads
poll for work with sched_yield for up to 2^28 TSC ticks (≈ 0.1 s at 2.6 GHz) after a call
unless told otherwise (numpy's are; sstemu bounds its own, docs/gemm.md), and a sample
taken while the other side's threads still spin runs on one core where it had two. It
prints a Markdown table of the medians over the rounds and the median of the per-round
ratios end-to-end / numpy (pairing a round's two samples cancels slow changes of machine
load).
"""
import json
import socket
import statistics
import struct
import sys
import time

import numpy as np

MAGIC = 0xDEADBEEF
OP_GEMM = 0x01
SHAPES = ["1024x1024x1024", "2048x2048x2048", "128x11008x4096"]
PAUSE_S = 0.2  # longer than OpenBLAS's default idle spin at a TSC of 2 GHz or more


class Client:
    """One DeviceGEMM connection issuing GEMMs of one shape."""

    def __init__(self, addr, m, n, k, a, b):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.m, self.n = m, n
        header = json.dumps({"op_id": 1, "M": m, "N": n, "K": k, "A_shape": [m, k],
                             "B_shape": [k, n], "dtype": "float32"}).encode()
        self.parts = [struct.pack(">IIB", MAGIC, len(header), OP_GEMM) + header,
                      struct.pack(">I", a.nbytes), memoryview(a).cast("B"),
                      struct.pack(">I", b.nbytes), memoryview(b).cast("B")]
        self.out = bytearray(4 + 4 * m * n)

    def gemm(self):
        """One op; returns C as a float32 array viewing the client's buffer."""
        views = [memoryview(p) for p in self.parts]
        while views:  # sendmsg may stop short on a large frame: send the rest
            sent = self.sock.sendmsg(views)
            while sent:
                if sent >= len(views[0]):
                    sent -= len(views[0])
                    views.pop(0)
                else:
                    views[0], sent = views[0][sent:], 0
        view, got = memoryview(self.out), 0
        while got < len(self.out):
            r = self.sock.recv_into(view[got:])
            if r == 0:
                raise ConnectionError("server closed the connection")
            got += r
        (size,) = struct.unpack(">I", self.out[:4])
        if size != 4 * self.m * self.n:
            raise ValueError(f"result of {size} bytes, want {4 * self.m * self.n}")
        return np.frombuffer(self.out, dtype=np.float32, offset=4).reshape(self.m, self.n)


def main():
    addr = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    shapes = sys.argv[3:] or SHAPES
    rng = np.random.default_rng(1)
    e2e = {s: [] for s in shapes}
    npy = {s: [] for s in shapes}
    for s in shapes:
        m, n, k = (int(d) for d in s.split("x"))
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        c = Client(addr, m, n, k, a, b)
        np.matmul(a, b, out=out)  # warm-up of both: thread pools, page faults
        got = c.gemm()
        err = float(np.max(np.abs(got - out)))
        bound = k * 2.0**-24 * float(np.max(np.abs(a) @ np.abs(b)))
        if not err <= 2 * bound:
            raise SystemExit(f"{s}: result differs from numpy by {err:g} (> {2 * bound:g})")
        for r in range(rounds):
            def time_numpy():
                t0 = time.perf_counter()
                np.matmul(a, b, out=out)
                npy[s].append(time.perf_counter() - t0)

            def time_e2e():
                t0 = time.perf_counter()
                c.gemm()
                e2e[s].append(time.perf_counter() - t0)

            for f in ((time_numpy, time_e2e) if r % 2 == 0 else (time_e2e, time_numpy)):
                time.sleep(PAUSE_S)
                f()
            print(f"round {r + 1} {s}: numpy {npy[s][-1] * 1e3:.1f} ms, end to end {e2e[s][-1] * 1e3:.1f} ms",
                  file=sys.stderr, flush=True)
        c.sock.close()
    print("| shape M×N×K | end to end ms | numpy ms | ratio of medians | median paired ratio |")
    print("|---|---:|---:|---:|---:|")
    for s in shapes:
        e, n = statistics.median(e2e[s]), statistics.median(npy[s])
        paired = statistics.median(x / y for x, y in zip(e2e[s], npy[s]))
        print(f"| {s.replace('x', '×')} | {e * 1e3:.1f} | {n * 1e3:.1f} | {e / n:.2f} | {paired:.2f} |")


if __name__ == "__main__":
    main()
