"""``with sstemu.offload():`` runs an unmodified model's matrix products on the device.

A ``TorchDispatchMode`` (torch ≥ 1.13) sees every aten op below autograd, so what reaches it
is already lowered: ``nn.Linear`` arrives as ``addmm``/``mm``, ``torch.matmul`` as
``mm``/``bmm``/``mv``/``dot``, ``nn.Conv2d`` as ``convolution`` and its gradient as
``convolution_backward``. Those, on float32 CPU tensors, go to the device; every other op,
and any of those with other dtypes or layouts, runs locally and is counted as local.

With ``timing_only=True`` nothing is computed on the device: each product becomes a TIME entry
(queued and sent in frames of up to the server's limit, so a whole forward pass costs a few
round trips) while the op itself runs locally — on the ``meta`` device that costs nothing, so
models far larger than memory can be timed.
"""

import concurrent.futures
import threading

import torch
from torch._C import _len_torch_dispatch_stack, _set_torch_dispatch_mode
from torch.utils._python_dispatch import TorchDispatchMode

from . import client, context
from .modules import conv2d_backward, conv2d_backward_shapes

aten = torch.ops.aten
_CLIENT_KEYS = ("op", "aten", "shapes", "params", "module", "phase", "pass", "_modules", "_regions")


def _ok(t, meta_ok):
    # Empty tensors run locally too: the device needs every dimension >= 1, torch does not.
    return (isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.layout == torch.strided
            and (t.device.type == "cpu" or (meta_ok and t.device.type == "meta")) and t.numel() > 0)


class offload(TorchDispatchMode):
    """Sends float32 mm/addmm/bmm/baddbmm/mv/dot/convolution (and conv's backward) to the device.

    ``device``: the sstemu Device (None: :func:`sstemu.default_device`). ``timing_only``: time
    shapes with TIME frames instead of computing on the device; the ops run locally (use a
    model on the ``meta`` device for models too large to compute). ``offloaded`` and ``local``
    count what this context did (``local`` by aten op name).

    When no other dispatch mode is active it installs itself directly (not on torch's mode
    stack, which costs as much again per op); a different dispatch mode entered inside it
    then ends its interception, so enter other modes outside ``offload``.
    """

    def __init__(self, device=None, timing_only=False):
        super().__init__()
        if device is not None and not isinstance(device, client.Device):
            raise TypeError("offload: device must be a sstemu.Device, got %s" % type(device).__name__)
        self.device = device
        self.timing_only = bool(timing_only)
        #: Aten ops handled on the device (or, timing only, timed there); a convolution_backward
        #: is one op here and two device ops (dX, dW) in a profile.
        self.offloaded = 0
        self._local = {}  # id(OpOverload) -> calls run locally
        self._pending = []  # (encoded TIME entry, record to fill)
        self._lock = threading.Lock()
        self._batch = None
        self._fast = False
        self._sender = None  # the worker thread that sends full TIME batches
        self._frames = []  # its futures not yet waited for

    @property
    def local(self):
        """Ops run locally so far, by aten name (e.g. ``{"aten.add": 3}``)."""
        out = {}
        for f, n in list(self._local.items()):
            name = str(_OPS[f].overloadpacket)
            out[name] = out.get(name, 0) + n
        return out

    def __enter__(self):
        if self.device is None:
            self.device = client.default_device()
        if self.timing_only:
            self._batch = self.device._limits()[0]
            context.add_flusher(self)
            context._state().timing_only += 1
        context.add_offload(self)
        # Fast path: with no other dispatch mode active, install this mode directly instead of
        # through torch's mode stack (whose per-op Python wrapper doubles the cost of every op).
        stack = _fast_stack()
        if _len_torch_dispatch_stack() == 0:
            self._fast = True
            stack.append(self)
            _set_torch_dispatch_mode(self)
            return self
        self._fast = False
        return super().__enter__()

    def __exit__(self, exc_type, exc, tb):
        try:
            if self._fast:
                stack = _fast_stack()
                stack.remove(self)
                _set_torch_dispatch_mode(stack[-1] if stack else None)
            else:
                super().__exit__(exc_type, exc, tb)
        finally:
            context.remove_offload(self)
            if self.timing_only:
                context._state().timing_only -= 1
                context.remove_flusher(self)
                try:
                    if exc_type is None:
                        self.flush()
                finally:
                    if self._sender is not None:
                        self._sender.shutdown(wait=True)
                        self._sender = None
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self._fast:
            _set_torch_dispatch_mode(None)
            try:
                return self._dispatch(func, args, kwargs or {})
            finally:
                _set_torch_dispatch_mode(self)
        return self._dispatch(func, args, kwargs or {})

    def _dispatch(self, func, args, kwargs):
        key = id(func)  # OpOverloads are singletons; their Python __hash__ costs more than id()
        h = _HANDLERS.get(key)
        if h is not None and not context.inside_device_op():
            out = (h[1] if self.timing_only else h[0])(self, args, kwargs)
            if out is not NotImplemented:
                self.offloaded += 1
                return out
        n = self._local.get(key)
        if n is None:
            _OPS[key] = func
            n = 0
        self._local[key] = n + 1
        return func._op(*args, **kwargs)

    # -- timing only ------------------------------------------------------------------------

    def _queue(self, entry, aten_name):
        rec = {"op": entry["op"], "aten": aten_name, "shapes": client._entry_shapes(entry), "pending": True}
        if entry["op"] == "conv":
            rec["params"] = {k: entry[k] for k in ("stride", "padding", "dilation", "groups")}
        if context.profiling():
            rec.update(context.attribution())
            context.emit(rec)
        if entry["op"] == "gemm":  # most entries: formatted, not json.dumps'd
            m, n, k = entry["M"], entry["N"], entry["K"]
            enc = b'{"op":"gemm","M":%d,"N":%d,"K":%d}' % (m, n, k)
            cost = (1, 2 * m * n * k)
        else:
            enc = client._encode_time_entry(0, entry)
            cost = client.entry_cost(entry)
        with self._lock:
            self._pending.append((enc, rec, cost))
            full = len(self._pending) >= self._batch
        if full:
            self.flush(wait=False)

    def flush(self, wait=True):
        """Sends the queued TIME entries and completes their records.

        With ``wait=False`` (a full batch while the model runs) the frame is sent by a worker
        thread, so the model does not wait for the server; ``wait=True`` returns when every
        frame sent so far is answered, and raises the first error any of them met.
        """
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            if self._sender is None:
                self._sender = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sstemu-time")
            self._frames.append(self._sender.submit(self._send, pending))
        done = [f for f in self._frames if wait or f.done()]
        self._frames = [f for f in self._frames if f not in done]
        for f in done:
            f.result()  # raises the frame's DeviceError

    def _send(self, pending):
        results = self.device._time_encoded([p[0] for p in pending], [p[2] for p in pending])
        for (_, rec, _), res in zip(pending, results):
            for k, v in res.items():
                if k not in _CLIENT_KEYS:
                    rec[k] = v
            del rec["pending"]


