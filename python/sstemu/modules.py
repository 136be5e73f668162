"""Drop-ins for the reference's device ops, with their backward passes on the device too.

``DeviceGEMM.apply(A, B)`` and ``DeviceLinear`` keep the reference client's semantics (and
``nn.Linear``'s); ``DeviceMatmul`` and ``DeviceConv2d`` add torch.matmul and conv2d. Every
backward GEMM (dX = dY·Wᵀ, dW = Xᵀ·dY; conv's as im2col GEMMs) runs on the device and is timed
as a ``backward`` op of the module that ran the forward. :func:`patch` swaps a model's
``nn.Linear``/``nn.Conv2d`` for these in place, sharing the parameters.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import client, context


def _dev(device):
    return device if device is not None else client.default_device()


class _Local:
    """What a device Function calls inside ``offload(timing_only=True)``: torch's own ops, which
    that offload times (TIME entries) and computes locally, meta tensors included."""

    @staticmethod
    def gemm(a, b):
        return torch.mm(a, b)

    @staticmethod
    def matmul(a, b):
        return torch.matmul(a, b)

    @staticmethod
    def conv2d(x, w, stride, padding, dilation, groups):
        return F.conv2d(x, w, None, stride, padding, dilation, groups)


def _target(device):
    return _Local if context.timing_only_active() else _dev(device)


def _save(ctx, a, b, device):
    """Keeps what a product's backward needs on ctx and returns where to compute it."""
    ctx.dev = _target(device)
    ctx.modules = context.module_stack()
    ctx.save_for_backward(a, b)
    return ctx.dev


class DeviceGEMM(torch.autograd.Function):
    """C = A·B on the device for 2-D float32 tensors: ``DeviceGEMM.apply(A, B[, device])``."""

    @staticmethod
    def forward(ctx, a, b, device=None):
        return _save(ctx, a, b, device).gemm(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        da = db = None
        with context.in_pass(context.BACKWARD), context.with_modules(ctx.modules):
            if ctx.needs_input_grad[0]:
                da = ctx.dev.gemm(grad, b.t())
            if ctx.needs_input_grad[1]:
                db = ctx.dev.gemm(a.t(), grad)
        return da, db, None


def _unbroadcast(g, shape):
    return g.sum_to_size(shape) if tuple(g.shape) != tuple(shape) else g


class DeviceMatmul(torch.autograd.Function):
    """torch.matmul(A, B) on the device (1 to 8 dims, broadcasting): ``DeviceMatmul.apply(A, B[, device])``."""

    @staticmethod
    def forward(ctx, a, b, device=None):
        return _save(ctx, a, b, device).matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        a2 = a.unsqueeze(0) if a.dim() == 1 else a
        b2 = b.unsqueeze(-1) if b.dim() == 1 else b
        g2 = grad.reshape(client.matmul_shape(a2.shape, b2.shape))
        da = db = None
        with context.in_pass(context.BACKWARD), context.with_modules(ctx.modules):
            if ctx.needs_input_grad[0]:
                da = _unbroadcast(ctx.dev.matmul(g2, b2.transpose(-1, -2)), a2.shape).reshape(a.shape)
            if ctx.needs_input_grad[1]:
                db = _unbroadcast(ctx.dev.matmul(a2.transpose(-1, -2), g2), b2.shape).reshape(b.shape)
        return da, db, None


def conv2d_backward_shapes(x, w, gy, groups, need_x=True, need_w=True):
    """The MATMUL operand shapes :func:`conv2d_backward` sends: [(A_shape, B_shape) for dW, for dX]."""
    n = x[0]
    o, cg, kh, kw = w
    g, og, ohw, kk = groups, o // groups, gy[2] * gy[3], cg * kh * kw
    out = []
    if need_w:
        out.append(([g, og, n * ohw], [g, n * ohw, kk]))
    if need_x:
        out.append(([g, kk, og], [n, g, og, ohw]))
    return out


def conv2d_backward(matmul, x, w, gy, stride, padding, dilation, groups, need_x=True, need_w=True):
    """(dX, dW) of conv2d(x, w) for output gradient gy, as im2col GEMMs through ``matmul``.

    dW[g] = dY[g] · cols[g]ᵀ and dcols[g] = W[g]ᵀ · dY[g], one MATMUL each with the groups as the
    batch (``matmul`` is a Device's); im2col (unfold) and its inverse (fold) run locally.
    """
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    g = groups
    og = o // g
    ohw = gy.shape[2] * gy.shape[3]
    kk = cg * kh * kw
    gy_m = gy.reshape(n, g, og, ohw)
    dx = dw = None
    if need_w:
        cols = F.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)  # [N, C·KH·KW, L]
        cols_g = cols.reshape(n, g, kk, ohw).permute(1, 0, 3, 2).reshape(g, n * ohw, kk)
        gy_g = gy_m.permute(1, 2, 0, 3).reshape(g, og, n * ohw)
        dw = matmul(gy_g, cols_g).reshape(o, cg, kh, kw)
    if need_x:
        w_g = w.reshape(g, og, kk).transpose(1, 2)
        dcols = matmul(w_g, gy_m)  # [N, G, KK, L]
        dx = F.fold(dcols.reshape(n, g * kk, ohw), (h, wd), (kh, kw), dilation=dilation, padding=padding, stride=stride)
    return dx, dw


