"""The client of one sstemu device server: :func:`connect` and :class:`Device`.

A Device keeps a small pool of TCP connections (one per thread that uses it at the same
time), sends each op as one write with Nagle's algorithm off, reads the result straight into
the output tensor's memory, and always asks for the timing record (``"timing": true``), which
becomes :attr:`Device.last_timing` and, inside :func:`sstemu.profile`, a profile record.

Failures are never silent: a server that cannot be reached raises :class:`DeviceError` saying
what to run; a connection that dies mid-op is retried once on a fresh connection (the server
may have restarted), then raises :class:`DeviceError` naming the op. Only
``connect(fallback="cpu")`` computes on the CPU instead, and every such op is counted.
"""

import itertools
import json
import math
import os
import socket
import struct
import sys
import threading
import time
import warnings

import numpy as np
import torch

from . import context, wire
from .wire import DeviceError, ProtocolError, ServerClosed

#: The address used when neither ``addr`` nor ``$SSTEMU_ADDR`` is given (the server's default).
DEFAULT_ADDR = "127.0.0.1:9999"
#: How many dims MATMUL accepts per operand (docs/wire.md).
MAX_MATMUL_DIMS = 8
#: The largest dimension the wire accepts (2^31 - 1).
MAX_DIM = (1 << 31) - 1

_LITTLE = sys.byteorder == "little"
#: GEMM shapes whose request templates a Device keeps (the cache starts over when full).
_MAX_TEMPLATES = 1024
_pack_header = struct.Struct(">IIB").pack


def connect(addr=None, timeout=30.0, fallback=None):
    """Returns a :class:`Device` for the server at ``addr`` (``$SSTEMU_ADDR``, else 127.0.0.1:9999).

    The server is asked for its INFO at once, so a server that is not running is reported
    here. ``timeout`` bounds connecting and every op's answer, in seconds. ``fallback="cpu"``
    makes ops that cannot reach the server run on the CPU (counted as ``fallback`` in
    profiles) instead of raising.
    """
    dev = Device(addr, timeout=timeout, fallback=fallback)
    if fallback is None:
        dev._probe()
    return dev


def parse_addr(addr):
    """("host", port) from "host:port", "[v6]:port" or ":port"; ValueError when malformed."""
    if not isinstance(addr, str) or ":" not in addr:
        raise ValueError("address %r: want HOST:PORT, e.g. %s" % (addr, DEFAULT_ADDR))
    host, _, port = addr.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        p = int(port)
    except ValueError:
        p = -1
    if not 0 < p < 65536:
        raise ValueError("address %r: port %r is not a number in 1…65535" % (addr, port))
    return (host or "127.0.0.1", p)


_TIMEVAL = struct.Struct("ll")


