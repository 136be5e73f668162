"""The command line: ``python3 -m sstemu profile|info``.

``profile`` runs a LLaMA preset's prefill and decode steps under ``offload`` and ``profile``,
prints the tables (per layer × phase, per phase, per shape) and writes profile.csv,
profile.json, trace.json (Perfetto), roofline.png and breakdown.png to ``--out``.
"""

import argparse
import json
import os
import sys
import time

import torch

from . import client, models
from .offload import offload
from .profiler import fmt_time, profile
from .wire import DeviceError


def _parser():
    p = argparse.ArgumentParser(prog="python3 -m sstemu", description="simulated accelerator timing for PyTorch models")
    sub = p.add_subparsers(dest="cmd", required=True)
    pr = sub.add_parser("profile", help="time a LLaMA preset's prefill and decode on the device")
    pr.add_argument("--model", default="tiny", choices=sorted(models.PRESETS), help="LLaMA preset (default tiny)")
    pr.add_argument("--prompt", type=int, default=16, help="prompt tokens (default 16)")
    pr.add_argument("--new", type=int, default=8, help="new tokens: one prefill, then new-1 decode steps (default 8)")
    pr.add_argument("--batch", type=int, default=1, help="sequences (default 1)")
    pr.add_argument("--timing-only", action="store_true",
                    help="time shapes only (TIME frames), model on the meta device: no weights, no numbers")
    pr.add_argument("--out", default=None, help="directory for the CSV, JSON, trace and PNGs (default: none written)")
    pr.add_argument("--top", type=int, default=12, help="rows of the per-shape table (default 12)")
    pr.add_argument("--seed", type=int, default=0, help="weights and prompt seed (default 0)")
    pr.add_argument("--addr", default=None, help="server HOST:PORT (default $SSTEMU_ADDR or %s)" % client.DEFAULT_ADDR)
    pr.add_argument("--no-plots", action="store_true", help="skip the PNGs (no matplotlib needed)")
    inf = sub.add_parser("info", help="print the server's INFO as JSON")
    inf.add_argument("--addr", default=None, help="server HOST:PORT (default $SSTEMU_ADDR or %s)" % client.DEFAULT_ADDR)
    return p


def main(argv=None):
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "info":
            print(json.dumps(client.connect(args.addr).info(), indent=1))
            return 0
        return _profile(args)
    except DeviceError as e:
        print("sstemu: %s" % e, file=sys.stderr)
        return 2
    except ValueError as e:
        print("sstemu: %s" % e, file=sys.stderr)
        return 2


def _profile(args):
    dev = client.connect(args.addr)
    cfg = models.LlamaConfig.preset(args.model)
    t0 = time.perf_counter()
    model = models.build_llama(cfg, seed=args.seed, device="meta" if args.timing_only else "cpu")
    with offload(dev, timing_only=args.timing_only), profile(dev) as prof:
        tokens = models.generate(model, args.prompt, args.new, batch=args.batch, seed=args.seed)
    wall = time.perf_counter() - t0
    t = prof.total()
    print("sstemu profile: %s, prompt %d + %d new tokens, batch %d, %s" % (
        args.model, args.prompt, args.new, args.batch, "timing only (meta device)" if args.timing_only else "numerics on the device"))
    info = prof.info()
    if info:
        print("device: %s" % ", ".join("%s=%s" % (k, info[k]) for k in ("model", "preset", "clock_hz") if k in info))
    print()
    print("Simulated time per layer and phase")
    print(prof.pivot("layer", "phase"))
    print()
    print("By phase")
    print(prof.table(group_by="phase"))
    print()
    print("By shape (top %d)" % args.top)
    print(prof.table(group_by="shape", top=args.top))
    print()
    if not args.timing_only:
        with torch.no_grad():
            ref = models.generate(model, args.prompt, args.new, batch=args.batch, seed=args.seed)
        same = bool(torch.equal(ref, tokens))
        print("generated tokens equal a CPU-only run: %s" % ("yes" if same else "NO"))
    print("%d device ops (%d untimed, %d errors), %d local ops, %d round trips; simulated %s; wall %.2f s (%.0f device ops/s)" % (
        t["ops"], t["untimed_ops"], t["errors"], t["local_ops"], t["round_trips"], fmt_time(t["sim_ns"]), wall,
        t["ops"] / wall if wall else 0))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        written = []
        for name, fn in (("profile.csv", prof.to_csv), ("profile.json", prof.to_json), ("trace.json", prof.export_chrome_trace)):
            fn(os.path.join(args.out, name))
            written.append(name)
        if not args.no_plots:
            from . import plot
            plot.roofline(prof, os.path.join(args.out, "roofline.png"), info=info)
            plot.breakdown(prof, os.path.join(args.out, "breakdown.png"))
            written += ["roofline.png", "breakdown.png"]
        print("wrote %s in %s" % (", ".join(written), args.out))
    if not args.timing_only and not same:
        return 1
    return 0
