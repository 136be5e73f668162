#!/usr/bin/python3
"""What a server op costs the client's own work that follows it: after each GEMM through a
DeviceGEMM server, the client times one numpy matmul of the same shape on its own cores
(as a PyTorch model computes its next layer locally), and prints the medians of both and
the mean time per pair.

    /usr/bin/python3 scripts/client_work_after_op.py HOST:PORT [rounds [MxNxK [pause_s]]]

Each round: one op through the server (one connection, the frame in one sendall, the
answer read whole), then at once the timed numpy matmul, then a pause (default 0.15 s) so
that every round starts from an idle server; with a pause of 0 the rounds are a model
alternating device and local layers back to back. A server whose BLAS worker threads keep
spinning after its op takes cores from the client's matmul (docs/gemm.md, "Idle OpenBLAS
threads"). Run it with OPENBLAS_THREAD_TIMEOUT=4 in the client's environment so that
numpy's own idle workers do not disturb the server op that follows them.
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


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    m, n, k = (int(d) for d in (sys.argv[3] if len(sys.argv) > 3 else "1024x1024x1024").split("x"))
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.15
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    header = json.dumps({"op_id": 1, "M": m, "N": n, "K": k, "A_shape": [m, k],
                         "B_shape": [k, n], "dtype": "float32"}).encode()
    frame = b"".join([struct.pack(">IIB", MAGIC, len(header), OP_GEMM), header,
                      struct.pack(">I", a.nbytes), a.tobytes(), struct.pack(">I", b.nbytes), b.tobytes()])
    answer = bytearray(4 + 4 * m * n)
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    np.matmul(a, b, out=out)  # warm-up: numpy's thread pool and pages
    after, ops = [], []
    began = time.perf_counter()
    for _ in range(rounds):
        t = time.perf_counter()
        sock.sendall(frame)
        view, got = memoryview(answer), 0
        while got < len(answer):
            r = sock.recv_into(view[got:])
            if r == 0:
                raise ConnectionError("server closed the connection")
            got += r
        (size,) = struct.unpack(">I", answer[:4])
        if size != 4 * m * n:
            raise ValueError(f"result of {size} bytes, want {4 * m * n}")
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
