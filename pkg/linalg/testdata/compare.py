#!/usr/bin/python3
"""Go Sgemm against numpy matmul, interleaved so that both see the same machine load.

    go test -c -o /tmp/linalg.test ./pkg/linalg
    /usr/bin/python3 pkg/linalg/testdata/compare.py /tmp/linalg.test [rounds [MxNxK ...]]

For every round and shape it runs one BenchmarkSgemm sample and one numpy sample
(numpy_bench.py), about 1 s each, back to back, then prints a Markdown table of the medians
over the rounds and the median of the per-round ratios (pairing the two samples of a round
cancels slow changes of machine load). Run it from the repository root, in the
environment to be compared (OPENBLAS_CORETYPE and friends are inherited by both).
Operands of 4 MiB or more are on transparent huge pages on both sides, as numpy allocates
them; SSTEMU_BENCH_PAGES=4k puts both on 4 KiB pages (numpy's advice turned off).
"""
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
PAGES = os.environ.get("SSTEMU_BENCH_PAGES") or "huge"  # the Go side reads it too
SHAPES = ["1024x1024x1024", "2048x2048x2048", "32x4096x4096",
          "128x11008x4096", "1x4096x4096"]


def go_sample(binary, shape):
    out = subprocess.run(
        [binary, "-test.run", "^$", "-test.bench", f"^BenchmarkSgemm$/^{shape}$",
         "-test.benchtime", "1s"],
        check=True, capture_output=True, text=True, cwd=HERE).stdout
    return float(re.search(r"([\d.]+) GFLOPS", out).group(1))


def numpy_sample(shape):
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, "numpy_bench.py"), "--repeats", "1",
         "--pages", PAGES, shape],
        check=True, capture_output=True, text=True).stdout
    return float(re.search(r"median ([\d.]+) GFLOPS", out).group(1))


def main():
    binary = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    shapes = sys.argv[3:] or SHAPES
    go = {s: [] for s in shapes}
    npy = {s: [] for s in shapes}
    for r in range(rounds):
        for s in shapes:
            go[s].append(go_sample(binary, s))
            npy[s].append(numpy_sample(s))
            print(f"round {r + 1} {s}: go {go[s][-1]:.1f} numpy {npy[s][-1]:.1f}",
                  file=sys.stderr, flush=True)
    print(f"operands of 4 MiB or more on {PAGES} pages on both sides", file=sys.stderr)
    print("| shape M×N×K | Go Sgemm GFLOPS | numpy GFLOPS | ratio of medians | median paired ratio |")
    print("|---|---:|---:|---:|---:|")
    for s in shapes:
        g, n = statistics.median(go[s]), statistics.median(npy[s])
        paired = statistics.median(x / y for x, y in zip(go[s], npy[s]))
        print(f"| {s.replace('x', '×')} | {g:.1f} | {n:.1f} | {g / n:.2f} | {paired:.2f} |")


if __name__ == "__main__":
    main()
