"""PNG plots of a profile: a roofline and a per-layer breakdown (needs matplotlib).

Drawn with matplotlib's object API on an Agg canvas, so nothing depends on a display or on
pyplot's global state.
"""

import math

try:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
except ImportError as e:  # matplotlib is an optional dependency
    raise ImportError("sstemu.plot needs matplotlib (Debian: apt-get install python3-matplotlib; "
                      "pip: pip install 'sstemu[plot]')") from e

from .profiler import fmt_time, layer_of

_BOUND_COLOURS = {"compute": "#1f77b4", "memory": "#ff7f0e"}


def _num(r, k):
    v = r.get(k)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def _info_number(info, names):
    for d in (info, info.get("model_params") if isinstance(info.get("model_params"), dict) else {},
              info.get("ceilings") if isinstance(info.get("ceilings"), dict) else {}):
        for k in names:
            v = d.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
                return float(v)
    return 0.0


def ceilings(info, records):
    """(peak FLOP/s, bytes/s, where from) of the device: INFO's ceilings at its clock, else the records'."""
    clock = _info_number(info, ("clock_hz",)) or max((_num(r, "clock_hz") for r in records), default=0)
    fpc = _info_number(info, ("peak_flops_per_cycle", "flops_per_cycle", "peak_flop_per_cycle"))
    bpc = _info_number(info, ("bytes_per_cycle", "peak_bytes_per_cycle", "memory_bytes_per_cycle"))
    if clock and fpc and bpc:
        return fpc * clock, bpc * clock, "INFO"
    # Derived from the records: the best FLOP per compute cycle and byte per memory cycle seen.
    fpc = max((_num(r, "flops") / _num(r, "compute_cycles") for r in records if _num(r, "compute_cycles")), default=0)
    bpc = max((_num(r, "memory_bytes") / _num(r, "memory_cycles") for r in records if _num(r, "memory_cycles")), default=0)
    return fpc * clock, bpc * clock, "records"


