#!/usr/bin/env python3
"""A PyTorch client that talks to a DeviceGEMM server exactly as the reference client does.

Like the reference `DeviceGEMM` operator it keeps ONE TCP connection per process (here: per
DeviceConnection), leaves Nagle's algorithm on, and sends each op in five `sendall` calls
(header + JSON, len(A), A, len(B), B). Unlike the reference it never falls back to the CPU on
an error: a failure raises, so a test can tell a correct answer from a silent fallback.

Usage: device_gemm_client.py HOST:PORT [--ops N] [--conns N] [--seed S] [--big]
Prints one summary line and exits non-zero on any mismatch.
"""
import argparse
import json
import socket
import struct
import sys
import threading
import time

import numpy as np
import torch

MAGIC = 0xDEADBEEF
OP_GEMM = 0x01


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


class DeviceConnection:
    """One persistent connection, one op at a time, as the reference client."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))  # no TCP_NODELAY, as the reference
        self.next_id = 0

    def gemm(self, a, b):
        a = np.ascontiguousarray(a.detach().cpu().numpy(), dtype=np.float32)
        b = np.ascontiguousarray(b.detach().cpu().numpy(), dtype=np.float32)
        m, k = a.shape
        k2, n = b.shape
        assert k == k2
        self.next_id += 1
        header = json.dumps({"op_id": self.next_id, "M": m, "N": n, "K": k,
                             "A_shape": [m, k], "B_shape": [k, n], "dtype": "float32"}).encode()
        ab, bb = a.tobytes(), b.tobytes()
        self.sock.sendall(struct.pack(">IIB", MAGIC, len(header), OP_GEMM) + header)
        self.sock.sendall(struct.pack(">I", len(ab)))
        self.sock.sendall(ab)
        self.sock.sendall(struct.pack(">I", len(bb)))
        self.sock.sendall(bb)
        (size,) = struct.unpack(">I", recv_exact(self.sock, 4))
        if size != 4 * m * n:
            raise ValueError("result of %d bytes, want %d" % (size, 4 * m * n))
        c = np.frombuffer(recv_exact(self.sock, size), dtype=np.float32).reshape(m, n)
        return torch.from_numpy(c.copy())

    def close(self):
        self.sock.close()


_local = threading.local()


def connection():
    return _local.conn


class DeviceGEMM(torch.autograd.Function):
    """C = A @ B computed by the device server, with the reference operator's backward."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return connection().gemm(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        return DeviceGEMM.apply(grad, b.t().contiguous()), DeviceGEMM.apply(a.t().contiguous(), grad)


class DeviceLinear(torch.nn.Module):
    """nn.Linear whose matrix product runs on the device: DeviceGEMM(x, weight.t())."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(out_features, in_features) / in_features ** 0.5)
        self.bias = torch.nn.Parameter(torch.zeros(out_features))

    def forward(self, x):
        return DeviceGEMM.apply(x, self.weight.t().contiguous()) + self.bias


def check(name, got, want, k):
    # float32 results of K-term sums: allow 1e-5·K relative on top of a small absolute term.
    tol = 1e-5 * max(k, 1)
    if not torch.allclose(got, want, rtol=tol, atol=tol):
        raise AssertionError("%s: max |diff| %g" % (name, (got - want).abs().max().item()))


def worker(host, port, ops, seed, big, counts, errors):
    try:
        _local.conn = DeviceConnection(host, port)
        g = torch.Generator().manual_seed(seed)
        shapes = [(1, 1, 1), (4, 16, 8), (3, 5, 7), (1, 64, 33), (17, 9, 1), (32, 32, 32)]
        if big:
            shapes.append((1024, 1024, 1024))
        for i in range(ops):
            m, n, k = shapes[i % len(shapes)]
            a = torch.randn(m, k, generator=g)
            b = torch.randn(k, n, generator=g)
            c = DeviceGEMM.apply(a, b)
            check("GEMM %dx%dx%d" % (m, n, k), c, a.double().matmul(b.double()).float(), k)
            counts[0] += 1
        # DeviceLinear: forward and backward against torch's own Linear on the same weights.
        lin = DeviceLinear(24, 10)
        ref = torch.nn.Linear(24, 10)
        with torch.no_grad():
            ref.weight.copy_(lin.weight)
            ref.bias.copy_(lin.bias)
        x = torch.randn(6, 24, generator=g, requires_grad=True)
        xr = x.detach().clone().requires_grad_(True)
        y = lin(x)
        yr = ref(xr)
        check("DeviceLinear forward", y, yr.detach(), 24)
        y.sum().backward()
        yr.sum().backward()
        check("DeviceLinear grad x", x.grad, xr.grad, 10)
        check("DeviceLinear grad W", lin.weight.grad, ref.weight.grad, 6)
        counts[0] += 3
        _local.conn.close()
    except Exception as e:  # noqa: BLE001 - report every failure to the main thread
        errors.append("%s: %s" % (type(e).__name__, e))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("--ops", type=int, default=50)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--big", action="store_true", help="include a 1024³ GEMM")
    args = p.parse_args()
    host, port = args.addr.rsplit(":", 1)
    errors, counts, threads = [], [], []
    start = time.monotonic()
    for i in range(args.conns):
        counts.append([0])
        t = threading.Thread(target=worker, args=(host, int(port), args.ops, args.seed + i, args.big, counts[i], errors))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    total = sum(c[0] for c in counts)
    print("torch %s: %d conns, %d ops checked in %.3f s, %d errors" % (torch.__version__, args.conns, total, elapsed, len(errors)))
    for e in errors:
        print("error:", e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
