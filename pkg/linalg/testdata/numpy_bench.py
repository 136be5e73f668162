#!/usr/bin/python3
"""Median GFLOPS of numpy's float32 matmul on the shapes of BenchmarkSgemm (docs/gemm.md).

Run with the system interpreter, whose numpy uses the same Debian OpenBLAS as the Go build:

    /usr/bin/python3 pkg/linalg/testdata/numpy_bench.py [--repeats N] [MxNxK ...]

With no shapes it measures all five. Each sample runs the matmul repeatedly for at least
MIN_SECONDS; the line per shape gives the median and every sample. --pages 4k turns off
numpy's advice of transparent huge pages for arrays of 4 MiB or more (its default on Linux,
"huge"), as SSTEMU_BENCH_PAGES=4k does for the Go benchmarks.

--worker serves compare.py instead: each stdin line "MxNxK seconds" is answered by
"gflops G", one sample of that length on operands kept per shape (as the Go side,
TestSgemmWorker).
"""
import argparse
import statistics
import sys
import time

import numpy as np
from numpy.core import multiarray

SHAPES = ["1024x1024x1024", "2048x2048x2048", "32x4096x4096",
          "128x11008x4096", "1x4096x4096"]
MIN_SECONDS = 1.0  # each sample runs the matmul for at least this long


def operands(shape):
    """A, B and the output of shape "MxNxK", from a fixed seed, after one warm-up matmul
    (thread pool start, page faults)."""
    m, n, k = (int(d) for d in shape.split("x"))
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    np.matmul(a, b, out=out)
    return a, b, out


def gflops(a, b, out, seconds):
    """One timing sample: GFLOPS of matmuls run back to back for at least seconds."""
    calls, start = 0, time.perf_counter()
    while True:
        np.matmul(a, b, out=out)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return 2 * a.shape[0] * b.shape[1] * a.shape[1] * calls / elapsed / 1e9


def serve():
    """The --worker loop: one sample per request line, until stdin ends."""
    kept = {}
    for line in sys.stdin:
        try:
            shape, seconds = line.split()
            dims, seconds = [int(d) for d in shape.split("x")], float(seconds)
            if len(dims) != 3 or min(dims) <= 0 or not seconds > 0:
                raise ValueError
        except ValueError:
            sys.exit(f"request {line!r}: want \"MxNxK seconds\", positive")
        if shape not in kept:
            kept[shape] = operands(shape)
        print(f"gflops {gflops(*kept[shape], float(seconds)):.3f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pages", choices=["huge", "4k"], default="huge")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("shapes", nargs="*", default=SHAPES)
    args = parser.parse_args()
    if hasattr(multiarray, "_set_madvise_hugepage"):
        multiarray._set_madvise_hugepage(args.pages == "huge")
    elif args.pages == "4k":
        sys.exit("this numpy has no _set_madvise_hugepage: it cannot turn its huge pages off")
    if args.worker:
        serve()
        return
    for shape in args.shapes:
        ops = operands(shape)
        samples = [gflops(*ops, MIN_SECONDS) for _ in range(args.repeats)]
        print(f"{shape}\tmedian {statistics.median(samples):.1f} GFLOPS\t"
              f"samples {' '.join(f'{g:.1f}' for g in samples)}", flush=True)


if __name__ == "__main__":
    main()