class _Conn:
    """One TCP connection to the server and its read buffer.

    The socket stays in blocking mode with SO_RCVTIMEO/SO_SNDTIMEO as the op timeout: each
    send and receive is then one system call (Python's own socket timeout polls before each).
    """

    __slots__ = ("sock", "buf", "view", "start", "end")

    BUFFER = 1 << 16

    def __init__(self, hostport, timeout):
        self.sock = socket.create_connection(hostport, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tv = _TIMEVAL.pack(int(timeout), int((timeout % 1) * 1e6))
        try:
            self.sock.settimeout(None)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        except OSError:  # no such options here: Python's own (polling) timeout
            self.sock.settimeout(timeout)
        self.buf = bytearray(self.BUFFER)
        self.view = memoryview(self.buf)
        self.start = self.end = 0

    def send(self, parts, total):
        sent = self.sock.sendmsg(parts)
        if sent < total:  # a large frame: send the rest buffer by buffer
            for p in parts:
                v = memoryview(p).cast("B")
                if sent >= len(v):
                    sent -= len(v)
                    continue
                self.sock.sendall(v[sent:])
                sent = 0

    def _fill(self, what, need):
        """Receives until at least ``need`` bytes are buffered (need ≤ BUFFER)."""
        if self.start and self.BUFFER - self.start < need:
            n = self.end - self.start
            self.buf[:n] = self.view[self.start:self.end]
            self.start, self.end = 0, n
        while self.end - self.start < need:
            got = self.sock.recv_into(self.view[self.end:])
            if not got:
                raise _Closed("the server closed the connection after %d of the %d bytes of %s" % (self.end - self.start, need, what))
            self.end += got

    def read_exact(self, n, what):
        if n <= self.BUFFER:
            if self.end - self.start < n:
                self._fill(what, n)
            out = bytes(self.view[self.start:self.start + n])
            self.start += n
            if self.start == self.end:
                self.start = self.end = 0
            return out
        out = bytearray(n)
        self.read_into(memoryview(out), what)
        return bytes(out)

    def read_into(self, view, what):
        n = len(view)
        have = min(self.end - self.start, n)
        if have:
            view[:have] = self.view[self.start:self.start + have]
            self.start += have
            if self.start == self.end:
                self.start = self.end = 0
        while have < n:
            got = self.sock.recv_into(view[have:])
            if not got:
                raise _Closed("the server closed the connection after %d of the %d bytes of %s" % (have, n, what))
            have += got

    def read_answer(self, name, want, shape, timing):
        """Reads one tensor op's answer: the result (``want`` bytes, as a float32 array of
        ``shape``) and, if ``timing``, the timing record (a :class:`_Trailer`).

        Small answers are parsed in place from the read buffer (usually one receive); a
        result larger than the buffer is received straight into the output array.
        """
        if self.end - self.start < wire.LENGTH_SIZE:
            self._fill("the result length", wire.LENGTH_SIZE)
        buf, start = self.buf, self.start
        n = _unpack_length(buf, start)[0]
        if n != want:
            wire.check_result_length(name, 0, n, want)
        res = np.empty(shape, dtype=np.float32)
        end = start + wire.LENGTH_SIZE + want
        if not timing:
            if end - start <= self.BUFFER:
                if self.end < end:
                    self._fill("the result", end - start)
                    start, end = self.start, self.start + wire.LENGTH_SIZE + want
                memoryview(res).cast("B")[:] = self.view[start + wire.LENGTH_SIZE:end]
                self._consume(end)
            else:
                self.start += wire.LENGTH_SIZE
                self.read_into(memoryview(res).cast("B"), "the result")
            return res, _NO_TIMING
        off = wire.LENGTH_SIZE + want  # the trailer's offset in the answer
        if end + wire.LENGTH_SIZE - start <= self.BUFFER:
            if self.end < end + wire.LENGTH_SIZE:
                self._fill("the result and the timing record length", off + wire.LENGTH_SIZE)
                start, end = self.start, self.start + off
            memoryview(res).cast("B")[:] = self.view[start + wire.LENGTH_SIZE:end]
            self._consume(end)
        else:
            self.start += wire.LENGTH_SIZE
            self.read_into(memoryview(res).cast("B"), "the result")
        if self.end - self.start < wire.LENGTH_SIZE:
            self._fill("the timing record length", wire.LENGTH_SIZE)
        t = _unpack_length(self.buf, self.start)[0]
        self.start += wire.LENGTH_SIZE
        if t > wire.MAX_REPLY_JSON:
            wire.check_json_length(name, "timing record length", off, t)
        return res, _Trailer(name, off + wire.LENGTH_SIZE, self.read_exact(t, "the timing record"))

    def _consume(self, end):
        self.start = end
        if end == self.end:
            self.start = self.end = 0

    def close(self):
        self.sock.close()


_unpack_length = struct.Struct(">I").unpack_from


class _Closed(ConnectionError):
    """The stream ended inside a response."""


class _Trailer:
    """A timing record as received: decoded on first use (most ops' records are never read)."""

    __slots__ = ("op", "offset", "raw")

    def __init__(self, op, offset, raw):
        self.op, self.offset, self.raw = op, offset, raw

    def record(self):
        if self.raw is None:
            return {"timed": False, "untimed_reason": "server_without_timing", "cycles": 0, "sim_ns": 0}
        return wire.decode_json(self.op, "timing record", self.offset, self.raw)


_NO_TIMING = _Trailer("", 0, None)  # the record of an op on a server that predates the trailer


def _device_op(fn):
    """Runs fn with offload's interception off: a device op's own torch calls stay local."""
    def wrapped(*args, **kwargs):
        st = context._state()
        st.device_depth += 1
        try:
            return fn(*args, **kwargs)
        finally:
            st.device_depth -= 1
    wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
    return wrapped


def _as_array(x, name, what):
    """A C-contiguous little-endian float32 numpy view of tensor x, or TypeError/ValueError."""
    if isinstance(x, torch.Tensor):
        if x.dtype is not torch.float32:
            raise TypeError("%s: %s is %s; the device computes float32 only (convert with .float())" % (what, name, x.dtype))
        if not x.is_cpu:
            if x.is_meta:
                raise ValueError("%s: %s is on the meta device and has no data; time shapes with Device.time "
                                 "or sstemu.offload(timing_only=True)" % (what, name))
            x = x.cpu()
        if x.layout is not torch.strided:
            raise TypeError("%s: %s has layout %s; the device takes dense tensors" % (what, name, x.layout))
        if x.requires_grad:
            x = x.detach()
        if x.is_neg():
            x = x.resolve_neg()
        if not x.is_contiguous():
            x = x.contiguous()
        a = x.numpy()
        return a if _LITTLE else a.astype("<f4")
    if isinstance(x, np.ndarray):
        if x.dtype != np.float32:
            raise TypeError("%s: %s is numpy %s; the device computes float32 only" % (what, name, x.dtype))
        if not _LITTLE or x.dtype.byteorder == ">":
            x = x.astype("<f4")
        return np.ascontiguousarray(x)
    raise TypeError("%s: %s is a %s; want a torch.Tensor or numpy array of float32" % (what, name, type(x).__name__))


def _check_dims(shape, name, what):
    for i, d in enumerate(shape):
        if d < 1:
            raise ValueError("%s: %s dimension %d is %d; the device needs every dimension ≥ 1" % (what, name, i, d))
        if d > MAX_DIM:
            raise ValueError("%s: %s dimension %d is %d, more than the wire's 2^31-1" % (what, name, i, d))


def matmul_shape(a, b, what="matmul"):
    """torch.matmul's output shape for operand shapes a, b (lists), or ValueError."""
    a, b = list(a), list(b)
    for s, n in ((a, "A"), (b, "B")):
        if not 1 <= len(s) <= MAX_MATMUL_DIMS:
            raise ValueError("%s: %s has %d dims; the device takes 1 to %d" % (what, n, len(s), MAX_MATMUL_DIMS))
        _check_dims(s, n, what)
    ka = a[-1]
    kb = b[0] if len(b) == 1 else b[-2]
    if ka != kb:
        raise ValueError("%s: inner dimensions differ: A %s, B %s" % (what, a, b))
    if len(a) == 1 and len(b) == 1:
        return []
    if len(b) == 1:
        return a[:-1]
    if len(a) == 1:
        return b[:-2] + b[-1:]
    ba, bb = a[:-2], b[:-2]
    n = max(len(ba), len(bb))
    ba, bb = [1] * (n - len(ba)) + ba, [1] * (n - len(bb)) + bb
    batch = []
    for i, (x, y) in enumerate(zip(ba, bb)):
        if x != y and x != 1 and y != 1:
            raise ValueError("%s: batch dimensions do not broadcast: A %s, B %s" % (what, a, b))
        batch.append(max(x, y))
    return batch + [a[-2], b[-1]]


def _pair(v, name, minimum, what):
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            v = (v[0], v[0])
        if len(v) != 2:
            raise ValueError("%s: %s %r: want an int or two ints" % (what, name, v))
        h, w = v
    else:
        h = w = v
    for x in (h, w):
        if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
            raise TypeError("%s: %s %r: want ints" % (what, name, v))
        if x < minimum or x > MAX_DIM:
            raise ValueError("%s: %s %r: each must be %d … 2^31-1" % (what, name, v, minimum))
    return [int(h), int(w)]


def conv_shape(x, w, stride, padding, dilation, groups, what="conv2d"):
    """conv2d's output shape [N, O, OH, OW] (and the normalised parameters), or ValueError."""
    x, w = list(x), list(w)
    if len(x) != 4 or len(w) != 4:
        raise ValueError("%s: input %s and weight %s must both be 4-D (NCHW, OIHW)" % (what, x, w))
    _check_dims(x, "input", what)
    _check_dims(w, "weight", what)
    s = _pair(stride, "stride", 1, what)
    p = _pair(padding, "padding", 0, what)
    d = _pair(dilation, "dilation", 1, what)
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ValueError("%s: groups %r: want an int ≥ 1" % (what, groups))
    groups = int(groups)
    n, c, h, wd = x
    o, cg, kh, kw = w
    if c % groups or o % groups or cg * groups != c:
        raise ValueError("%s: groups=%d does not fit input channels %d and weight %s" % (what, groups, c, w))
    out = []
    for size, k, si, pi, di, axis in ((h, kh, s[0], p[0], d[0], "height"), (wd, kw, s[1], p[1], d[1], "width")):
        span = di * (k - 1) + 1
        if size + 2 * pi < span:
            raise ValueError("%s: kernel %s spans %d > padded input %d" % (what, axis, span, size + 2 * pi))
        out.append((size + 2 * pi - span) // si + 1)
    return [n, o, out[0], out[1]], s, p, d, groups


class Device:
    """An sstemu device server: ops on tensors, timing from shapes, and its INFO.

    Use :func:`connect` to make one. Safe to share between threads. Each op returns a new
    CPU float32 tensor; :attr:`last_timing` is the timing record of this thread's last op.
    """

    def __init__(self, addr=None, timeout=30.0, fallback=None):
        self.addr = addr or os.environ.get("SSTEMU_ADDR") or DEFAULT_ADDR
        self._hostport = parse_addr(self.addr)
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError("timeout %r: want seconds > 0" % (timeout,))
        if fallback not in (None, "cpu"):
            raise ValueError('fallback %r: want None or "cpu"' % (fallback,))
        self.timeout = float(timeout)
        self.fallback = fallback
        self._pool = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._tls = threading.local()
        self._gemm_templates = {}  # (A shape, B shape) -> what every GEMM of those shapes sends
        self._info = None
        self._timing = None  # whether the server speaks the timing protocol; None: not asked yet
        self._warned = False
        #: Request/answer exchanges with the server so far (each op is one; TIME frames too).
        self.round_trips = 0
        #: Ops computed on the CPU because the server was unreachable (``fallback="cpu"``).
        self.fallback_ops = 0
        #: Connections opened so far (more than one per thread means reconnects).
        self.connections = 0

    def __repr__(self):
        return "sstemu.Device(%r)" % self.addr

    # -- connections ----------------------------------------------------------------------

    def _take(self, what, fresh=False):
        if not fresh:
            try:
                return self._pool.pop()  # atomic: no lock needed to take
            except IndexError:
                pass
        try:
            c = _Conn(self._hostport, self.timeout)
        except OSError as e:
            raise DeviceError(
                "%s: cannot connect to the sstemu device server at %s (%s). Start one with "
                "`sstemu serve --listen %s` (`make run` in the sstemu repository), or point "
                "$SSTEMU_ADDR or sstemu.connect(addr) at a running server." % (what, self.addr, e, self.addr)) from None
        with self._lock:
            self.connections += 1
        return c

    def close(self):
        """Closes the idle connections (ops still work afterwards: they reconnect)."""
        with self._lock:
            pool, self._pool = self._pool, []
        for c in pool:
            c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _exchange(self, what, parts, read, total=None, args=()):
        """Sends one frame (``parts``: buffers of ``total`` bytes) and returns ``read(conn,
        *args)``, its answer, retrying once on a fresh connection (the idle ones are closed
        then: after a server restart they are all dead)."""
        if total is None:
            total = sum(len(p) for p in parts)
        for attempt in (1, 2):
            c = self._take(what, fresh=attempt == 2)
            try:
                c.send(parts, total)
                out = read(c, *args)
            except (socket.timeout, BlockingIOError):  # SO_RCVTIMEO/SO_SNDTIMEO expired
                c.close()
                raise DeviceError("%s: no answer from the server at %s within %g s (timeout)" % (what, self.addr, self.timeout)) from None
            except ProtocolError:
                c.close()
                raise
            except OSError as e:  # reset, broken pipe, closed mid-answer
                c.close()
                if attempt == 1:
                    self.close()
                    continue
                raise ServerClosed(
                    "%s: the server at %s closed the connection before answering (%s), also after one "
                    "reconnect; it may have stopped, or refused the request (its log names the reason; "
                    "limits in docs/wire.md)" % (what, self.addr, e)) from None
            with self._lock:
                self._pool.append(c)
                self.round_trips += 1
            if context._profiles:
                context.emit_round_trip()
            return out
        raise AssertionError("unreachable")

    def _probe(self):
        """Asks INFO once: a server that closes on it predates the timing protocol (no trailer,
        TIME or INFO); ops then run without asking for timing, and their records say so."""
        if self._timing is not None:
            return
        try:
            self.info()
        except ServerClosed:
            self._timing = False
            warnings.warn("sstemu: the server at %s does not answer INFO (it predates the timing protocol); "
                          "ops run without timing records" % self.addr, RuntimeWarning, stacklevel=3)
            return
        self._timing = True

    # -- tensor ops -----------------------------------------------------------------------

    @property
    def last_timing(self):
        """The timing record (dict) of the last op this thread ran on this device, or None.

        Raises :class:`ProtocolError` if the server's trailer for that op was not a JSON object.
        """
        last = getattr(self._tls, "last", None)
        if isinstance(last, _Trailer):
            last = self._tls.last = last.record()
        return last

    def gemm(self, a, b):
        """C = A·B for 2-D float32 A [M, K] and B [K, N] (op GEMM)."""
        return self._gemm(a, b, None)

    @_device_op
    def _gemm(self, a, b, aten):
        a = _as_array(a, "A", "GEMM")
        b = _as_array(b, "B", "GEMM")
        tmpl = self._gemm_templates.get((a.shape, b.shape))
        if tmpl is None:
            tmpl = self._gemm_template(a.shape, b.shape)
        return self._run(wire.OP_GEMM, "gemm", aten, tmpl[5], tmpl, (a, b), tmpl[6], tmpl[7],
                         lambda: torch.from_numpy(a) @ torch.from_numpy(b))

    def _gemm_template(self, sa, sb):
        """Checks a GEMM's operand shapes and caches what its requests share: the JSON after
        op_id (with and without the timing flag), both length prefixes, the error-message
        name, the output shape and its byte count."""
        if len(sa) != 2 or len(sb) != 2:
            raise ValueError("GEMM: A %s and B %s must be 2-D (use matmul for batches)" % (list(sa), list(sb)))
        (m, k), (k2, n) = sa, sb
        if k != k2:
            raise ValueError("GEMM: inner dimensions differ: A %s, B %s" % (list(sa), list(sb)))
        _check_dims(sa, "A", "GEMM")
        _check_dims(sb, "B", "GEMM")
        tail = b',"M":%d,"N":%d,"K":%d,"A_shape":[%d,%d],"B_shape":[%d,%d],"dtype":"float32"' % (m, n, k, m, k, k, n)
        na, nb = wire.FLOAT32_SIZE * m * k, wire.FLOAT32_SIZE * k * n
        tmpl = (tail + b',"timing":true}', tail + b"}", wire.length(na), wire.length(nb),
                2 * wire.LENGTH_SIZE + na + nb, "GEMM %dx%dx%d (MxNxK)" % (m, n, k), (m, n),
                wire.FLOAT32_SIZE * m * n)
        if len(self._gemm_templates) >= _MAX_TEMPLATES:
            self._gemm_templates.clear()
        self._gemm_templates[(sa, sb)] = tmpl
        return tmpl

    def matmul(self, a, b):
        """torch.matmul(A, B) for float32 operands of 1 to 8 dims, with broadcasting (op MATMUL)."""
        return self._matmul(a, b, None)

    @_device_op
    def _matmul(self, a, b, aten):
        a = _as_array(a, "A", "MATMUL")
        b = _as_array(b, "B", "MATMUL")
        out = matmul_shape(a.shape, b.shape, "MATMUL")
        what = "MATMUL %s x %s" % (list(a.shape), list(b.shape))
        meta = {"op_id": 0, "A_shape": list(a.shape), "B_shape": list(b.shape), "dtype": "float32"}
        return self._run(wire.OP_MATMUL, "matmul", aten, what, meta, (a, b), out, wire.FLOAT32_SIZE * math.prod(out),
                         lambda: torch.matmul(torch.from_numpy(a), torch.from_numpy(b)))

    def conv2d(self, x, w, stride=1, padding=0, dilation=1, groups=1):
        """torch.nn.functional.conv2d(x, w) without bias, NCHW float32 (op CONV)."""
        return self._conv2d(x, w, stride, padding, dilation, groups, None)

    @_device_op
    def _conv2d(self, x, w, stride, padding, dilation, groups, aten):
        x = _as_array(x, "input", "CONV")
        w = _as_array(w, "weight", "CONV")
        out, s, p, d, g = conv_shape(x.shape, w.shape, stride, padding, dilation, groups, "CONV")
        what = "CONV %s * %s" % (list(x.shape), list(w.shape))
        meta = {"op_id": 0, "input_shape": list(x.shape), "weight_shape": list(w.shape), "stride": s,
                "padding": p, "dilation": d, "groups": g, "dtype": "float32"}
        return self._run(wire.OP_CONV, "conv", aten, what, meta, (x, w), out, wire.FLOAT32_SIZE * math.prod(out),
                         lambda: torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), None, s, p, d, g))

    def _run(self, opcode, opname, aten, what, meta, arrays, out_shape, want, local):
        """Sends one tensor op and returns its result as a tensor. For GEMM ``meta`` is the
        shape's template (see _gemm_template); for the others the request's JSON fields."""
        op_id = next(self._ids)
        if self._timing is None:
            try:
                self._probe()
            except DeviceError as e:
                if self.fallback != "cpu":
                    raise
                return self._fallback(opname, aten, what, arrays, local, e)
        timing = self._timing
        a, b = arrays  # numpy arrays are buffers: sent as they are
        if opcode == wire.OP_GEMM:  # the hot path: the JSON from a cached template
            body = b'{"op_id":%d%s' % (op_id, meta[0] if timing else meta[1])
            head = _pack_header(wire.MAGIC, len(body), opcode) + body + meta[2]
            parts = (head, a, meta[3], b)
            total = len(head) + meta[4] - wire.LENGTH_SIZE
        else:
            meta["op_id"] = op_id
            if timing:
                meta["timing"] = True
            head = wire.header(opcode, meta)
            parts = (head, wire.length(a.nbytes), a, wire.length(b.nbytes), b)
            total = len(head) + 2 * wire.LENGTH_SIZE + a.nbytes + b.nbytes
        t0 = time.perf_counter_ns()
        try:
            res, trailer = self._exchange(what, parts, _Conn.read_answer, total,
                                          (wire.OP_NAMES[opcode], want, out_shape, timing))
        except DeviceError as e:
            if self.fallback != "cpu":
                raise
            return self._fallback(opname, aten, what, arrays, local, e)
        wall = (time.perf_counter_ns() - t0) / 1000.0
        out = torch.from_numpy(res)
        if context._profiles:
            rec = trailer.record()
            self._tls.last = rec
            self._emit(rec, opname, aten, arrays, wall, meta)
        else:
            self._tls.last = trailer  # parsed when last_timing is read
        return out

    def _emit(self, rec, opname, aten, arrays, wall, meta):
        r = rec
        r.update(op=opname, aten=aten, shapes=[list(a.shape) for a in arrays], wall_us=wall)
        if opname == "conv":
            r["params"] = {k: meta[k] for k in ("stride", "padding", "dilation", "groups")}
        r.update(context.attribution())
        context.emit(r)

    def _fallback(self, opname, aten, what, arrays, local, err):
        with self._lock:
            self.fallback_ops += 1
            warn = not self._warned
            self._warned = True
        if warn:
            warnings.warn("sstemu: %s; computing on the CPU (fallback=\"cpu\"), untimed" % err, RuntimeWarning, stacklevel=4)
        out = local()
        rec = {"timed": False, "untimed_reason": "cpu_fallback", "fallback": "cpu", "cycles": 0, "sim_ns": 0}
        self._tls.last = rec
        if context.profiling():
            r = dict(rec)
            r.update(op=opname, aten=aten, shapes=[list(a.shape) for a in arrays], wall_us=0.0)
            r.update(context.attribution())
            context.emit(r)
        return out.contiguous()

    # -- shapes only ------------------------------------------------------------------------

    def info(self):
        """The server's INFO (op 0x05) as a dict: version, devices, model, ceilings, limits."""
        meta = {"op_id": next(self._ids)}

        def read(c):
            t = wire.unpack_length(c.read_exact(wire.LENGTH_SIZE, "the INFO length"))
            wire.check_json_length("INFO", "length", 0, t)
            return wire.decode_json("INFO", "JSON", wire.LENGTH_SIZE, c.read_exact(t, "the INFO JSON"))

        info = self._exchange("INFO", [wire.header(wire.OP_INFO, meta)], read)
        self._info = info
        return info

    def _limits(self):
        """The TIME frame limits from INFO (or the documented defaults): (entries, JSON bytes,
        summed GEMMs, summed FLOPs)."""
        info = self._info
        if info is None:
            try:
                info = self.info()
            except ProtocolError:
                info = {}
        lim = info.get("limits", {}) if isinstance(info.get("limits"), dict) else {}
        entries = _first_int(lim, info, ("max_time_entries",)) or wire.DEFAULT_MAX_TIME_ENTRIES
        nbytes = _first_int(lim, info, ("max_time_json_bytes",)) or _first_int(lim, info, ("max_json_bytes",)) \
            or wire.DEFAULT_MAX_JSON
        gemms = _first_int(lim, info, ("max_time_gemms",)) or wire.DEFAULT_MAX_TIME_GEMMS
        flops = _first_int(lim, info, ("max_time_flops",)) or wire.DEFAULT_MAX_TIME_FLOPS
        return entries, nbytes, gemms, flops

    def time(self, ops):
        """Times shapes without tensors (op TIME): one record per entry, in order.

        ``ops`` is a list of dicts as on the wire: ``{"op": "gemm", "M": m, "N": n, "K": k}``,
        ``{"op": "matmul", "A_shape": [...], "B_shape": [...]}`` or ``{"op": "conv",
        "input_shape": [...], "weight_shape": [...], "stride": .., "padding": .., "dilation": ..,
        "groups": ..}``. Any number of entries: they are sent in as few frames as the server's
        limits allow. An entry the server cannot time gets a record with ``"error"``.
        """
        if isinstance(ops, dict):
            raise TypeError("Device.time takes a list of op dicts; wrap the single op in a list")
        if isinstance(ops, (str, bytes)) or not hasattr(ops, "__iter__"):
            raise TypeError("Device.time takes a list of op dicts, got a %s" % type(ops).__name__)
        ops = list(ops)  # a generator is read once, here
        encoded = [_encode_time_entry(i, e) for i, e in enumerate(ops)]
        recs = self._time_encoded(encoded, [entry_cost(e) for e in ops])
        if recs:
            self._tls.last = recs[-1]
        if context.profiling():
            for e, r in zip(ops, recs):
                d = dict(r)
                d.update(op=e["op"], aten=None, shapes=_entry_shapes(e), wall_us=0.0)
                if e["op"] == "conv":
                    d["params"] = {k: e[k] for k in ("stride", "padding", "dilation", "groups") if k in e}
                d.update(context.attribution())
                context.emit(d)
        return recs

    def _time_encoded(self, encoded, costs):
        """TIME frames for pre-encoded entries (bytes) with their (GEMMs, FLOPs), split so that
        no frame exceeds the server's limits on entries, JSON bytes and summed work."""
        if not encoded:
            return []
        self._probe()
        if not self._timing:
            raise DeviceError("TIME: the server at %s predates the timing protocol (no TIME op); "
                              "run a newer `sstemu serve`" % self.addr)
        max_entries, max_json, max_gemms, max_flops = self._limits()
        out = []
        i = 0
        while i < len(encoded):
            op_id = next(self._ids)
            head = b'{"op_id":%d,"ops":[' % op_id
            size = len(head) + 2
            gemms = flops = 0
            j = i
            while j < len(encoded) and j - i < max_entries:
                g, f = costs[j]
                if j > i and (size + len(encoded[j]) + 1 > max_json or gemms + g > max_gemms or flops + f > max_flops):
                    break
                size += len(encoded[j]) + 1
                gemms += g
                flops += f
                j += 1
            out.extend(self._time_frame(head + b",".join(encoded[i:j]) + b"]}", j - i))
            i = j
        return out

    def _time_frame(self, body, n):
        frame = wire.header_raw(wire.OP_TIME, body)

        def read(c):
            t = wire.unpack_length(c.read_exact(wire.LENGTH_SIZE, "the TIME reply length"))
            wire.check_json_length("TIME", "length", 0, t)
            return wire.decode_json("TIME", "JSON", wire.LENGTH_SIZE, c.read_exact(t, "the TIME reply"))

        reply = self._exchange("TIME (%d entries)" % n, [frame], read)
        res = reply.get("results")
        if not isinstance(res, list) or len(res) != n or not all(isinstance(r, dict) for r in res):
            got = len(res) if isinstance(res, list) else type(res).__name__
            raise ProtocolError("TIME", "results", wire.LENGTH_SIZE, "%s results for %d entries" % (got, n))
        return res