_tls = threading.local()


def _fast_stack():
    st = getattr(_tls, "stack", None)
    if st is None:
        st = _tls.stack = []
    return st


def _scaled(out, self_t, beta, alpha):
    if alpha != 1:
        out.mul_(alpha)
    if beta != 0:
        out.add_(self_t, alpha=beta)
    return out


# Numerics: each handler computes the op on the device, or returns NotImplemented (run locally).

def _product(method, name):
    """Handler of a plain product (aten.mm, aten.bmm) through Device.<method>."""
    def h(mode, args, kwargs):
        a, b = args
        if not (_ok(a, False) and _ok(b, False)):
            return NotImplemented
        return getattr(mode.device, method)(a, b, name)
    return h


def _scaled_product(method, name):
    """Handler of beta·self + alpha·(A·B) (aten.addmm, aten.baddbmm) through Device.<method>."""
    def h(mode, args, kwargs):
        s, a, b = args[:3]
        beta, alpha = kwargs.get("beta", 1), kwargs.get("alpha", 1)
        if not (_ok(s, False) and _ok(a, False) and _ok(b, False)):
            return NotImplemented
        return _scaled(getattr(mode.device, method)(a, b, name), s, beta, alpha)
    return h


def _vec(name):
    def h(mode, args, kwargs):
        a, b = args
        if not (_ok(a, False) and _ok(b, False)):
            return NotImplemented
        return mode.device._matmul(a, b, name)
    return h


def _conv_args(args):
    x, w, bias, stride, padding, dilation, transposed, _, groups = args
    return x, w, bias, list(stride), list(padding), list(dilation), transposed, groups


def _conv(mode, args, kwargs):
    x, w, bias, s, p, d, transposed, g = _conv_args(args)
    if transposed or x.dim() != 4 or not (_ok(x, False) and _ok(w, False)) or (bias is not None and not _ok(bias, False)):
        return NotImplemented
    y = mode.device._conv2d(x, w, s, p, d, g, "aten.convolution")
    if bias is not None:
        y.add_(bias.view(1, -1, 1, 1))
    return y


