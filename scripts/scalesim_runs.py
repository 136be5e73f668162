#!/usr/bin/python3
"""Run GEMMs through a SCALE-Sim v2 checkout and print one CSV row per run.

This script contains no SCALE-Sim code: it writes a config and a one-layer GEMM topology
for each run, drives the checkout given by --scalesim (put on sys.path), and reads back
its COMPUTE_REPORT.csv and DETAILED_ACCESS_REPORT.csv. The rows are the test data of
pkg/perfmodel (see pkg/perfmodel/testdata/README.md).

usage: scalesim_runs.py --scalesim DIR RUN...
  RUN = M,N,K,rows,cols,dataflow,ifmap_kb,filter_kb,ofmap_kb,mode[,bandwidth]
  mode = CALC or USER (USER needs the DRAM bandwidth in words per cycle)
"""
import argparse
import csv
import io
import os
import sys
import tempfile
import time
import contextlib

FIELDS = ["m", "n", "k", "rows", "cols", "dataflow", "ifmap_kb", "filter_kb", "ofmap_kb",
          "mode", "bandwidth", "total_cycles", "stall_cycles",
          "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
          "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes", "wall_seconds"]


def report(path):
    with open(path) as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f)]
    return dict(zip(rows[0], rows[1]))


def run(scalesim_cls, spec, tmp):
    parts = spec.split(",")
    m, n, k, rows, cols = (int(x) for x in parts[:5])
    df, ikb, fkb, okb, mode = parts[5], int(parts[6]), int(parts[7]), int(parts[8]), parts[9]
    bw = int(parts[10]) if mode == "USER" else 10
    name = "run"
    cfg = os.path.join(tmp, "run.cfg")
    with open(cfg, "w") as f:
        f.write(f"""[general]
run_name = {name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: {ikb}
FilterSramSzkB: {fkb}
OfmapSramSzkB: {okb}
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth : {bw}
Dataflow : {df}
MemoryBanks: 1

[run_presets]
InterfaceBandwidth: {mode}
""")
    topo = os.path.join(tmp, "gemm.csv")
    with open(topo, "w") as f:
        f.write("Layer Name, M, N, K,\n")
        f.write(f"gemm, {m}, {n}, {k},\n")
    out = os.path.join(tmp, "out")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        s = scalesim_cls(save_disk_space=True, verbose=False, config=cfg, topology=topo,
                         input_type_gemm=True)
        s.run_scale(top_path=out)
    wall = time.perf_counter() - start
    comp = report(os.path.join(out, name, "COMPUTE_REPORT.csv"))
    det = report(os.path.join(out, name, "DETAILED_ACCESS_REPORT.csv"))
    as_int = lambda v: int(float(v))
    return [m, n, k, rows, cols, df, ikb, fkb, okb, mode, bw if mode == "USER" else 0,
            as_int(comp["Total Cycles"]), as_int(comp["Stall Cycles"]),
            as_int(det["SRAM IFMAP Reads"]), as_int(det["SRAM Filter Reads"]),
            as_int(det["SRAM OFMAP Writes"]), as_int(det["DRAM IFMAP Reads"]),
            as_int(det["DRAM Filter Reads"]), as_int(det["DRAM OFMAP Writes"]),
            f"{wall:.3f}"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scalesim", required=True, help="SCALE-Sim v2 checkout (the folder holding scalesim/)")
    ap.add_argument("--header", action="store_true", help="print the CSV header first")
    ap.add_argument("runs", nargs="*")
    a = ap.parse_args()
    sys.path.insert(0, a.scalesim)
    from scalesim.scale_sim import scalesim
    w = csv.writer(sys.stdout, lineterminator="\n")
    if a.header:
        w.writerow(FIELDS)
    for spec in a.runs:
        with tempfile.TemporaryDirectory() as tmp:
            w.writerow(run(scalesim, spec, tmp))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
