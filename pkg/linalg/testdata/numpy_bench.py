#!/usr/bin/python3
"""Median GFLOPS of numpy's float32 matmul on the shapes of BenchmarkSgemm (docs/gemm.md).

Run with the system interpreter so that numpy uses the same Debian OpenBLAS as the Go
build:  /usr/bin/python3 pkg/linalg/testdata/numpy_bench.py [repeats]
"""
import statistics
import sys
import time

import numpy as np

SHAPES = [(1024, 1024, 1024), (2048, 2048, 2048), (32, 4096, 4096),
          (128, 11008, 4096), (1, 4096, 4096)]
MIN_SECONDS = 0.5  # each sample runs the matmul for at least this long


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
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    rng = np.random.default_rng(1)
    print(f"numpy {np.__version__}")
    for m, n, k in SHAPES:
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        np.matmul(a, b, out=out)  # warm-up: thread pool start, page faults
        gflops = [2 * m * n * k / sample(a, b, out) / 1e9 for _ in range(repeats)]
        print(f"{m}x{n}x{k}\tmedian {statistics.median(gflops):.1f} GFLOPS\t"
              f"samples {' '.join(f'{g:.1f}' for g in gflops)}")


if __name__ == "__main__":
    main()
