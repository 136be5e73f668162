"""Device: numerics of GEMM/MATMUL/CONV against float64 torch, the timing trailer, TIME, INFO,
bad input, and what happens when the server is missing, restarts or closes mid-op."""

import socket
import threading
import time

import numpy as np
import pytest
import torch

import sstemu
from conftest import assert_close

RECORD_KEYS = ("op_id", "timed", "untimed_reason", "device", "model", "preset", "clock_hz", "cycles",
               "compute_cycles", "memory_cycles", "memory_bytes", "flops", "bound", "utilization", "sim_ns",
               "gemms", "requests", "start_cycle", "end_cycle", "server_us")


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (4, 16, 8), (3, 5, 7), (17, 9, 1), (64, 33, 130)])
def test_gemm_numerics(dev, m, n, k):
    a, b = rand(m, k, seed=m), rand(k, n, seed=n)
    c = dev.gemm(a, b)
    assert_close(c, a.double() @ b.double(), k, "gemm")
    rec = dev.last_timing
    for key in RECORD_KEYS:
        assert key in rec, key
    assert rec["timed"] is True and rec["untimed_reason"] == ""
    assert rec["flops"] == 2 * m * n * k
    assert rec["gemms"] == 1
    assert rec["bound"] in ("compute", "memory")
    assert rec["end_cycle"] - rec["start_cycle"] == rec["cycles"]


def test_large_frames(dev):
    """Frames larger than the socket buffers (sent in pieces) and a 4 MiB result."""
    a, b = rand(1024, 1024, seed=5), rand(1024, 1024, seed=6)
    assert_close(dev.gemm(a, b), a.double() @ b.double(), 1024, "1024^3")


def test_gemm_accepts_numpy_and_strided(dev):
    a = rand(6, 8)
    b = rand(5, 8).t()  # a transposed view, 8x5
    assert_close(dev.gemm(a, b), a.double() @ b.double(), 8, "strided")
    na, nb = a.numpy(), b.contiguous().numpy()
    assert_close(dev.gemm(na, nb), a.double() @ b.double(), 8, "numpy")


@pytest.mark.parametrize("sa,sb", [
    ((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 5)), ((3, 4), (4, 5)),
    ((2, 1, 3, 4), (5, 4, 6)), ((10, 3, 4), (4,)), ((4,), (10, 4, 5)), ((2, 3, 4), (2, 4, 2)),
])
def test_matmul_numerics(dev, sa, sb):
    a, b = rand(*sa, seed=1), rand(*sb, seed=2)
    c = dev.matmul(a, b)
    assert_close(c, torch.matmul(a.double(), b.double()), sa[-1], "matmul %s x %s" % (sa, sb))
    assert dev.last_timing["timed"]


@pytest.mark.parametrize("xs,ws,kw", [
    ((1, 3, 8, 8), (4, 3, 3, 3), dict()),
    ((2, 4, 9, 7), (6, 2, 3, 2), dict(stride=2, padding=1, groups=2)),
    ((1, 2, 10, 10), (3, 2, 3, 3), dict(stride=(1, 2), padding=(2, 1), dilation=2)),
])
def test_conv2d_numerics(dev, xs, ws, kw):
    x, w = rand(*xs, seed=3), rand(*ws, seed=4)
    y = dev.conv2d(x, w, **kw)
    want = torch.nn.functional.conv2d(x.double(), w.double(), None, **kw)
    assert_close(y, want, ws[1] * ws[2] * ws[3], "conv2d")
    assert dev.last_timing["flops"] > 0