class DeviceConv2dFunction(torch.autograd.Function):
    """conv2d(x, w) without bias on the device; backward as GEMMs on the device too."""

    @staticmethod
    def forward(ctx, x, w, stride=1, padding=0, dilation=1, groups=1, device=None):
        dev = _target(device)
        _, s, p, d, g = client.conv_shape(x.shape, w.shape, stride, padding, dilation, groups, "conv2d")
        ctx.dev, ctx.params = dev, (s, p, d, g)
        ctx.modules = context.module_stack()
        ctx.save_for_backward(x, w)
        return dev.conv2d(x, w, s, p, d, g)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        s, p, d, g = ctx.params
        with context.in_pass(context.BACKWARD), context.with_modules(ctx.modules):
            dx, dw = conv2d_backward(ctx.dev.matmul, x, w, grad.contiguous(), s, p, d, g,
                                     ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return dx, dw, None, None, None, None, None


class DeviceLinear(nn.Module):
    """``nn.Linear`` whose products run on the device: y = DeviceGEMM(x, Wᵀ) + b.

    Same parameters, initialisation, shapes (any leading dims) and state_dict as nn.Linear.
    ``device`` is the sstemu Device (None: the default one).
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, sstemu_device=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype)) if bias else None
        self.sstemu_device = sstemu_device
        self.reset_parameters()

    reset_parameters = nn.Linear.reset_parameters

    @classmethod
    def from_linear(cls, lin, sstemu_device=None):
        """A DeviceLinear sharing ``lin``'s weight and bias Parameters."""
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.in_features, m.out_features = lin.in_features, lin.out_features
        m.weight, m.bias = lin.weight, lin.bias
        m.sstemu_device = sstemu_device
        m.train(lin.training)
        return m

    def forward(self, x):
        lead = x.shape[:-1]
        y = DeviceGEMM.apply(x.reshape(-1, self.in_features), self.weight.t(), self.sstemu_device)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def extra_repr(self):
        return "in_features=%d, out_features=%d, bias=%s" % (self.in_features, self.out_features, self.bias is not None)


def _pad_arg(padding):
    if isinstance(padding, str):
        if padding == "valid":
            return 0
        raise ValueError("DeviceConv2d: padding %r is not supported; give the padding as ints" % (padding,))
    return padding


class DeviceConv2d(nn.Module):
    """``nn.Conv2d`` (zero padding) whose convolution and its backward run on the device."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, device=None, dtype=None, sstemu_device=None):
        super().__init__()
        k = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
        if in_channels % groups or out_channels % groups:
            raise ValueError("DeviceConv2d: groups=%d must divide in_channels %d and out_channels %d" % (groups, in_channels, out_channels))
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, tuple(k)
        self.stride, self.padding, self.dilation, self.groups = stride, _pad_arg(padding), dilation, groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, *k, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)) if bias else None
        self.sstemu_device = sstemu_device
        self.reset_parameters()

    def reset_parameters(self):
        """nn.Conv2d's initialisation."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * self.weight.shape[2] * self.weight.shape[3]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_conv(cls, conv, sstemu_device=None):
        """A DeviceConv2d sharing ``conv``'s weight and bias Parameters."""
        if conv.padding_mode != "zeros":
            raise ValueError("DeviceConv2d: padding_mode %r is not supported (zeros only)" % conv.padding_mode)
        m = cls.__new__(cls)
        nn.Module.__init__(m)
        m.in_channels, m.out_channels, m.kernel_size = conv.in_channels, conv.out_channels, tuple(conv.kernel_size)
        m.stride, m.padding, m.dilation, m.groups = tuple(conv.stride), _pad_arg(conv.padding), tuple(conv.dilation), conv.groups
        m.weight, m.bias = conv.weight, conv.bias
        m.sstemu_device = sstemu_device
        m.train(conv.training)
        return m

    def forward(self, x):
        y = DeviceConv2dFunction.apply(x, self.weight, self.stride, self.padding, self.dilation, self.groups, self.sstemu_device)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def extra_repr(self):
        return "%d, %d, kernel_size=%s, stride=%s, padding=%s, dilation=%s, groups=%d, bias=%s" % (
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
            self.groups, self.bias is not None)


def _swap(m, device):
    if isinstance(m, (DeviceLinear, DeviceConv2d)):
        return None
    if isinstance(m, nn.Linear):
        return DeviceLinear.from_linear(m, device)
    if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros" and not (isinstance(m.padding, str) and m.padding != "valid"):
        return DeviceConv2d.from_conv(m, device)
    return None


def patch(model, device=None):
    """Swaps every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` for DeviceLinear/DeviceConv2d in place.

    The new modules share the old ones' Parameters (optimisers and state_dicts keep working).
    Convolutions with padding modes other than zeros or ``padding="same"`` stay as they are.
    Returns the model, or its replacement when the model itself is a Linear or Conv2d.
    """
    if not isinstance(model, nn.Module):
        raise TypeError("patch: want an nn.Module, got %s" % type(model).__name__)
    root = _swap(model, device)
    if root is not None:
        return root
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            new = _swap(child, device)
            if new is not None:
                setattr(parent, name, new)
    return model
