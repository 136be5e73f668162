#!/usr/bin/python3
"""Go Sgemm against numpy matmul, interleaved so that both see the same machine load.

    go test -c -o /tmp/linalg.test ./pkg/linalg
    /usr/bin/python3 pkg/linalg/testdata/compare.py /tmp/linalg.test [rounds [MxNxK ...]]

It starts the test binary as a sample server (TestSgemmWorker) and numpy_bench.py
--worker, each keeping its operands per shape, and then, in every round and for every
shape, takes PAIRS pairs of SAMPLE_S-second samples, Go and numpy back to back (which one
goes first alternates). It prints a Markdown table of the medians over all pairs and the
median of the per-pair ratios (pairing adjacent samples cancels slow changes of machine
load; many short pairs without a process start between them keep the median steady).
Run it from the repository root, in the environment to be compared (OPENBLAS_CORETYPE and
friends are inherited by both). Operands of 4 MiB or more are on transparent huge pages on
both sides, as numpy allocates them; SSTEMU_BENCH_PAGES=4k puts both on 4 KiB pages
(numpy's advice turned off).
"""
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPES = ["1024x1024x1024", "2048x2048x2048", "32x4096x4096",
          "128x11008x4096", "1x4096x4096"]
PAGES = os.environ.get("SSTEMU_BENCH_PAGES") or "huge"  # the Go side reads it too
PAIRS = 3  # pairs of samples per shape and round
SAMPLE_S = 0.4  # seconds of back-to-back calls per sample


class Worker:
    """A sample server speaking "MxNxK seconds" → "gflops G" over its stdin and stdout."""

    def __init__(self, name, argv, env=None):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=HERE, env=env)

    def sample(self, shape):
        self.proc.stdin.write(f"{shape} {SAMPLE_S}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith("gflops "):
            self.proc.kill()
            sys.exit(f"{self.name} worker: {line!r} instead of a sample "
                     f"(exit status {self.proc.wait()})")
        return float(line.split()[1])

    def close(self):
        self.proc.stdin.close()
        self.proc.stdout.read()
        if self.proc.wait() != 0:
            sys.exit(f"{self.name} worker failed with exit status {self.proc.returncode}")


def main():
    binary = os.path.abspath(sys.argv[1])
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    shapes = sys.argv[3:] or SHAPES
    go = Worker("go", [binary, "-test.run", "^TestSgemmWorker$", "-test.count", "1"],
                env=dict(os.environ, SSTEMU_SGEMM_WORKER="1"))
    npy = Worker("numpy", [sys.executable, os.path.join(HERE, "numpy_bench.py"), "--worker",
                           "--pages", PAGES])
    samples = {s: {"go": [], "numpy": []} for s in shapes}
    for r in range(rounds):
        for s in shapes:
            for p in range(PAIRS):
                order = (go, npy) if (r * PAIRS + p) % 2 == 0 else (npy, go)
                got = {w.name: w.sample(s) for w in order}
                for name, g in got.items():
                    samples[s][name].append(g)
                print(f"round {r + 1} {s}: go {got['go']:.1f} numpy {got['numpy']:.1f}",
                      file=sys.stderr, flush=True)
    go.close()
    npy.close()
    print(f"operands of 4 MiB or more on {PAGES} pages on both sides; {rounds} rounds of "
          f"{PAIRS} pairs of {SAMPLE_S} s samples per shape", file=sys.stderr)
    print("| shape M×N×K | Go Sgemm GFLOPS | numpy GFLOPS | ratio of medians | median paired ratio |")
    print("|---|---:|---:|---:|---:|")
    for s in shapes:
        g, n = statistics.median(samples[s]["go"]), statistics.median(samples[s]["numpy"])
        paired = statistics.median(x / y for x, y in zip(samples[s]["go"], samples[s]["numpy"]))
        print(f"| {s.replace('x', '×')} | {g:.1f} | {n:.1f} | {g / n:.2f} | {paired:.2f} |")


if __name__ == "__main__":
    main()