def test_record_cycles_equal_time_op(dev):
    """A GEMM's trailer and a TIME entry of the same shape report the same simulated cost."""
    dev.gemm(rand(32, 64), rand(64, 48))
    full = dev.last_timing
    (timed,) = dev.time([{"op": "gemm", "M": 32, "N": 48, "K": 64}])
    for k in ("cycles", "compute_cycles", "memory_cycles", "memory_bytes", "flops", "bound", "gemms"):
        assert timed[k] == full[k], k
    dev.conv2d(rand(1, 3, 16, 16), rand(8, 3, 3, 3), padding=1)
    full = dev.last_timing
    (timed,) = dev.time([{"op": "conv", "input_shape": [1, 3, 16, 16], "weight_shape": [8, 3, 3, 3],
                          "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1}])
    assert timed["cycles"] == full["cycles"]


def test_time_many_entries_and_errors(dev):
    before = dev.round_trips
    ops = [{"op": "gemm", "M": 1 + i % 7, "N": 16, "K": 8} for i in range(5000)]
    ops.insert(10, {"op": "matmul", "A_shape": [3, 4], "B_shape": [5, 6]})  # impossible
    recs = dev.time(ops)
    assert len(recs) == len(ops)
    assert dev.round_trips - before >= 2  # more than one frame
    assert "error" in recs[10] and recs[10]["timed"] is False
    assert all(r["timed"] for i, r in enumerate(recs) if i != 10)
    assert recs[0]["flops"] == 2 * 1 * 16 * 8


def test_time_takes_numpy_ints_generators_and_strings_get_error_records(dev):
    recs = dev.time({"op": "gemm", "M": np.int64(m), "N": 16, "K": 8} for m in (4, 5))
    assert [r["flops"] for r in recs] == [2 * 4 * 16 * 8, 2 * 5 * 16 * 8]
    (rec,) = dev.time([{"op": "gemm", "M": "4", "N": 16, "K": 8}])  # the server names the field
    assert rec["timed"] is False and "M" in rec["error"]


def test_time_huge_shapes(dev):
    """No tensor-size limit applies to TIME: LLaMA-2-70B's decoder-layer GEMMs at a 4096 prompt."""
    shapes = [(4096, 8192, 8192), (4096, 1024, 8192), (4096, 28672, 8192), (4096, 8192, 28672)]
    recs = dev.time([{"op": "gemm", "M": m, "N": n, "K": k} for m, n, k in shapes])
    assert [r["flops"] for r in recs] == [2 * m * n * k for m, n, k in shapes]
    assert all(r["timed"] for r in recs)


def test_info(dev):
    info = dev.info()
    assert isinstance(info, dict) and info
    assert info.get("devices", 1) >= 1


@pytest.mark.parametrize("call,exc,words", [
    (lambda d: d.gemm(torch.randn(2, 3, dtype=torch.float64), torch.randn(3, 2)), TypeError, "float32"),
    (lambda d: d.gemm(torch.randn(2, 3), torch.randn(4, 2)), ValueError, "inner"),
    (lambda d: d.gemm(torch.randn(2, 3, 4), torch.randn(4, 2)), ValueError, "2-D"),
    (lambda d: d.gemm([[1.0]], [[2.0]]), TypeError, "list"),
    (lambda d: d.gemm(torch.empty(2, 3, device="meta"), torch.empty(3, 2, device="meta")), ValueError, "meta"),
    (lambda d: d.gemm(torch.randn(0, 3), torch.randn(3, 2)), ValueError, "≥ 1"),
    (lambda d: d.matmul(torch.randn(2, 3, 4), torch.randn(3, 4, 5)), ValueError, "broadcast"),
    (lambda d: d.conv2d(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 5, 5)), ValueError, "kernel"),
    (lambda d: d.conv2d(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3), groups=2), ValueError, "groups"),
    (lambda d: d.conv2d(torch.randn(1, 3, 4, 4), torch.randn(2, 3, 3, 3), stride=0), ValueError, "stride"),
    (lambda d: d.time({"op": "gemm", "M": 1, "N": 1, "K": 1}), TypeError, "list"),
    (lambda d: d.time([{"op": "fft"}]), ValueError, "fft"),
    (lambda d: d.time(5), TypeError, "list of op dicts"),
    (lambda d: d.time([{"op": "gemm", "M": 4, "N": 4, "K": 4}, 7]), TypeError, "entry 1"),
    (lambda d: d.time([{"op": "gemm", "M": float("nan"), "N": 4, "K": 4}]), ValueError, "entry 0 .gemm.*float values"),
    (lambda d: d.time([{"op": "gemm", "M": object(), "N": 4, "K": 4}]), TypeError, "entry 0 .gemm.*object"),
])
def test_bad_input(dev, call, exc, words):
    with pytest.raises(exc, match=words):
        call(dev)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_says_what_to_run():
    addr = "127.0.0.1:%d" % free_port()
    t0 = time.monotonic()
    with pytest.raises(sstemu.DeviceError, match="sstemu serve"):
        sstemu.connect(addr, timeout=5)
    assert time.monotonic() - t0 < 5


def test_fallback_cpu_is_counted():
    addr = "127.0.0.1:%d" % free_port()
    d = sstemu.connect(addr, timeout=5, fallback="cpu")
    a, b = rand(3, 4), rand(4, 2)
    with pytest.warns(RuntimeWarning, match="CPU"), sstemu.profile(d) as prof:
        c = d.gemm(a, b)
    assert_close(c, a.double() @ b.double(), 4, "fallback")
    assert d.fallback_ops == 1
    t = prof.total()
    assert t["fallback_ops"] == 1 and t["untimed_ops"] == 1


def test_reconnects_after_server_restart(own_server):
    s = own_server()
    d = sstemu.connect(s.addr, timeout=10)
    a, b = rand(4, 8), rand(8, 16)
    d.gemm(a, b)
    port = s.addr.rsplit(":", 1)[1]
    s.stop()
    s2 = own_server(listen="127.0.0.1:" + port)
    assert_close(d.gemm(a, b), a.double() @ b.double(), 8, "after restart")
    assert d.connections == 2
    s2.stop()
    with pytest.raises(sstemu.DeviceError, match="GEMM"):
        d.gemm(a, b)


def test_restart_with_several_idle_connections_retries_on_a_fresh_one(own_server):
    """After a restart every idle connection is dead: the one retry must not take another."""
    s = own_server()
    d = sstemu.connect(s.addr, timeout=10)
    conns = [d._take("test") for _ in range(3)]  # as three threads would leave them
    d._pool.extend(conns)
    port = s.addr.rsplit(":", 1)[1]
    s.stop()
    own_server(listen="127.0.0.1:" + port)
    a, b = rand(4, 8), rand(8, 16)
    assert_close(d.gemm(a, b), a.double() @ b.double(), 8, "after restart")
    assert d.connections == 4


def test_server_closing_mid_op_raises_naming_the_op(own_server):
    s = own_server("--max-op-bytes", "4096")
    d = sstemu.connect(s.addr, timeout=10)
    d.gemm(rand(4, 8), rand(8, 16))  # fits
    with pytest.raises(sstemu.DeviceError, match=r"GEMM 64x64x64.*closed the connection"):
        d.gemm(rand(64, 64), rand(64, 64))
    assert '"kind":"too_large"' in s.wait_log('"kind":"too_large"')  # the server says why it closed
    assert_close(d.gemm(rand(2, 2), rand(2, 2)), rand(2, 2).double() @ rand(2, 2).double(), 2, "after")


def test_threads_share_a_device(dev):
    errors = []

    def work(seed):
        try:
            for i in range(30):
                m, n, k = 1 + (seed + i) % 9, 1 + i % 5, 1 + seed % 7
                a, b = rand(m, k, seed=seed * 100 + i), rand(k, n, seed=seed * 100 + i + 1)
                assert_close(dev.gemm(a, b), a.double() @ b.double(), k, "thread")
                assert dev.last_timing["flops"] == 2 * m * n * k
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            errors.append(repr(e))

    ts = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert errors == []


def test_parse_addr():
    assert sstemu.client.parse_addr("127.0.0.1:9999") == ("127.0.0.1", 9999)
    assert sstemu.client.parse_addr("[::1]:7") == ("::1", 7)
    assert sstemu.client.parse_addr(":7000") == ("127.0.0.1", 7000)
    for bad in ("localhost", "h:0", "h:x", "h:70000"):
        with pytest.raises(ValueError):
            sstemu.client.parse_addr(bad)


class ScriptedServer:
    """A TCP server that answers INFO properly (unless told not to) and then answers one
    request per connection with fixed bytes and closes it."""

    INFO = b'{"protocol_version":1}'

    def __init__(self, reply, answer_info=True):
        self.reply, self.answer_info = reply, answer_info
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                while True:
                    req = c.recv(1 << 20)
                    if self.answer_info and len(req) > 8 and req[8] == 5:
                        c.sendall(u32(len(self.INFO)) + self.INFO)
                        continue
                    if self.reply is None:  # silent: hold the connection until the client closes it
                        while c.recv(1 << 16):
                            pass
                        break
                    c.sendall(self.reply)
                    break

    def close(self):
        self.sock.close()


def u32(n):
    return n.to_bytes(4, "big")


RESULT_2X2 = u32(16) + np.arange(4, dtype="<f4").tobytes()


@pytest.mark.parametrize("reply,call,match", [
    (u32(12) + b"\0" * 12, "gemm", "result length"),
    (RESULT_2X2 + u32(1 << 30), "gemm", "timing record length"),
    (RESULT_2X2 + u32(3) + b"not", "last_timing", "not valid UTF-8 JSON"),
    (RESULT_2X2 + u32(2) + b"[]", "last_timing", "want an object"),
    (u32(5) + b"{}", "info", "closed the connection"),
    (u32(7) + b"[1,2,3]", "info", "want an object"),
    (u32(1 << 30), "info", "length"),
    (u32(13) + b'{"results":1}', "time", "results"),
    (u32(16) + b'{"results":[{}]}', "time", "1 results for 2 entries"),
])
def test_hostile_answers_raise_protocol_errors(reply, call, match):
    srv = ScriptedServer(reply, answer_info=call != "info")
    try:
        d = sstemu.Device(srv.addr, timeout=5)  # INFO is asked before the first op
        with pytest.raises(sstemu.DeviceError, match=match):
            if call == "gemm":
                d.gemm(rand(2, 2), rand(2, 2))
            elif call == "last_timing":
                assert_close(d.gemm(torch.eye(2), torch.arange(4.0).reshape(2, 2)), torch.arange(4.0).reshape(2, 2).double(), 2)
                d.last_timing
            elif call == "info":
                d.info()
            else:
                d.time([{"op": "gemm", "M": 1, "N": 1, "K": 1}] * 2)
    finally:
        srv.close()


def test_truncated_answer_raises_after_one_retry():
    srv = ScriptedServer(u32(16) + b"\0" * 6)
    try:
        d = sstemu.connect(srv.addr, timeout=5)
        with pytest.raises(sstemu.DeviceError, match="GEMM 2x2x2.*closed the connection.*also after one reconnect"):
            d.gemm(rand(2, 2), rand(2, 2))
        assert d.connections == 2  # the one connect() made (used by the op), and the one retry
    finally:
        srv.close()


def test_random_answers_never_crash():
    """Random bytes as answers: every call returns a well-formed value or raises DeviceError."""
    rng = np.random.default_rng(7)
    for i in range(60):
        n = int(rng.integers(0, 64))
        body = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        if i % 3 == 0:
            body = u32(n) + body  # a plausible length prefix, garbage after it
        srv = ScriptedServer(body)
        try:
            d = sstemu.Device(srv.addr, timeout=5)
            for call in (lambda: d.info(), lambda: d.gemm(rand(1, 1), rand(1, 1)),
                         lambda: d.time([{"op": "gemm", "M": 1, "N": 1, "K": 1}])):
                try:
                    out = call()
                except sstemu.DeviceError:
                    continue
                assert isinstance(out, (dict, list, torch.Tensor))
        finally:
            srv.close()


class LegacyServer(ScriptedServer):
    """A server of the reference protocol only: GEMM without any trailer; closes on other ops."""

    def __init__(self):
        super().__init__(b"")

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    @staticmethod
    def _read(c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _conn(self, c):
        import json
        with c:
            try:
                while True:
                    head = self._read(c, 9)
                    meta = json.loads(self._read(c, int.from_bytes(head[4:8], "big")))
                    if head[8] != 1:
                        return
                    ts = [np.frombuffer(self._read(c, int.from_bytes(self._read(c, 4), "big")), dtype="<f4") for _ in range(2)]
                    m, n, k = meta["M"], meta["N"], meta["K"]
                    out = (ts[0].reshape(m, k).astype(np.float64) @ ts[1].reshape(k, n)).astype("<f4").tobytes()
                    c.sendall(u32(len(out)) + out)
            except (EOFError, OSError):
                return


def test_server_without_timing_protocol_still_computes():
    srv = LegacyServer()
    try:
        with pytest.warns(RuntimeWarning, match="predates the timing protocol"):
            d = sstemu.connect(srv.addr, timeout=5)
        a, b = rand(3, 4), rand(4, 5)
        assert_close(d.gemm(a, b), a.double() @ b.double(), 4, "legacy")
        assert d.last_timing["timed"] is False and d.last_timing["untimed_reason"] == "server_without_timing"
        with pytest.raises(sstemu.DeviceError, match="predates the timing protocol"):
            d.time([{"op": "gemm", "M": 1, "N": 1, "K": 1}])
    finally:
        srv.close()


def test_silent_server_times_out_never_hangs():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)  # accepts into the backlog, never answers
    try:
        addr = "127.0.0.1:%d" % srv.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(sstemu.DeviceError, match="within 0.5 s"):
            sstemu.connect(addr, timeout=0.5)
        assert time.monotonic() - t0 < 5
    finally:
        srv.close()
    quiet = ScriptedServer(None)  # answers INFO, then never answers the op
    try:
        d = sstemu.connect(quiet.addr, timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(sstemu.DeviceError, match=r"GEMM 2x2x2.*within 0.5 s"):
            d.gemm(rand(2, 2), rand(2, 2))
        assert time.monotonic() - t0 < 5
    finally:
        d.close()
        quiet.close()


def test_time_frames_split_by_summed_work(dev):
    """Entries whose summed FLOPs pass the server's per-frame bound go in more frames, all timed."""
    assert dev.info()["limits"]["max_time_flops"] == 1 << 60  # the documented bound this test is sized for
    k = 1 << 20
    per = 2 * k * k * k  # 2^61 FLOPs: more than one frame's bound (2^60) by itself
    assert sstemu.client.entry_cost({"op": "gemm", "M": k, "N": k, "K": k}) == (1, per)
    assert sstemu.client.entry_cost({"op": "matmul", "A_shape": [3, 1, 4, 5], "B_shape": [2, 5, 6]}) == (6, 2 * 6 * 4 * 5 * 6)
    assert sstemu.client.entry_cost({"op": "conv", "input_shape": [2, 4, 8, 8], "weight_shape": [6, 2, 3, 3],
                                     "padding": 1, "groups": 2}) == (4, 2 * 2 * 6 * 8 * 8 * 2 * 3 * 3)
    assert sstemu.client.entry_cost({"op": "gemm"}) == (0, 0)
    small = 1 << 19  # 2^58 FLOPs each: four fit a frame's bound, five do not
    before = dev.round_trips
    recs = dev.time([{"op": "gemm", "M": small, "N": small, "K": small}] * 8)
    assert dev.round_trips - before == 2
    assert all(r["timed"] and "error" not in r for r in recs), [r.get("error") for r in recs]