def _canvas(w, h):
    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def roofline(prof, path, info=None):
    """Writes a roofline PNG: each distinct op shape a dot at (FLOP/byte, achieved FLOP/s), by bound.

    ``info`` defaults to the profile device's INFO; its peak FLOP and bytes per cycle at its
    clock are the ceilings. Dot area grows with the shape's share of the simulated time.
    """
    recs = [r for r in prof.records if _num(r, "flops") > 0 and _num(r, "memory_bytes") > 0 and _num(r, "sim_ns") > 0]
    info = prof.info() if info is None else info
    peak, bw, src = ceilings(info, recs)
    pts = {}
    for r in recs:
        k = (r.get("op"), str(r.get("shapes")), str(r.get("params")))
        p = pts.setdefault(k, [0, 0, 0.0, r.get("bound", "compute")])
        p[0] += _num(r, "flops")
        p[1] += _num(r, "memory_bytes")
        p[2] += _num(r, "sim_ns")
    fig = _canvas(7.5, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    total = sum(p[2] for p in pts.values()) or 1.0
    xs = [p[0] / p[1] for p in pts.values()]
    for bound, colour in _BOUND_COLOURS.items():
        sel = [p for p in pts.values() if p[3] == bound]
        if sel:
            ax.scatter([p[0] / p[1] for p in sel], [p[0] / (p[2] * 1e-9) for p in sel],
                       s=[20 + 400 * p[2] / total for p in sel], c=colour, alpha=0.7, edgecolors="k", linewidths=0.4,
                       label="%s-bound (%d shapes)" % (bound, len(sel)), zorder=3)
    if peak and bw:
        ridge = peak / bw
        lo = min(xs + [ridge]) / 10
        hi = max(xs + [ridge]) * 10
        n = 200
        ai = [lo * (hi / lo) ** (i / (n - 1)) for i in range(n)]
        ax.plot(ai, [min(peak, bw * a) for a in ai], color="0.2", lw=1.5, zorder=2,
                label="ceilings (%s): %.3g TFLOP/s, %.0f GB/s" % (src, peak / 1e12, bw / 1e9))
        ax.axvline(ridge, color="0.6", ls=":", lw=1, zorder=1)
        ax.annotate("ridge %.3g FLOP/B" % ridge, (ridge, peak), textcoords="offset points", xytext=(5, -14), fontsize=8, color="0.3")
        ys = [p[0] / (p[2] * 1e-9) for p in pts.values()]
        ax.set_xlim(lo, hi)
        ax.set_ylim(min(ys + [bw * lo]) / 2, peak * 3)
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("achieved FLOP/s (simulated)")
    name = " ".join(str(info.get(k)) for k in ("model", "preset") if info.get(k))
    ax.set_title("Roofline%s: %d ops, %d distinct shapes" % (" — " + name if name else "", len(recs), len(pts)))
    ax.grid(True, which="major", ls="-", lw=0.3, alpha=0.5)
    if pts or (peak and bw):
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def _phase_colours(phases, ops):
    import matplotlib
    maps = ["Blues", "Oranges", "Greens", "Purples", "Reds", "Greys"]
    out = {}
    for i, ph in enumerate(phases):
        cmap = matplotlib.colormaps[maps[i % len(maps)]]
        for j, op in enumerate(ops):
            out[(ph, op)] = cmap(0.85 - 0.5 * j / max(len(ops), 1))
    return out


def breakdown(prof, path):
    """Writes a stacked bar PNG of simulated time per layer, split by phase and op kind."""
    recs = prof.records
    layers, cells, phases, ops = {}, {}, {}, {}
    for r in recs:
        layer = layer_of(r.get("module", ""))
        ph = r.get("phase") or "(no phase)"
        if r.get("pass") == "backward":
            ph += " backward"
        op = r.get("op", "?")
        layers.setdefault(layer, None)
        phases.setdefault(ph, None)
        ops.setdefault(op, None)
        cells[(layer, ph, op)] = cells.get((layer, ph, op), 0.0) + _num(r, "sim_ns")
    names = list(layers)
    peak = max((sum(v for (l, _, _), v in cells.items() if l == n) for n in names), default=0.0)
    unit, div = next(((u, d) for u, d in (("s", 1e9), ("ms", 1e6), ("us", 1e3)) if peak >= d), ("ns", 1.0))
    width = min(max(6.0, 0.22 * len(names) + 2.5), 24)
    fig = _canvas(width, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    colours = _phase_colours(list(phases), list(ops))
    bottom = [0.0] * len(names)
    xs = list(range(len(names)))
    for ph in phases:
        for op in ops:
            vals = [cells.get((n, ph, op), 0.0) / div for n in names]
            if any(vals):
                ax.bar(xs, vals, bottom=bottom, color=colours[(ph, op)], edgecolor="white", linewidth=0.3,
                       label="%s · %s" % (ph, op), width=0.8)
                bottom = [b + v for b, v in zip(bottom, vals)]
    labels = [n.split(".")[-1] if n.split(".")[-1].isdigit() else n for n in names]
    step = max(1, math.ceil(len(names) / 40))
    ax.set_xticks(xs[::step])
    ax.set_xticklabels(labels[::step], rotation=90 if any(len(lb) > 3 for lb in labels) else 0, fontsize=8)
    prefix = {n.rsplit(".", 1)[0] for n in names if "." in n and n.split(".")[-1].isdigit()}
    ax.set_xlabel("layer" + (" (%s.N)" % ", ".join(sorted(prefix)) if prefix else ""))
    ax.set_ylabel("simulated time (%s)" % unit)
    total = sum(cells.values())
    ax.set_title("Simulated time per layer: %s in %d device ops" % (fmt_time(total), len(recs)))
    ax.grid(True, axis="y", lw=0.3, alpha=0.5)
    ax.set_axisbelow(True)
    if cells:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_xlim(-0.6, len(names) - 0.4)
    fig.tight_layout()
    fig.savefig(path)
    return path