def _conv_bwd_args(args):
    gy, x, w, _, stride, padding, dilation, transposed, _, groups, mask = args
    return gy, x, w, list(stride), list(padding), list(dilation), transposed, groups, mask


def _conv_bwd(mode, args, kwargs):
    gy, x, w, s, p, d, transposed, g, mask = _conv_bwd_args(args)
    if transposed or x.dim() != 4 or not (_ok(gy, False) and _ok(x, False) and _ok(w, False)):
        return NotImplemented
    dev = mode.device

    def mm(a, b):
        return dev._matmul(a, b, "aten.convolution_backward")

    dx, dw = conv2d_backward(mm, x, w, gy.contiguous(), s, p, d, g, mask[0], mask[1])
    db = gy.sum((0, 2, 3)) if mask[2] else None
    return dx, dw, db


# Timing only: the op runs locally (meta or CPU), its shapes are queued for TIME.

def _t_mm(mode, args, kwargs, name="aten.mm"):
    a, b = args[-2:] if name == "aten.addmm" else args
    if not all(_ok(t, True) for t in args[:3] if isinstance(t, torch.Tensor)):
        return NotImplemented
    (m, k), n = a.shape, b.shape[1]
    out = _FUNCS[name](*args, **kwargs)
    mode._queue({"op": "gemm", "M": m, "N": n, "K": k}, name)
    return out


def _t_addmm(mode, args, kwargs):
    return _t_mm(mode, args, kwargs, "aten.addmm")


def _t_matmul(name):
    def h(mode, args, kwargs):
        ts = [t for t in args if isinstance(t, torch.Tensor)]
        if not all(_ok(t, True) for t in ts):
            return NotImplemented
        a, b = args[-2:] if name == "aten.baddbmm" else args[:2]
        out = _FUNCS[name](*args, **kwargs)
        mode._queue({"op": "matmul", "A_shape": list(a.shape), "B_shape": list(b.shape)}, name)
        return out
    return h


def _t_conv(mode, args, kwargs):
    x, w, bias, s, p, d, transposed, g = _conv_args(args)
    if transposed or x.dim() != 4 or not (_ok(x, True) and _ok(w, True)):
        return NotImplemented
    out = aten.convolution.default(*args, **kwargs)
    mode._queue({"op": "conv", "input_shape": list(x.shape), "weight_shape": list(w.shape), "stride": s,
                 "padding": p, "dilation": d, "groups": g}, "aten.convolution")
    return out


def _t_conv_bwd(mode, args, kwargs):
    gy, x, w, s, p, d, transposed, g, mask = _conv_bwd_args(args)
    if transposed or x.dim() != 4 or not (_ok(gy, True) and _ok(x, True) and _ok(w, True)):
        return NotImplemented
    out = aten.convolution_backward.default(*args, **kwargs)
    for a, b in conv2d_backward_shapes(list(x.shape), list(w.shape), list(gy.shape), g, mask[0], mask[1]):
        mode._queue({"op": "matmul", "A_shape": a, "B_shape": b}, "aten.convolution_backward")
    return out


_FUNCS = {
    "aten.mm": aten.mm.default,
    "aten.addmm": aten.addmm.default,
    "aten.bmm": aten.bmm.default,
    "aten.baddbmm": aten.baddbmm.default,
    "aten.mv": aten.mv.default,
    "aten.dot": aten.dot.default,
}

_OPS = {}  # id -> OpOverload of every op counted as local
_HANDLERS = {id(f): h for f, h in (
    (aten.mm.default, (_product("_gemm", "aten.mm"), _t_mm)),
    (aten.addmm.default, (_scaled_product("_gemm", "aten.addmm"), _t_addmm)),
    (aten.bmm.default, (_product("_matmul", "aten.bmm"), _t_matmul("aten.bmm"))),
    (aten.baddbmm.default, (_scaled_product("_matmul", "aten.baddbmm"), _t_matmul("aten.baddbmm"))),
    (aten.mv.default, (_vec("aten.mv"), _t_matmul("aten.mv"))),
    (aten.dot.default, (_vec("aten.dot"), _t_matmul("aten.dot"))),
    (aten.convolution.default, (_conv, _t_conv)),
    (aten.convolution_backward.default, (_conv_bwd, _t_conv_bwd)),
)}
