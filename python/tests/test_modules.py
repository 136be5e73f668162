"""DeviceGEMM, DeviceMatmul, DeviceConv2d(Function), DeviceLinear and patch: forward and
backward against torch on the CPU (float64 references, tolerance 1e-5·K), backward timed."""

import pytest
import torch
from torch import nn

import sstemu
from conftest import assert_close


def leaf(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(True)


def grads64(fn, *xs):
    """Output and input gradients of fn on float64 copies (the reference), for d(sum(out·g))."""
    xd = [x.detach().double().requires_grad_(True) for x in xs]
    out = fn(*xd)
    g = torch.linspace(-1, 1, out.numel(), dtype=torch.float64).reshape(out.shape)
    (out * g).sum().backward()
    return out.detach(), [x.grad for x in xd], g.float()


def test_device_gemm_forward_backward(dev):
    a, b = leaf(5, 7, seed=1), leaf(7, 3, seed=2)
    want, (ga, gb), g = grads64(torch.mm, a, b)
    with sstemu.profile() as prof:
        c = sstemu.DeviceGEMM.apply(a, b)
        (c * g).sum().backward()
    assert_close(c.detach(), want, 7, "C")
    assert_close(a.grad, ga, 3, "dA")
    assert_close(b.grad, gb, 5, "dB")
    passes = [r["pass"] for r in prof.records]
    assert passes == ["forward", "backward", "backward"]
    assert [r["shapes"] for r in prof.records] == [[[5, 7], [7, 3]], [[5, 3], [3, 7]], [[7, 5], [5, 3]]]


@pytest.mark.parametrize("sa,sb", [((3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 6)), ((4,), (4, 5)), ((3, 4), (4,)), ((6, 2, 3), (3, 2))])
def test_device_matmul_forward_backward(dev, sa, sb):
    a, b = leaf(*sa, seed=3), leaf(*sb, seed=4)
    want, (ga, gb), g = grads64(torch.matmul, a, b)
    c = sstemu.DeviceMatmul.apply(a, b)
    (c * g).sum().backward()
    k = sa[-1]
    assert_close(c.detach(), want, k, "C")
    assert_close(a.grad, ga, 64, "dA")
    assert_close(b.grad, gb, 64, "dB")


@pytest.mark.parametrize("xs,ws,kw", [
    ((2, 3, 8, 8), (4, 3, 3, 3), dict(stride=1, padding=1, dilation=1, groups=1)),
    ((1, 4, 9, 7), (6, 2, 3, 2), dict(stride=2, padding=1, dilation=1, groups=2)),
    ((2, 2, 10, 11), (3, 2, 3, 3), dict(stride=(2, 1), padding=(0, 2), dilation=2, groups=1)),
])
def test_device_conv2d_function_forward_backward(dev, xs, ws, kw):
    x, w = leaf(*xs, seed=5), leaf(*ws, seed=6)
    want, (gx, gw), g = grads64(lambda a, b: torch.nn.functional.conv2d(a, b, None, **kw), x, w)
    with sstemu.profile() as prof:
        y = sstemu.DeviceConv2dFunction.apply(x, w, kw["stride"], kw["padding"], kw["dilation"], kw["groups"])
        (y * g).sum().backward()
    kk = ws[1] * ws[2] * ws[3]
    assert_close(y.detach(), want, kk, "y")
    assert_close(x.grad, gx, 4 * kk, "dX")
    assert_close(w.grad, gw, 4 * x.shape[0] * y.shape[2] * y.shape[3], "dW")
    assert [r["op"] for r in prof.records] == ["conv", "matmul", "matmul"]
    assert [r["pass"] for r in prof.records] == ["forward", "backward", "backward"]


def test_device_linear_matches_nn_linear(dev):
    torch.manual_seed(0)
    ref = nn.Linear(12, 5)
    lin = sstemu.DeviceLinear(12, 5)
    with torch.no_grad():
        lin.weight.copy_(ref.weight)
        lin.bias.copy_(ref.bias)
    assert lin.state_dict().keys() == ref.state_dict().keys()
    x = leaf(2, 3, 12, seed=7)
    xr = x.detach().clone().requires_grad_(True)
    y, yr = lin(x), ref(xr)
    assert y.shape == (2, 3, 5)
    assert_close(y.detach(), yr.detach().double(), 12, "y")
    y.sum().backward()
    yr.sum().backward()
    assert_close(x.grad, xr.grad.double(), 5, "dX")
    assert_close(lin.weight.grad, ref.weight.grad.double(), 6, "dW")
    assert_close(lin.bias.grad, ref.bias.grad.double(), 6, "db")
    assert sstemu.DeviceLinear(3, 2, bias=False).bias is None


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 10))

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.head(x)


def test_patch_shares_weights_and_matches(dev):
    torch.manual_seed(1)
    net = Net()
    x = torch.randn(2, 3, 8, 8)
    want = net(x)
    want.sum().backward()
    ref_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    params = list(net.parameters())
    sstemu.patch(net)
    assert isinstance(net.conv1, sstemu.DeviceConv2d) and isinstance(net.head[1], sstemu.DeviceLinear)
    assert all(a is b for a, b in zip(params, net.parameters()))
    with sstemu.profile() as prof:
        got = net(x)
        got.sum().backward()
    assert_close(got.detach(), want.detach().double(), 128, "out")
    for p, g in zip(net.parameters(), ref_grads):
        assert_close(p.grad, g.double(), 512, "grad")
    mods = {r["module"] for r in prof.records}
    assert {"conv1", "conv2", "head.1", "head.3"} <= mods
    fwd = [r for r in prof.records if r["pass"] == "forward"]
    assert len(fwd) == 4
    assert all(r["module"] in mods for r in prof.records if r["pass"] == "backward")


def test_patch_root_module(dev):
    lin = nn.Linear(3, 2)
    new = sstemu.patch(lin)
    assert isinstance(new, sstemu.DeviceLinear) and new.weight is lin.weight
    with pytest.raises(TypeError):
        sstemu.patch("model")


def test_patch_tiny_llama_and_mlp_generate_the_same(dev):
    from sstemu import models
    m = models.build_llama("tiny", seed=3)
    want = models.generate(m, 9, 4)
    sstemu.patch(m)
    assert sum(isinstance(x, sstemu.DeviceLinear) for x in m.modules()) == 7 * m.cfg.n_layers + 1
    with sstemu.profile() as prof:
        got = models.generate(m, 9, 4)
    assert torch.equal(got, want)
    assert len(prof.records) == 4 * (7 * m.cfg.n_layers + 1)  # the attention matmuls are not Linears
    torch.manual_seed(4)
    mlp = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    x = torch.randn(6, 10)
    want = mlp(x)
    assert_close(sstemu.patch(mlp)(x).detach(), want.detach().double(), 20, "mlp")
