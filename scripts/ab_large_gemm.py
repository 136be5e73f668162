#!/usr/bin/python3
"""Two DeviceGEMM servers side by side on large GEMMs (for instance a build before and after
a change), each against numpy's matmul, in one process, interleaved.

    /usr/bin/python3 scripts/ab_large_gemm.py BEFORE_HOST:PORT AFTER_HOST:PORT rounds MxNxK ...

Each round times numpy, the first server and the second (the order reversed every other
round); it prints, per shape, the medians and the medians of the per-round ratios
before/numpy, after/numpy and after/before (pairing cancels slow changes of load). The
client is scripts/e2e_vs_numpy.py's (one sendmsg of the whole frame, the answer read whole),
and each server's first answer is checked against numpy with the γₖ bound.
"""
import importlib.util
import pathlib
import statistics
import sys
import time

import numpy as np

_spec = importlib.util.spec_from_file_location("e2e_vs_numpy", pathlib.Path(__file__).with_name("e2e_vs_numpy.py"))
e2e = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(e2e)


def main():
    before, after, rounds, shapes = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    rng = np.random.default_rng(1)
    print("| shape M×N×K | numpy ms | before ms | after ms | before/numpy | after/numpy | after/before |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in shapes:
        m, n, k = (int(d) for d in s.split("x"))
        a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
        b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
        out = np.empty((m, n), np.float32)
        clients = {"before": e2e.Client(before, m, n, k, a, b), "after": e2e.Client(after, m, n, k, a, b)}
        np.matmul(a, b, out=out)
        bound = k * 2.0**-24 * float(np.max(np.abs(a) @ np.abs(b)))
        for name, c in clients.items():
            err = float(np.max(np.abs(c.gemm() - out)))
            if not err <= 2 * bound:
                raise SystemExit(f"{s}: {name} differs from numpy by {err:g} (> {2 * bound:g})")
        runs = {"numpy": lambda: np.matmul(a, b, out=out), "before": clients["before"].gemm, "after": clients["after"].gemm}
        t = {name: [] for name in runs}
        for r in range(rounds):
            for name in (list(runs) if r % 2 == 0 else list(reversed(runs))):
                t0 = time.perf_counter()
                runs[name]()
                t[name].append(time.perf_counter() - t0)
        med = {name: statistics.median(v) * 1e3 for name, v in t.items()}

        def paired(x, y):
            return statistics.median(p / q for p, q in zip(t[x], t[y]))

        print(f"| {s.replace('x', '×')} | {med['numpy']:.1f} | {med['before']:.1f} | {med['after']:.1f} | "
              f"{paired('before', 'numpy'):.2f} | {paired('after', 'numpy'):.2f} | {paired('after', 'before'):.2f} |", flush=True)
        for c in clients.values():
            c.sock.close()


if __name__ == "__main__":
    main()
