#!/usr/bin/env python3
"""Benchmarks of the sstemu Python package against a running `sstemu serve` (run by hand).

1. per-op overhead on a 4x8·8x16 GEMM (defined in python/README.md, "Benchmarks"): this
   package's Device.gemm (with the timing trailer), the reference-style client of
   e2e/pyclient (five sendalls, Nagle on, no timing) and two raw-socket floor clients making
   the same two requests, interleaved in blocks against the same server; each client's p50
   round trip minus its floor's p50, and the ratio package/reference;
2. LLaMA-2-7B, prompt 2048 + 128 new tokens, timing only on the meta device: wall time,
   device ops and round trips;
3. the tiny LLaMA with numerics through the device: device ops per second;
and first Device.gemm's own Python work per op, with its socket replaced by a stub.

Usage: python3 python/bench/bench_client.py [--addr HOST:PORT] [--ops N] [--block N] [--skip-7b]
"""

import argparse
import importlib.util
import json
import os
import socket
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "python"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import sstemu  # noqa: E402
from sstemu import models  # noqa: E402


def reference_client():
    """The DeviceConnection class of e2e/pyclient/device_gemm_client.py (imported, not copied)."""
    path = os.path.join(REPO, "e2e", "pyclient", "device_gemm_client.py")
    spec = importlib.util.spec_from_file_location("device_gemm_client", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.DeviceConnection


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


class FloorClient:
    """The least a Python client can do per GEMM: one pre-built frame, one sendall, Nagle off,
    receives into a preallocated buffer until the answer is complete (nothing decoded).

    Its p50 against the same server is the floor that the loopback, the kernel and the server
    cost; what a real client takes beyond it is that client's overhead. ``timing`` asks for
    the trailer as Device.gemm does (the server then also encodes and sends a record).
    """

    def __init__(self, host, port, m, k, n, timing):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        a, b = np.ones((m, k), np.float32), np.ones((k, n), np.float32)
        meta = {"op_id": 1, "M": m, "N": n, "K": k, "A_shape": [m, k], "B_shape": [k, n], "dtype": "float32"}
        if timing:
            meta["timing"] = True
        body = json.dumps(meta, separators=(",", ":")).encode()
        self.frame = (struct.pack(">IIB", 0xDEADBEEF, len(body), 1) + body + struct.pack(">I", a.nbytes) + a.tobytes()
                      + struct.pack(">I", b.nbytes) + b.tobytes())
        self.timing = timing
        self.buf = bytearray(1 << 16)
        self.view = memoryview(self.buf)
        self.need = 4 + 4 * m * n
        self.trailer = None  # (offset, length) of the last timing record in buf

    def gemm(self):
        self.sock.sendall(self.frame)
        view, need, have = self.view, self.need, 0
        while True:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise ConnectionError("the server closed the connection")
            have += got
            if have >= need:
                if not self.timing:
                    return
                if have >= need + 4:
                    t = struct.unpack_from(">I", self.buf, need)[0]
                    if have >= need + 4 + t:
                        self.trailer = (need + 4, t)
                        return

    def server_us(self):
        """server_us.total of the last op's timing record."""
        o, t = self.trailer
        return json.loads(bytes(self.buf[o:o + t]))["server_us"]["total"]

    def close(self):
        self.sock.close()


def bench_overhead(addr, ops, block):
    """Per-op overhead of both clients on a 4x8·8x16 GEMM, defined as in python/README.md:
    a client's p50 round trip minus the p50 of the floor client making the same request,
    all four clients interleaved in blocks of ``block`` ops (rotating order) on one server."""
    host, port = addr.rsplit(":", 1)
    ref = reference_client()(host, int(port))
    dev = sstemu.connect(addr)
    floor = FloorClient(host, int(port), 4, 8, 16, timing=False)
    floor_t = FloorClient(host, int(port), 4, 8, 16, timing=True)
    a, b = torch.randn(4, 8), torch.randn(8, 16)
    want = a @ b
    clients = [("ref", lambda: ref.gemm(a, b)), ("pkg", lambda: dev.gemm(a, b)), ("floor", floor.gemm),
               ("floor_t", floor_t.gemm)]
    for _ in range(200):  # warm up all connections
        for _, fn in clients:
            fn()
    assert torch.allclose(ref.gemm(a, b), want, atol=1e-5) and torch.allclose(dev.gemm(a, b), want, atol=1e-5)
    lat = {name: [] for name, _ in clients}
    srv = {"pkg": [], "floor_t": []}  # server_us.total of each op, from its timing record
    cpu = dict.fromkeys(lat, 0.0)
    clock = time.perf_counter_ns
    for r in range(max(1, ops // block)):  # interleaved, so all four see the same machine load
        for name, fn in clients[r % 4:] + clients[:r % 4]:
            out = lat[name]
            c0 = time.process_time()
            for _ in range(block):
                t0 = clock()
                fn()
                out.append((clock() - t0) / 1000.0)
                if name in srv:  # outside the timed span; its CPU is taken off below
                    p0 = time.process_time()
                    srv[name].append(dev.last_timing["server_us"]["total"] if name == "pkg" else floor_t.server_us())
                    c0 += time.process_time() - p0
            cpu[name] += time.process_time() - c0
    for c in (ref, dev, floor, floor_t):
        c.close()
    n = len(lat["ref"])
    p50 = {k: statistics.median(v) for k, v in lat.items()}
    cpu = {k: v / n * 1e6 for k, v in cpu.items()}
    print("per-op round trip, GEMM 4x8·8x16, %d ops per client in blocks of %d, interleaved:" % (n, block))
    rows = (("ref", "reference client (e2e/pyclient), no timing"), ("pkg", "sstemu.Device.gemm, timing trailer"),
            ("floor", "floor: raw socket, same request as ref"), ("floor_t", "floor: raw socket, same request as pkg"))
    for k, label in rows:
        extra = ""
        if k in srv:
            extra = "  server_us.total p50 %5.1f us, round trip - server_us p50 %5.1f us" % (
                statistics.median(srv[k]), statistics.median([w - s for w, s in zip(lat[k], srv[k])]))
        print("  %-42s p50 %6.1f us  p90 %6.1f us%s" % (label, p50[k], pct(lat[k], 90), extra))
    o_ref = p50["ref"] - p50["floor"]
    o_pkg = p50["pkg"] - p50["floor_t"]
    o_pkg_strict = p50["pkg"] - p50["floor"]
    print("  overhead (p50 - its floor's p50): reference %.1f us, package %.1f us -> ratio %.2f (target <= 0.70)"
          % (o_ref, o_pkg, o_pkg / o_ref))
    print("  the same with the package charged for the trailer too (floor without timing): %.1f us -> ratio %.2f"
          % (o_pkg_strict, o_pkg_strict / o_ref))
    print("  total round trip p50 ratio package/reference: %.2f" % (p50["pkg"] / p50["ref"]))
    print("  client CPU per op (user+system): reference %.1f, package %.1f, floor %.1f, floor_t %.1f us;"
          " beyond the floor: ratio %.2f" % (cpu["ref"], cpu["pkg"], cpu["floor"], cpu["floor_t"],
                                             (cpu["pkg"] - cpu["floor_t"]) / (cpu["ref"] - cpu["floor"])))


class _StubSocket:
    """Answers every GEMM 4x8·8x16 at once with a result and a timing record: no kernel, no server."""

    RECORD = (b'{"op_id":1,"op":"gemm","timed":true,"cycles":16,"compute_cycles":16,"memory_cycles":1,'
              b'"memory_bytes":896,"flops":1024,"bound":"compute","sim_ns":16,'
              b'"server_us":{"decode":1,"compute":1,"timing":10,"total":20}}')
    ANSWER = struct.pack(">I", 256) + bytes(256) + struct.pack(">I", len(RECORD)) + RECORD

    def sendmsg(self, parts):
        return sum(memoryview(p).nbytes for p in parts)

    def recv_into(self, view, n=0):
        view[:len(self.ANSWER)] = self.ANSWER
        return len(self.ANSWER)

    def close(self):
        pass


def bench_python_work(ops=5000, repeat=15):
    """Device.gemm's own Python work per op: its connection's socket replaced by a stub
    (reaches into the package's private connection class), CPU time, best of ``repeat``."""
    from sstemu import client
    dev = sstemu.Device("127.0.0.1:1")
    dev._timing = True  # as after a successful INFO probe
    c = client._Conn.__new__(client._Conn)
    c.sock, c.buf = _StubSocket(), bytearray(client._Conn.BUFFER)
    c.view, c.start, c.end = memoryview(c.buf), 0, 0
    dev._pool.append(c)
    a, b = torch.randn(4, 8), torch.randn(8, 16)
    for _ in range(1000):
        dev.gemm(a, b)
    assert dev.last_timing["cycles"] == 16
    best = min(_cpu_per_op(dev.gemm, a, b, ops) for _ in range(repeat))
    print("Device.gemm's Python work, socket stubbed: %.2f us/op CPU (best of %d x %d ops)" % (best, repeat, ops))


def _cpu_per_op(fn, a, b, ops):
    t0 = time.process_time()
    for _ in range(ops):
        fn(a, b)
    return (time.process_time() - t0) / ops * 1e6


def bench_7b(addr, prompt, new):
    dev = sstemu.connect(addr)
    dev.info()
    t0, c0 = time.perf_counter(), time.process_time()
    m = models.build_llama("llama2-7b", device="meta")
    before = dev.round_trips
    with sstemu.offload(dev, timing_only=True) as mode, sstemu.profile(dev) as prof:
        models.generate(m, prompt, new)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    t = prof.total()
    print("LLaMA-2-7B, prompt %d + %d new, timing only on meta: wall %.2f s (client CPU %.2f s), %d device ops, "
          "%d local ops, %d round trips, simulated %.3f s" % (prompt, new, wall, cpu, t["ops"], sum(mode.local.values()),
                                                              dev.round_trips - before, t["sim_time_s"]))


def bench_tiny(addr, prompt, new):
    dev = sstemu.connect(addr)
    m = models.build_llama("tiny")
    models.generate(m, 4, 2)
    t0 = time.perf_counter()
    with sstemu.offload(dev), sstemu.profile(dev) as prof:
        models.generate(m, prompt, new)
    wall = time.perf_counter() - t0
    n = prof.total()["ops"]
    print("tiny LLaMA with numerics, prompt %d + %d new: %d device ops in %.2f s = %.0f ops/s" % (prompt, new, n, wall, n / wall))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", default=os.environ.get("SSTEMU_ADDR", sstemu.DEFAULT_ADDR))
    p.add_argument("--ops", type=int, default=20000, help="GEMMs per client for the latency comparison")
    p.add_argument("--block", type=int, default=100, help="ops per client before the next one takes over")
    p.add_argument("--skip-7b", action="store_true")
    args = p.parse_args()
    print("torch %s, python %s, server %s" % (torch.__version__, sys.version.split()[0], args.addr))
    bench_python_work()
    bench_overhead(args.addr, args.ops, args.block)
    if not args.skip_7b:
        bench_7b(args.addr, 2048, 128)
    bench_tiny(args.addr, 32, 32)


if __name__ == "__main__":
    main()
