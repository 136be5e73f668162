#!/usr/bin/python3
"""What a server op costs the client's own work that follows it: after each GEMM through a
DeviceGEMM server, the client times one numpy matmul of the same shape on its own cores
(as a PyTorch model computes its next layer locally), and prints the medians of both and
the mean time per pair.

    /usr/bin/python3 scripts/client_work_after_op.py HOST:PORT [rounds [MxNxK [pause_s]]]

Each round: one op through the server (scripts/e2e_vs_numpy.py's client: one connection,
TCP_NODELAY, the frame in one sendmsg from the arrays' memory, the answer read whole),
then at once the timed numpy matmul, then a pause (default 0.15 s) so that every round
starts from an idle server; with a pause of 0 the rounds are a model alternating device
and local layers back to back. A server whose BLAS worker threads keep spinning after its
op takes cores from the client's matmul (docs/gemm.md, "Idle OpenBLAS threads"). Run it
with OPENBLAS_THREAD_TIMEOUT=4 in the client's environment so that numpy's own idle
workers do not disturb the server op that follows them.
"""
import statistics
import sys
import time

import numpy as np

from e2e_vs_numpy import Client  # the same client: one connection, one sendmsg per frame


def main():
    addr = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    m, n, k = (int(d) for d in (sys.argv[3] if len(sys.argv) > 3 else "1024x1024x1024").split("x"))
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.15
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    client = Client(addr, m, n, k, a, b)
    np.matmul(a, b, out=out)  # warm-up: numpy's thread pool and pages
    after, ops = [], []
    began = time.perf_counter()
    for _ in range(rounds):
        t = time.perf_counter()
        client.gemm()
        ops.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        after.append((time.perf_counter() - t) * 1e3)
        time.sleep(pause)
    pair = ((time.perf_counter() - began) / rounds - pause) * 1e3
    print(f"{m}x{n}x{k}: numpy matmul right after a server op: median {statistics.median(after):.1f} ms "
          f"(min {min(after):.1f}, max {max(after):.1f}, {rounds} rounds); server op median "
          f"{statistics.median(ops):.1f} ms; op and matmul {pair:.1f} ms a pair")


if __name__ == "__main__":
    main()
