"""profile: module and phase attribution, totals, tables, CSV/JSON/trace files, the plots, and
a meta-device LLaMA-2-7B timing-only prefill whose GEMM count and shapes follow its config."""

import collections
import csv
import json

import pytest
import torch

import sstemu
from sstemu import models


@pytest.fixture(scope="module")
def tiny_prof(dev):
    m = models.build_llama("tiny")
    with sstemu.offload(), sstemu.profile() as prof:
        models.generate(m, 10, 4)
    return m.cfg, prof


def test_phase_and_module_attribution(tiny_prof):
    cfg, prof = tiny_prof
    recs = prof.records
    per = cfg.gemms_per_forward()
    phases = collections.Counter(r["phase"] for r in recs)
    assert phases == {"prefill": per, "decode": 3 * per}
    mods = collections.Counter(r["module"] for r in recs if r["phase"] == "prefill")
    for i in range(cfg.n_layers):
        for name in ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
                     "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"):
            assert mods["layers.%d.%s" % (i, name)] == 1
        assert mods["layers.%d.attention" % i] == 2  # the two attention bmm's
    assert mods["output"] == 1
    assert all(r["pass"] == "forward" for r in recs)


def test_total_sums_records(tiny_prof):
    _, prof = tiny_prof
    t = prof.total()
    recs = prof.records
    assert t["ops"] == len(recs) == t["offloaded_ops"]
    assert t["cycles"] == sum(r["cycles"] for r in recs)
    assert t["flops"] == sum(r["flops"] for r in recs)
    assert t["bytes"] == sum(r["memory_bytes"] for r in recs)
    assert t["sim_ns"] == pytest.approx(sum(r["sim_ns"] for r in recs))
    assert t["untimed_ops"] == 0 and t["fallback_ops"] == 0
    assert t["round_trips"] >= len(recs)
    assert t["local_ops"] > 0 and t["wall_time_s"] > 0
    assert 0 < t["utilization"] <= 1


@pytest.mark.parametrize("group_by", sstemu.profiler.GROUPS)
def test_tables(tiny_prof, group_by):
    _, prof = tiny_prof
    groups = prof.groups(group_by)
    lines = prof.table(group_by=group_by).splitlines()
    head = lines[1]
    assert head.split()[:4] == [group_by.capitalize(), "Calls", "Sim", "total"]
    end = head.index("Calls") + len("Calls")  # the Calls column is right-aligned to here
    body = lines[3:3 + len(groups)]
    calls = [int(row[:end].split()[-1]) for row in body]
    assert sum(calls) == len(prof.records) == sum(a.calls for a in groups.values())
    assert lines[3 + len(groups)].startswith("---") and "Simulated total" in lines[-1]
    top = prof.table(group_by=group_by, top=2).splitlines()
    assert len(top) == len(lines) - len(groups) + min(2, len(groups))


def test_table_sorts_by_sim_time(tiny_prof):
    _, prof = tiny_prof
    g = prof.groups("shape")
    order = sorted(g, key=lambda k: -g[k].sim_ns)
    text = prof.table(group_by="shape")
    positions = [text.index(k) for k in order[:3]]
    assert positions == sorted(positions)
    with pytest.raises(ValueError):
        prof.table(group_by="colour")
    with pytest.raises(ValueError):
        prof.table(sort_by="colour")


def test_pivot(tiny_prof):
    _, prof = tiny_prof
    text = prof.pivot("layer", "phase")
    assert "prefill" in text and "decode" in text and "layers.0" in text and "output" in text


def test_csv_and_json(tiny_prof, tmp_path):
    _, prof = tiny_prof
    prof.to_csv(tmp_path / "p.csv")
    prof.to_json(tmp_path / "p.json")
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    recs = prof.records
    assert len(rows) == len(recs)
    assert [int(r["cycles"]) for r in rows] == [r["cycles"] for r in recs]
    assert json.loads(rows[0]["shapes"]) == recs[0]["shapes"]
    doc = json.load(open(tmp_path / "p.json"))
    assert doc["total"]["ops"] == len(recs)
    assert [r["cycles"] for r in doc["records"]] == [r["cycles"] for r in recs]
    assert not any(k.startswith("_") for r in doc["records"] for k in r)


