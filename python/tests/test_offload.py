"""offload: unmodified models (an MLP, a small CNN, the tiny LLaMA) give the same outputs and
gradients with their products on the device; what is not float32 or not a product runs locally."""

import collections

import pytest
import torch
from torch import nn

import sstemu
from sstemu import models
from conftest import assert_close


def mlp():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(20, 32), nn.GELU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2), nn.ReLU())
        self.classifier = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def run(model, x):
    x = x.detach().clone().requires_grad_(True)
    y = model(x)
    y.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return y.detach(), x.grad, grads


@pytest.mark.parametrize("make,shape,k", [(mlp, (7, 20), 32), (SmallCNN, (2, 3, 16, 16), 1024)])
def test_offload_training_step_matches(dev, make, shape, k):
    model = make()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    want = run(model, x)
    with sstemu.offload() as mode, sstemu.profile() as prof:
        got = run(model, x)
    assert_close(got[0], want[0].double(), k, "output")
    assert_close(got[1], want[1].double(), k, "input grad")
    for g, w in zip(got[2], want[2]):
        assert_close(g, w.double(), 4 * k, "param grad")
    recs = prof.records
    # one device op per intercepted aten op, except convolution_backward: two (dX and dW)
    conv_bwd = sum(1 for r in recs if r["aten"] == "aten.convolution_backward")
    assert mode.offloaded == len(recs) - conv_bwd // 2 > 0
    assert {r["pass"] for r in recs} == {"forward", "backward"}
    # backward ops belong to the module whose output gradient arrived last
    assert {r["module"] for r in recs if r["pass"] == "backward"} == {r["module"] for r in recs if r["pass"] == "forward"}
    assert all(r["timed"] for r in recs)
    assert prof.total()["local_ops"] == sum(mode.local.values()) > 0
    if make is SmallCNN:
        assert {r["aten"] for r in recs} >= {"aten.convolution", "aten.convolution_backward", "aten.addmm"}
        fwd = [r["module"] for r in recs if r["pass"] == "forward"]
        assert fwd == ["features.0", "features.4", "classifier"]


def test_offload_tiny_llama_generate_matches(dev):
    m = models.build_llama("tiny", seed=1)
    want = models.generate(m, 12, 5, batch=2)
    with torch.no_grad():
        want_logits = m(want[:, :12], 0, all_logits=True)
    m.setup_cache(2, 20)
    with sstemu.offload() as mode:
        got = models.generate(m, 12, 5, batch=2)
        with torch.no_grad():
            m.setup_cache(2, 20)
            logits = m(want[:, :12], 0, all_logits=True)
    assert torch.equal(got, want)
    assert_close(logits, want_logits.double(), 256, "logits")
    cfg = m.cfg
    assert mode.offloaded == cfg.gemms_per_forward() * 5 + cfg.gemms_per_forward()


def test_non_float32_runs_locally_and_is_counted(dev):
    model = mlp().double()
    x = torch.randn(4, 20, dtype=torch.float64)
    want = model(x)
    with sstemu.offload() as mode, sstemu.profile() as prof:
        got = model(x)
    assert torch.equal(got, want)
    assert mode.offloaded == 0 and prof.records == []
    assert prof.local_ops.get("aten.addmm") == 3


@pytest.mark.parametrize("timing_only", [False, True])
def test_empty_tensors_run_locally_and_are_counted(dev, timing_only):
    """The device needs every dimension >= 1; torch's empty products run locally instead."""
    x, w = torch.randn(0, 4), torch.randn(4, 2)
    xb, wb = torch.randn(2, 0, 4), torch.randn(2, 4, 3)
    xc, wc = torch.randn(0, 2, 4, 4), torch.randn(3, 2, 3, 3)
    with sstemu.offload(timing_only=timing_only) as mode, sstemu.profile() as prof:
        got = (x @ w, xb.bmm(wb), torch.nn.functional.conv2d(xc, wc), torch.randn(3, 4) @ w)
    assert [tuple(t.shape) for t in got] == [(0, 2), (2, 0, 3), (0, 3, 2, 2), (3, 2)]
    assert mode.offloaded == 1 and len(prof.records) == 1
    assert prof.local_ops.get("aten.mm") == 1 and prof.local_ops.get("aten.bmm") == 1
    assert prof.local_ops.get("aten.convolution") == 1