def _first_int(a, b, names):
    for d in (a, b):
        for k in names:
            v = d.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return 0


_TIME_KEYS = {
    "gemm": ("M", "N", "K"),
    "matmul": ("A_shape", "B_shape"),
    "conv": ("input_shape", "weight_shape"),
}


def _encode_time_entry(i, e):
    if not isinstance(e, dict):
        raise TypeError("TIME entry %d is a %s; want a dict such as {'op': 'gemm', 'M': 4, 'N': 16, 'K': 8}" % (i, type(e).__name__))
    kind = e.get("op")
    if kind not in _TIME_KEYS:
        raise ValueError("TIME entry %d: op %r; want one of %s" % (i, kind, ", ".join(sorted(_TIME_KEYS))))
    for k in _TIME_KEYS[kind]:
        if k not in e:
            raise ValueError("TIME entry %d (%s): %s missing" % (i, kind, k))
    try:
        return json.dumps(e, separators=(",", ":"), allow_nan=False, default=_json_number).encode()
    except (TypeError, ValueError) as err:
        raise type(err)("TIME entry %d (%s): %s; shapes are ints" % (i, kind, err)) from None


def _json_number(v):
    """numpy integers (e.g. from a shape computed with numpy) as JSON ints."""
    if isinstance(v, np.integer):
        return int(v)
    raise TypeError("%r (a %s) is not a JSON number or list" % (v, type(v).__name__))