def check_trace(doc, recs):
    """The trace loads as Chrome/Perfetto JSON: integer pid/tid, every X has ts and dur ≥ 0,
    the spans on each track nest, and the ops' dur sum to the records' simulated time."""
    evs = doc["traceEvents"]
    assert evs
    for e in evs:
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert e["ph"] in ("X", "M")
        if e["ph"] == "X":
            assert isinstance(e["ts"], (int, float)) and isinstance(e["dur"], (int, float)) and e["dur"] >= 0
    tracks = collections.defaultdict(list)
    for e in evs:
        if e["ph"] == "X":
            tracks[(e["pid"], e["tid"])].append(e)
    eps = 1e-6
    for key, es in tracks.items():
        es.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack = []
        for e in es:
            while stack and stack[-1] <= e["ts"] + eps:
                stack.pop()
            if stack:
                assert e["ts"] + e["dur"] <= stack[-1] + eps, "span %s overlaps its parent on track %s" % (e["name"], key)
            stack.append(e["ts"] + e["dur"])
    ops = [e for e in evs if e["ph"] == "X" and e["tid"] == sstemu.profiler.TID_OPS]
    assert len(ops) == len(recs)
    assert sum(e["dur"] for e in ops) == pytest.approx(sum(r["sim_ns"] for r in recs) / 1e3, rel=1e-9)


def test_chrome_trace(tiny_prof, tmp_path):
    _, prof = tiny_prof
    prof.export_chrome_trace(tmp_path / "t.json")
    doc = json.load(open(tmp_path / "t.json"))
    check_trace(doc, prof.records)
    names = {e["name"] for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == sstemu.profiler.TID_PHASES}
    assert names == {"prefill", "decode"}
    mods = {e["name"] for e in doc["traceEvents"] if e["ph"] == "X" and e["tid"] == sstemu.profiler.TID_MODULES}
    assert {"Llama", "layers.0", "layers.0.attention", "layers.0.attention.wq", "output"} <= mods


