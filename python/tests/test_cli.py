"""python3 -m sstemu: profile writes its tables and files; errors exit non-zero with a message."""

import csv
import json
import os
import subprocess
import sys

import pytest

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args):
    env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
    return subprocess.run([sys.executable, "-m", "sstemu", *args], capture_output=True, text=True, env=env, timeout=300)


def test_profile_tiny_with_numerics(server_addr, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib (python3-matplotlib) is optional; scripts/install-deps --test installs it")
    r = cli("profile", "--model", "tiny", "--prompt", "8", "--new", "3", "--out", str(tmp_path), "--addr", server_addr)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "Simulated time per layer and phase" in out and "layers.1" in out and "prefill" in out and "decode" in out
    assert "generated tokens equal a CPU-only run: yes" in out
    for f in ("profile.csv", "profile.json", "trace.json", "roofline.png", "breakdown.png"):
        assert os.path.getsize(tmp_path / f) > 0, f
    rows = list(csv.DictReader(open(tmp_path / "profile.csv")))
    assert len(rows) == 3 * 19  # one prefill and two decode steps of 2·9+1 device ops
    json.load(open(tmp_path / "trace.json"))


def test_profile_llama2_7b_timing_only(server_addr, tmp_path):
    r = cli("profile", "--model", "llama2-7b", "--prompt", "128", "--new", "2", "--timing-only", "--no-plots",
            "--out", str(tmp_path), "--addr", server_addr)
    assert r.returncode == 0, r.stderr
    doc = json.load(open(tmp_path / "profile.json"))
    assert doc["total"]["ops"] == 2 * (32 * 9 + 1)
    assert "layers.31" in r.stdout


def test_unreachable_server_exits_2_with_advice():
    r = cli("profile", "--addr", "127.0.0.1:1")
    assert r.returncode == 2
    assert "sstemu serve" in r.stderr


def test_info(server_addr):
    r = cli("info", "--addr", server_addr)
    assert r.returncode == 0, r.stderr
    assert isinstance(json.loads(r.stdout), dict)