def entry_cost(e):
    """(GEMMs, FLOPs) a TIME entry lowers to, as the server sums them; (0, 0) if it is malformed
    (the server then answers it with an error record)."""
    try:
        kind = e["op"]
        if kind == "gemm":
            m, n, k = (e[d] for d in ("M", "N", "K"))
            if not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in (m, n, k)):
                return 0, 0
            return 1, 2 * int(m) * int(n) * int(k)
        if kind == "matmul":
            a, b = list(e["A_shape"]), list(e["B_shape"])
            out = matmul_shape(a, b)
            n = a[-2] if len(a) > 1 else 1
            p = b[-1] if len(b) > 1 else 1
            batch = math.prod(out) // (n * p)
            return batch, 2 * batch * n * a[-1] * p
        if kind == "conv":
            w = e["weight_shape"]
            (n, o, oh, ow), _, _, _, g = conv_shape(e["input_shape"], w, e.get("stride", 1), e.get("padding", 0),
                                                    e.get("dilation", 1), e.get("groups", 1))
            return n * g, 2 * n * o * oh * ow * w[1] * w[2] * w[3]
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        pass
    return 0, 0


def _entry_shapes(e):
    if e["op"] == "gemm":
        return [[e["M"], e["K"]], [e["K"], e["N"]]]
    if e["op"] == "matmul":
        return [list(e["A_shape"]), list(e["B_shape"])]
    return [list(e["input_shape"]), list(e["weight_shape"])]


_default = None
_default_lock = threading.Lock()


def default_device():
    """The process's shared Device (:func:`connect` with the defaults), made on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = connect()
        return _default


def set_default_device(dev):
    """Makes ``dev`` what ``device=None`` means in offload, profile, patch and the modules."""
    global _default
    if dev is not None and not isinstance(dev, Device):
        raise TypeError("set_default_device: want a sstemu.Device, got %s" % type(dev).__name__)
    with _default_lock:
        _default = dev