def test_patched_modules_are_not_intercepted_twice(dev):
    model = sstemu.patch(mlp())
    with sstemu.offload() as mode, sstemu.profile() as prof:
        model(torch.randn(5, 20))
    assert mode.offloaded == 0
    assert len(prof.records) == 3
    assert [r["aten"] for r in prof.records] == [None, None, None]


def test_timing_only_on_cpu_computes_locally_and_times_in_few_frames(dev):
    model = SmallCNN()
    x = torch.randn(2, 3, 16, 16)
    want = run(model, x)
    dev.info()  # the limits that size TIME frames are asked once per Device
    before = dev.round_trips
    with sstemu.offload(timing_only=True) as mode, sstemu.profile() as prof:
        got = run(model, x)
    assert torch.equal(got[0], want[0])
    recs = prof.records
    conv_bwd = sum(1 for r in recs if r["aten"] == "aten.convolution_backward")
    assert mode.offloaded == len(recs) - conv_bwd // 2 > 0
    assert dev.round_trips - before == 1
    assert all("pending" not in r and r["timed"] for r in recs)
    # the same shapes with numerics give the same cycles
    with sstemu.offload(), sstemu.profile() as prof2:
        run(model, x)
    assert [r["cycles"] for r in recs] == [r["cycles"] for r in prof2.records]


def test_timing_only_on_meta(dev):
    lin = nn.Linear(4096, 4096, device="meta")
    with sstemu.offload(timing_only=True), sstemu.profile() as prof:
        y = lin(torch.empty(8, 4096, device="meta"))
    assert y.device.type == "meta" and y.shape == (8, 4096)
    (r,) = prof.records
    assert r["op"] == "gemm" and r["shapes"] == [[8, 4096], [4096, 4096]] and r["flops"] == 2 * 8 * 4096 * 4096


def test_meta_without_timing_only_runs_locally(dev):
    lin = nn.Linear(8, 8, device="meta")
    with sstemu.offload() as mode:
        y = lin(torch.empty(2, 8, device="meta"))
    assert y.device.type == "meta" and mode.offloaded == 0 and mode.local.get("aten.addmm") == 1


def test_offload_rejects_non_device():
    with pytest.raises(TypeError):
        sstemu.offload(device="127.0.0.1:9999")


def test_patched_model_under_timing_only_is_timed_not_computed(dev):
    """Device modules inside offload(timing_only=True) leave their products to it: a patched
    model on the meta device is timed like the unpatched one."""
    cfg = models.LlamaConfig.preset("tiny")
    counts = []
    for patched in (False, True):
        m = models.build_llama(cfg, device="meta")
        if patched:
            sstemu.patch(m)
        with sstemu.offload(timing_only=True), sstemu.profile() as prof:
            models.generate(m, 8, 3)
        counts.append([(r["module"], r["shapes"], r["cycles"]) for r in prof.records])
    assert counts[0] == counts[1] and len(counts[0]) == 3 * cfg.gemms_per_forward()
    # and a training step of a patched MLP on the CPU: outputs exact, forward and backward timed
    model = sstemu.patch(mlp())
    x = torch.randn(4, 20)
    want = mlp()(x)
    with sstemu.offload(timing_only=True), sstemu.profile() as prof:
        y = model(x)
        y.sum().backward()
    assert torch.equal(y.detach(), want.detach())
    # dW of each layer, dX of all but the first (x does not require grad)
    assert collections.Counter(r["pass"] for r in prof.records) == {"forward": 3, "backward": 5}
