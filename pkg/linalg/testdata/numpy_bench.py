#!/usr/bin/python3
"""Median GFLOPS of numpy's float32 matmul on the shapes of BenchmarkSgemm (docs/gemm.md).

Run with the system interpreter, whose numpy uses the same Debian OpenBLAS as the Go build:

    /usr/bin/python3 pkg/linalg/testdata/numpy_bench.py [--repeats N] [MxNxK ...]

With no shapes it measures all five. Each sample runs the matmul repeatedly for at least
MIN_SECONDS; the line per shape gives the median and every sample. --pages 4k turns off
numpy's advice of transparent huge pages for arrays of 4 MiB or more (its default on Linux,
"huge"), as SSTEMU_BENCH_PAGES=4k does for the Go benchmarks.
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


def sample(a, b, out):
    """One timing sample: seconds per matmul, averaged over >= MIN_SECONDS of calls."""
    n, start = 0, time.perf_counter()
    while True:
        np.matmul(a, b, out=out)
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_SECONDS:
            return elapsed / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pages", choices=["huge", "4k"], default="huge")
    parser.add_argument("shapes", nargs="*", default=SHAPES)
    args = parser.parse_args()
    if hasattr(multiarray, "_set_madvise_hugepage"):
        multiarray._set_madvise_hugepage(args.pages == "huge")
    elif args.pages == "4k":
        sys.exit("this numpy has no _set_madvise_hugepage: it cannot turn its huge pages off")
    rng = np.random.default_rng(1)
    for shape in args.shapes:
        m, n, k = (int(d) for d in shape.split("x"))
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults
        gflops = [2 * m * n * k / sample(a, b, out) / 1e9 for _ in range(args.repeats)]
        print(f"{shape}\tmedian {statistics.median(gflops):.1f} GFLOPS\t"
              f"samples {' '.join(f'{g:.1f}' for g in gflops)}", flush=True)


if __name__ == "__main__":
    main()
