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


def roofline_points(prof, info=None):
    """The roofline's data: (points, peak FLOP/s, bytes/s, where from, ops left out).

    One point per distinct op shape (dict: op, shapes, flops, bytes, sim_ns, bound, ai,
    achieved, ceiling, above). The server's roofline model rounds cycles down (the tutorial's
    ⌊FLOPs / 64⌋ and ⌊bytes·1.41 / 900⌋), so a small op's simulated time can be shorter than
    the ceilings allow and its achieved FLOP/s lie above them: ``above`` marks those, and
    ``ceiling`` is the most the ceilings allow at the point's intensity. Ops the model gave 0
    simulated ns (rounded down to 0 cycles) have no achieved rate; they are counted in the
    last value, as are untimed ops.
    """
    info = prof.info() if info is None else info
    all_recs = prof.records
    recs = [r for r in all_recs if _num(r, "flops") > 0 and _num(r, "memory_bytes") > 0 and _num(r, "sim_ns") > 0]
    peak, bw, src = ceilings(info, recs)
    pts = {}
    for r in recs:
        k = (r.get("op"), str(r.get("shapes")), str(r.get("params")))
        p = pts.get(k)
        if p is None:
            p = pts[k] = {"op": r.get("op"), "shapes": r.get("shapes"), "flops": 0, "bytes": 0, "sim_ns": 0.0,
                          "bound": r.get("bound", "compute"), "ops": 0}
        p["flops"] += _num(r, "flops")
        p["bytes"] += _num(r, "memory_bytes")
        p["sim_ns"] += _num(r, "sim_ns")
        p["ops"] += 1
    for p in pts.values():
        p["ai"] = p["flops"] / p["bytes"]
        p["achieved"] = p["flops"] / (p["sim_ns"] * 1e-9)
        p["ceiling"] = min(peak, bw * p["ai"]) if peak and bw else 0.0
        p["above"] = bool(p["ceiling"]) and p["achieved"] > p["ceiling"] * (1 + 1e-9)
    return list(pts.values()), peak, bw, src, len(all_recs) - len(recs)


def roofline(prof, path, info=None):
    """Writes a roofline PNG: each distinct op shape a dot at (FLOP/byte, achieved FLOP/s), by bound.

    ``info`` defaults to the profile device's INFO; its peak FLOP and bytes per cycle at its
    clock are the ceilings. Dot area grows with the shape's share of the simulated time. Shapes
    whose simulated time the model rounded below what the ceilings allow (see
    :func:`roofline_points`) are drawn hollow on the ceiling, and the legend says by how much
    they were above it.
    """
    info = prof.info() if info is None else info
    pts, peak, bw, src, left_out = roofline_points(prof, info)
    fig = _canvas(7.5, 5.2)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    total = sum(p["sim_ns"] for p in pts) or 1.0
    xs = [p["ai"] for p in pts]
    for bound, colour in _BOUND_COLOURS.items():
        sel = [p for p in pts if p["bound"] == bound and not p["above"]]
        if sel:
            ax.scatter([p["ai"] for p in sel], [p["achieved"] for p in sel],
                       s=[20 + 400 * p["sim_ns"] / total for p in sel], c=colour, alpha=0.7, edgecolors="k",
                       linewidths=0.4, label="%s-bound (%d shapes)" % (bound, len(sel)), zorder=3)
        up = [p for p in pts if p["bound"] == bound and p["above"]]
        if up:
            worst = max(p["achieved"] / p["ceiling"] for p in up)
            ax.scatter([p["ai"] for p in up], [p["ceiling"] for p in up],
                       s=[20 + 400 * p["sim_ns"] / total for p in up], facecolors="none", edgecolors=colour,
                       linewidths=1.2, zorder=4,
                       label="%s-bound, drawn on the ceiling (%d shapes, up to %.2f× above it:\n"
                             "the model rounds cycles down)" % (bound, len(up), worst))
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
        ys = [min(p["achieved"], p["ceiling"]) for p in pts]
        ax.set_xlim(lo, hi)
        ax.set_ylim(min(ys + [bw * lo]) / 2, peak * 3)
    ax.set_xlabel("arithmetic intensity (FLOP / byte moved)")
    ax.set_ylabel("achieved FLOP/s (simulated)")
    name = " ".join(str(info.get(k)) for k in ("model", "preset") if info.get(k))
    ax.set_title("Roofline%s: %d ops, %d distinct shapes" % (" — " + name if name else "", sum(p["ops"] for p in pts),
                                                          len(pts)))
    if left_out:
        ax.text(0.01, 0.99, "%d ops not shown (untimed, or 0 simulated cycles after rounding down)" % left_out,
                transform=ax.transAxes, fontsize=7, va="top", color="0.3")
    ax.grid(True, which="major", ls="-", lw=0.3, alpha=0.5)
    if pts or (peak and bw):
        ax.legend(loc="lower right", fontsize=7)
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
