#!/usr/bin/env python3
"""Benchmarks of the sstemu Python package against a running `sstemu serve` (run by hand).

1. per-op latency of a 4x8·8x16 GEMM: this package's Device.gemm (with the timing trailer)
   and the reference-style client of e2e/pyclient (five sendalls, Nagle on, no timing),
   interleaved in rounds against the same server; p50 and p90 of each, and their ratio;
2. LLaMA-2-7B, prompt 2048 + 128 new tokens, timing only on the meta device: wall time,
   device ops and round trips;
3. the tiny LLaMA with numerics through the device: device ops per second.

Usage: python3 python/bench/bench_client.py [--addr HOST:PORT] [--ops N] [--rounds N] [--skip-7b]
"""

import argparse
import importlib.util
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "python"))

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


def bench_overhead(addr, ops, rounds):
    host, port = addr.rsplit(":", 1)
    ref = reference_client()(host, int(port))
    dev = sstemu.connect(addr)
    a, b = torch.randn(4, 8), torch.randn(8, 16)
    want = a @ b
    for _ in range(200):  # warm up both connections
        ref.gemm(a, b)
        dev.gemm(a, b)
    assert torch.allclose(ref.gemm(a, b), want, atol=1e-5) and torch.allclose(dev.gemm(a, b), want, atol=1e-5)
    t_ref, t_pkg = [], []
    cpu = {"ref": 0.0, "pkg": 0.0}
    clock = time.perf_counter_ns
    for _ in range(rounds):  # interleaved, so both see the same machine load
        for name, fn, out in (("ref", ref.gemm, t_ref), ("pkg", dev.gemm, t_pkg)):
            c0 = time.process_time()
            for _ in range(ops // rounds):
                t0 = clock()
                fn(a, b)
                out.append((clock() - t0) / 1000.0)
            cpu[name] += time.process_time() - c0
    ref.close()
    dev.close()
    p50r, p50p = statistics.median(t_ref), statistics.median(t_pkg)
    print("per-op latency, GEMM 4x8·8x16, %d ops each in %d interleaved rounds:" % (len(t_ref), rounds))
    cr, cp = cpu["ref"] / len(t_ref) * 1e6, cpu["pkg"] / len(t_pkg) * 1e6
    print("  reference client (e2e/pyclient)  p50 %7.1f us  p90 %7.1f us  client CPU %5.1f us/op" % (p50r, pct(t_ref, 90), cr))
    print("  sstemu.Device.gemm (+timing)     p50 %7.1f us  p90 %7.1f us  client CPU %5.1f us/op" % (p50p, pct(t_pkg, 90), cp))
    print("  ratio package/reference: p50 %.2f, client CPU %.2f" % (p50p / p50r, cp / cr))


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
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--skip-7b", action="store_true")
    args = p.parse_args()
    print("torch %s, python %s, server %s" % (torch.__version__, sys.version.split()[0], args.addr))
    bench_overhead(args.addr, args.ops, args.rounds)
    if not args.skip_7b:
        bench_7b(args.addr, 2048, 128)
    bench_tiny(args.addr, 32, 32)


if __name__ == "__main__":
    main()