def test_trace_of_training_nests(dev, tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    with sstemu.offload(), sstemu.profile() as prof:
        with sstemu.region("step"):
            model(torch.randn(3, 6)).sum().backward()
    prof.export_chrome_trace(tmp_path / "t.json")
    check_trace(json.load(open(tmp_path / "t.json")), prof.records)
    assert {r["pass"] for r in prof.records} == {"forward", "backward"}
    assert {r["phase"] for r in prof.records} == {"step"}


def test_region_nesting_and_bad_names(dev):
    with sstemu.profile() as prof:
        with sstemu.region("a"):
            with sstemu.region("b"):
                dev.gemm(torch.ones(1, 1), torch.ones(1, 1))
    assert prof.records[0]["phase"] == "a/b"
    with pytest.raises(ValueError):
        with sstemu.region(""):
            pass


def test_llama2_7b_meta_prefill_gemm_count(dev):
    cfg = models.LlamaConfig.preset("llama2-7b")
    m = models.build_llama(cfg, device="meta")
    prompt = 2048
    m.setup_cache(1, prompt)
    with sstemu.offload(timing_only=True), sstemu.profile() as prof:
        with sstemu.region("prefill"), torch.no_grad():
            logits = m(torch.zeros(1, prompt, dtype=torch.long, device="meta"))
    assert logits.shape == (1, cfg.vocab_size) and logits.device.type == "meta"
    recs = prof.records
    # per layer: q, k, v, o projections, gate/up/down of the MLP, and the two attention products
    assert len(recs) == cfg.n_layers * 9 + 1 == cfg.gemms_per_forward()
    shapes = collections.Counter(sstemu.profiler.shape_key(r) for r in recs)
    d, h, hd, L = cfg.dim, cfg.hidden_dim, cfg.head_dim, cfg.n_layers
    assert shapes == {
        "gemm %dx%d @ %dx%d" % (prompt, d, d, d): 4 * L,  # wq, wk, wv, wo (no GQA in 7B)
        "gemm %dx%d @ %dx%d" % (prompt, d, d, h): 2 * L,  # w1, w3
        "gemm %dx%d @ %dx%d" % (prompt, h, h, d): L,  # w2
        "matmul %dx%dx%d @ %dx%dx%d" % (cfg.n_heads, prompt, hd, cfg.n_heads, hd, prompt): L,  # q·kᵀ
        "matmul %dx%dx%d @ %dx%dx%d" % (cfg.n_heads, prompt, prompt, cfg.n_heads, prompt, hd): L,  # p·v
        "gemm 1x%d @ %dx%d" % (d, d, cfg.vocab_size): 1,  # the head, last position only
    }
    assert all(r["timed"] for r in recs)
    t = prof.total()
    assert t["flops"] == sum(2 * r["shapes"][0][-2] * r["shapes"][1][-1] * r["shapes"][0][-1] *
                             (r["shapes"][0][0] if r["op"] == "matmul" else 1) for r in recs)
    assert t["round_trips"] <= 2


def test_plots(tiny_prof, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (python3-matplotlib) is optional; scripts/install-deps --test installs it")
    from sstemu import plot
    _, prof = tiny_prof
    for fn in (plot.roofline, plot.breakdown):
        p = tmp_path / (fn.__name__ + ".png")
        fn(prof, p)
        data = open(p, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10000


def test_roofline_is_honest_about_rounded_down_cycles(dev, tmp_path):
    """3x5x7 is 210 FLOPs: the model's ⌊210/64⌋ = 3 cycles give 70 FLOP/cycle, above the
    64 peak; it is marked and drawn on the ceiling. 1x1x1 rounds to 0 cycles: left out."""
    pytest.importorskip("matplotlib", reason="matplotlib (python3-matplotlib) is optional")
    from sstemu import plot
    with sstemu.profile(dev) as prof:
        dev.time([{"op": "gemm", "M": m, "N": n, "K": k} for m, n, k in ((3, 7, 5), (256, 256, 256), (1, 1, 1))])
    pts, peak, bw, src, left_out = plot.roofline_points(prof)
    assert src == "INFO" and left_out == 1
    by_m = {p["shapes"][0][0]: p for p in pts}
    small, big = by_m[3], by_m[256]
    clock = dev.info()["clock_hz"]
    assert small["achieved"] == pytest.approx(210 / 3 * clock) and small["ceiling"] <= peak
    assert small["above"] and small["achieved"] / small["ceiling"] == pytest.approx(70 / 64)
    assert not big["above"] and big["achieved"] == pytest.approx(peak)
    assert all(p["achieved"] <= p["ceiling"] * (1 + 1e-9) for p in pts if not p["above"])
    out = plot.roofline(prof, tmp_path / "r.png")
    assert open(out, "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"


def test_record_cycles_equal_sstemu_estimate(tiny_prof, sstemu_bin):
    """Every GEMM record of a run has the cycles `sstemu estimate` prints for its shape."""
    import os
    import subprocess
    if os.environ.get("SSTEMU_TEST_ADDR"):
        pytest.skip("the external server's model flags are unknown; estimate needs the same flags")
    _, prof = tiny_prof
    gemms = {}
    for r in prof.records:
        if r["op"] == "gemm":
            (m, k), (_, n) = r["shapes"]
            gemms.setdefault("%dx%dx%d" % (m, n, k), set()).add(r["cycles"])
    out = subprocess.run([sstemu_bin, "estimate", "--json", *gemms], capture_output=True, text=True, check=True).stdout
    est = json.loads(out)
    assert len(est) == len(gemms)
    for shape, e in zip(gemms, est):
        assert gemms[shape] == {e["cycles"]}, shape
