"""``with sstemu.profile() as prof:`` collects one record per device op, attributed.

Each record is the server's timing record plus ``op``, ``aten``, ``shapes``, ``module`` (the
dotted path of the innermost ``nn.Module`` running, from global module hooks), ``phase``
(from :func:`sstemu.region`) and ``pass`` (``forward``/``backward``). ``table``, ``total``,
``to_csv``, ``to_json`` and ``export_chrome_trace`` read them; :mod:`sstemu.plot` draws them.
"""

import csv
import functools
import json
import threading
import time

import torch
from torch.nn.modules import module as _nnmodule

from . import client, context

#: Keys :meth:`profile.table` can group by.
GROUPS = ("op", "shape", "module", "layer", "phase", "pass", "aten")
#: Keys :meth:`profile.table` can sort by.
SORTS = ("sim_time", "calls", "cycles", "flops", "bytes", "name")
#: The columns written first by :meth:`profile.to_csv` (any other record keys follow, sorted).
CSV_COLUMNS = ("op", "aten", "shapes", "module", "phase", "pass", "timed", "untimed_reason", "error", "device",
               "cycles", "compute_cycles", "memory_cycles", "flops", "memory_bytes", "bound", "utilization",
               "sim_ns", "start_cycle", "end_cycle", "gemms", "requests", "wall_us", "model", "preset", "clock_hz")


def _num(r, k):
    v = r.get(k)
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else 0


def shape_key(r):
    """A short label of a record's op and operand shapes, e.g. ``gemm 4x8 @ 8x16``."""
    shapes = r.get("shapes") or []
    dims = ["x".join(str(d) for d in s) if s else "()" for s in shapes]
    sep = " * " if r.get("op") == "conv" else " @ "
    label = "%s %s" % (r.get("op", "?"), sep.join(dims))
    p = r.get("params")
    if p:
        label += " s%s p%s d%s g%s" % (_short(p.get("stride")), _short(p.get("padding")), _short(p.get("dilation")), p.get("groups"))
    return label


def _short(v):
    if isinstance(v, (list, tuple)) and len(set(v)) == 1:
        return str(v[0])
    return "x".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def layer_of(module):
    """The layer a module path belongs to: up to its first numeric part (``layers.3``), else its first part."""
    if not module:
        return "(none)"
    parts = module.split(".")
    for i, p in enumerate(parts):
        if p.isdigit():
            return ".".join(parts[: i + 1])
    return parts[0]


def _group_key(r, by):
    if by == "op":
        return r.get("op", "?")
    if by == "shape":
        return shape_key(r)
    if by == "module":
        return r.get("module") or "(none)"
    if by == "layer":
        return layer_of(r.get("module", ""))
    if by == "phase":
        return r.get("phase") or "(none)"
    if by == "pass":
        return r.get("pass", "?")
    return r.get("aten") or "(direct)"


def fmt_time(ns):
    """A simulated time in ns as a short string with a unit."""
    ns = float(ns)
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= div:
            return "%.3f %s" % (ns / div, unit)
    return "%.1f ns" % ns


class _Agg:
    __slots__ = ("calls", "sim_ns", "cycles", "compute", "memory", "flops", "bytes", "util_cycles", "mem_bound_cycles", "untimed")

    def __init__(self):
        self.calls = self.untimed = 0
        self.sim_ns = 0.0
        self.cycles = self.compute = self.memory = self.flops = self.bytes = 0
        self.util_cycles = 0.0
        self.mem_bound_cycles = 0

    def add(self, r):
        self.calls += 1
        c = _num(r, "cycles")
        self.sim_ns += _num(r, "sim_ns")
        self.cycles += c
        self.compute += _num(r, "compute_cycles")
        self.memory += _num(r, "memory_cycles")
        self.flops += _num(r, "flops")
        self.bytes += _num(r, "memory_bytes")
        self.util_cycles += _num(r, "utilization") * c
        if r.get("bound") == "memory":
            self.mem_bound_cycles += c
        if not r.get("timed", False):
            self.untimed += 1

    def bound(self):
        if not self.cycles:
            return "-"
        m = self.mem_bound_cycles / self.cycles
        if m >= 0.995:
            return "memory"
        if m <= 0.005:
            return "compute"
        return "memory %d%%" % round(100 * m)

    def utilization(self):
        return self.util_cycles / self.cycles if self.cycles else 0.0


class _ModuleTracker:
    """Global forward hooks that keep each thread's module stack (shared by all profiles)."""

    def __init__(self):
        self.users = 0
        self.lock = threading.Lock()
        self.handles = ()
        self.tls = threading.local()
        self.saved = None

    def acquire(self):
        with self.lock:
            self.users += 1
            if self.users == 1:
                self.handles = (_nnmodule.register_module_forward_pre_hook(self._pre),
                                _nnmodule.register_module_forward_hook(self._post))
                self.saved = (torch.autograd.backward, torch.autograd.grad)
                torch.autograd.backward = _in_backward(self.saved[0])
                torch.autograd.grad = _in_backward(self.saved[1])

    def release(self):
        with self.lock:
            self.users -= 1
            if self.users == 0:
                for h in self.handles:
                    h.remove()
                self.handles = ()
                torch.autograd.backward, torch.autograd.grad = self.saved

    def _pre(self, m, inputs):
        s = context._state()
        ids = getattr(self.tls, "ids", None)
        if ids is None or not s.modules:
            ids = self.tls.ids = []
            s.modules = []
            self.tls.names = {id(x): (n or type(x).__name__) for n, x in m.named_modules()}
        name = self.tls.names.get(id(m))
        if name is None:
            name = (s.modules[-1][0] + "." if s.modules else "") + type(m).__name__
        ids.append(id(m))
        s.modules.append((name, context.next_id()))

    def _post(self, m, inputs, output):
        s = context._state()
        ids = getattr(self.tls, "ids", None)
        if not ids or id(m) not in ids:
            return
        if torch.is_grad_enabled():
            # The backward ops that follow this output's gradient belong to this module.
            stack = tuple(s.modules)
            for t in (output if isinstance(output, (tuple, list)) else (output,)):
                if isinstance(t, torch.Tensor) and t.requires_grad:
                    t.register_hook(functools.partial(_grad_arrived, stack, id(t)))
        while ids:
            top = ids.pop()
            if s.modules:
                s.modules.pop()
            if top == id(m):
                break


def _grad_arrived(stack, tensor_id, grad):
    context.backward_entered(stack, tensor_id)


def _in_backward(fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with context.backward_running():
            return fn(*args, **kwargs)
    return wrapped


_tracker = _ModuleTracker()


class profile:
    """Collects a record per device op while active (``with sstemu.profile() as prof:``).

    ``device`` is the Device whose INFO (ceilings, clock) the plots use; ops of every Device
    are recorded. Records of timing-only ops are completed when their TIME frame is answered
    (reading ``records`` sends what is queued).
    """

    def __init__(self, device=None):
        if device is not None and not isinstance(device, client.Device):
            raise TypeError("profile: device must be a sstemu.Device, got %s" % type(device).__name__)
        self.device = device
        self._records = []
        self._local = {}
        self._base = {}  # offload mode -> its local counts when this profile last looked
        self._round_trips = 0
        self._lock = threading.Lock()
        self._t0 = self._t1 = None
        self._active = False
        self._info = None

    def __enter__(self):
        if self._active:
            raise RuntimeError("this profile is already active")
        self._active = True
        self._t0 = time.perf_counter()
        self._t1 = None
        _tracker.acquire()
        with self._lock:
            # What offload modes already active did before this profile is not counted.
            self._base = {m: m.local for m in context.active_offloads()}
        context.add_profile(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                context.flush_all()
        finally:
            for m in context.active_offloads():
                self._take_local(m)
            context.remove_profile(self)
            _tracker.release()
            self._t1 = time.perf_counter()
            self._active = False
        return False

    # -- collection (called by the client and offload) -----------------------------------

    def _add(self, r):
        with self._lock:
            self._records.append(r)

    def _count_round_trip(self):
        with self._lock:  # also called from offload's TIME sender thread
            self._round_trips += 1

    def _offload_started(self, m):
        with self._lock:
            self._base[m] = {}

    def _offload_ended(self, m):
        self._take_local(m)
        with self._lock:
            self._base.pop(m, None)

    def _take_local(self, m):
        """Adds what offload mode m ran locally since this profile last looked."""
        now = m.local
        with self._lock:
            base = self._base.get(m, {})
            for k, v in now.items():
                d = v - base.get(k, 0)
                if d:
                    self._local[k] = self._local.get(k, 0) + d
            self._base[m] = now

    # -- reading --------------------------------------------------------------------------

    @property
    def records(self):
        """The records so far (list of dicts), in the order the ops were issued."""
        if self._active:
            context.flush_all()
        with self._lock:
            return list(self._records)

    @property
    def local_ops(self):
        """Ops run locally inside ``offload`` while profiling, by aten name."""
        if self._active:
            for m in context.active_offloads():
                self._take_local(m)
        with self._lock:
            return dict(self._local)

    def info(self):
        """The INFO of this profile's device (asked once; {} if the server does not answer INFO)."""
        if self._info is None:
            dev = self.device or client.default_device()
            try:
                self._info = dev.info()
            except client.DeviceError:
                self._info = {}
        return self._info

    def total(self):
        """Totals: simulated time, cycles, FLOPs, bytes, utilization, wall time and op counts."""
        recs = self.records
        a = _Agg()
        for r in recs:
            a.add(r)
        fallback = sum(1 for r in recs if r.get("fallback"))
        end = self._t1 if self._t1 is not None else time.perf_counter()
        return {
            "sim_time_s": a.sim_ns / 1e9,
            "sim_ns": a.sim_ns,
            "cycles": a.cycles,
            "compute_cycles": a.compute,
            "memory_cycles": a.memory,
            "flops": a.flops,
            "bytes": a.bytes,
            "utilization": a.utilization(),
            "wall_time_s": (end - self._t0) if self._t0 is not None else 0.0,
            "ops": len(recs),
            "untimed_ops": a.untimed,
            "errors": sum(1 for r in recs if r.get("error")),
            "offloaded_ops": len(recs) - fallback,
            "fallback_ops": fallback,
            "local_ops": sum(self.local_ops.values()),
            "round_trips": self._round_trips,
        }

    def groups(self, group_by="op"):
        """{key: aggregate} of the records grouped by one of :data:`GROUPS` (insertion order)."""
        if group_by not in GROUPS:
            raise ValueError("group_by %r: want one of %s" % (group_by, ", ".join(GROUPS)))
        out = {}
        for r in self.records:
            k = _group_key(r, group_by)
            a = out.get(k)
            if a is None:
                a = out[k] = _Agg()
            a.add(r)
        return out

    def table(self, group_by="op", sort_by="sim_time", top=None):
        """A text table of the records grouped by ``group_by``, like torch.profiler's key_averages().table()."""
        if sort_by not in SORTS:
            raise ValueError("sort_by %r: want one of %s" % (sort_by, ", ".join(SORTS)))
        if top is not None and (not isinstance(top, int) or top < 1):
            raise ValueError("top %r: want a positive int or None" % (top,))
        groups = self.groups(group_by)
        total = sum(a.sim_ns for a in groups.values())
        keyf = {
            "sim_time": lambda kv: -kv[1].sim_ns,
            "calls": lambda kv: -kv[1].calls,
            "cycles": lambda kv: -kv[1].cycles,
            "flops": lambda kv: -kv[1].flops,
            "bytes": lambda kv: -kv[1].bytes,
            "name": lambda kv: kv[0],
        }[sort_by]
        items = sorted(groups.items(), key=keyf)
        shown = items[:top] if top else items
        head = (group_by.capitalize(), "Calls", "Sim total", "Sim mean", "Share", "Cycles", "GFLOP", "MB", "FLOP/B", "Bound", "Util")
        rows = []
        for k, a in shown:
            rows.append((k, str(a.calls), fmt_time(a.sim_ns), fmt_time(a.sim_ns / a.calls if a.calls else 0),
                         "%.1f%%" % (100 * a.sim_ns / total) if total else "-", str(a.cycles), "%.3f" % (a.flops / 1e9),
                         "%.3f" % (a.bytes / 1e6), "%.1f" % (a.flops / a.bytes) if a.bytes else "-", a.bound(),
                         "%.1f%%" % (100 * a.utilization())))
        name_w = max([len(head[0])] + [len(r[0]) for r in rows])
        name_w = min(name_w, 60)
        widths = [name_w] + [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i]) for i in range(1, len(head))]
        line = "-" * (sum(widths) + 2 * (len(widths) - 1))

        def fmt(cells):
            first = cells[0] if len(cells[0]) <= name_w else cells[0][: name_w - 3] + "..."
            return "  ".join([first.ljust(name_w)] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])])

        out = [line, fmt(head), line] + [fmt(r) for r in rows] + [line]
        t = self.total()
        more = " (top %d of %d groups)" % (len(shown), len(items)) if len(shown) < len(items) else ""
        out.append("Simulated total: %s in %d device ops (%d untimed); %d local ops; wall %.3f s%s" % (
            fmt_time(t["sim_ns"]), t["ops"], t["untimed_ops"], t["local_ops"], t["wall_time_s"], more))
        return "\n".join(out)

    def pivot(self, rows="layer", cols="phase"):
        """A text table of simulated time with one row per ``rows`` group and one column per ``cols`` group."""
        for g in (rows, cols):
            if g not in GROUPS:
                raise ValueError("pivot: %r: want one of %s" % (g, ", ".join(GROUPS)))
        cells, rk, ck = {}, {}, {}
        for r in self.records:
            a, b = _group_key(r, rows), _group_key(r, cols)
            rk.setdefault(a, None)
            ck.setdefault(b, None)
            cells[(a, b)] = cells.get((a, b), 0.0) + _num(r, "sim_ns")
        colnames = list(ck)
        head = [rows.capitalize()] + colnames + ["total"]
        body = []
        for a in rk:
            vals = [cells.get((a, b), 0.0) for b in colnames]
            body.append([a] + [fmt_time(v) for v in vals] + [fmt_time(sum(vals))])
        sums = [sum(cells.get((a, b), 0.0) for a in rk) for b in colnames]
        body.append(["total"] + [fmt_time(v) for v in sums] + [fmt_time(sum(sums))])
        widths = [max(len(str(row[i])) for row in [head] + body) for i in range(len(head))]
        line = "-" * (sum(widths) + 2 * (len(widths) - 1))

        def fmt(row):
            return "  ".join([str(row[0]).ljust(widths[0])] + [str(c).rjust(w) for c, w in zip(row[1:], widths[1:])])

        return "\n".join([line, fmt(head), line] + [fmt(r) for r in body[:-1]] + [line, fmt(body[-1]), line])

    # -- files ------------------------------------------------------------------------------

    def _public(self):
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.records]

    def to_json(self, path):
        """Writes {"total", "local_ops", "records"} as JSON, one record per line."""
        with open(path, "w") as f:
            f.write('{"total": %s,\n"local_ops": %s,\n"records": [\n' % (json.dumps(self.total()), json.dumps(self.local_ops)))
            f.write(",\n".join(json.dumps(r) for r in self._public()))
            f.write("\n]}\n")

    def to_csv(self, path):
        """Writes one row per record; nested values (shapes, server_us) as JSON text."""
        recs = self._public()
        extra = sorted({k for r in recs for k in r} - set(CSV_COLUMNS))
        cols = list(CSV_COLUMNS) + extra
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(cols)
            for r in recs:
                w.writerow([_csv_cell(r.get(c)) for c in cols])

    def export_chrome_trace(self, path):
        """Writes a Perfetto/Chrome trace in simulated time: per device, ops, nested module spans, phases."""
        doc = chrome_trace(self.records)
        with open(path, "w") as f:
            f.write(json.dumps(doc))  # dumps: the C encoder; dump(f) would encode in Python


def _csv_cell(v):
    if v is None:
        return ""
    if isinstance(v, (list, dict, tuple)):
        return json.dumps(v, separators=(",", ":"))
    return v


TID_OPS, TID_MODULES, TID_PHASES = 1, 2, 3
#: The record keys an op's trace event carries in ``args`` (the full records are in to_json).
TRACE_ARGS = ("op_id", "aten", "module", "phase", "pass", "cycles", "compute_cycles", "memory_cycles", "flops",
              "memory_bytes", "bound", "utilization", "timed", "untimed_reason", "start_cycle", "end_cycle")


def _timeline(recs):
    """[(record, device, ts_us, dur_us)] per record, on each device's simulated timeline.

    Uses the server's start_cycle/end_cycle when every op of a device has them and they do
    not overlap in issue order; otherwise lays the device's ops end to end by sim_ns.
    """
    by_dev = {}
    for r in recs:
        d = r.get("device")
        by_dev.setdefault(d if isinstance(d, int) and d >= 0 else 0, []).append(r)
    out = {}
    for dev, rs in by_dev.items():
        server = all(isinstance(r.get("start_cycle"), int) and isinstance(r.get("end_cycle"), int)
                     and _num(r, "clock_hz") > 0 for r in rs)
        if server:
            prev = None
            for r in rs:
                if r["end_cycle"] < r["start_cycle"] or (prev is not None and r["start_cycle"] < prev):
                    server = False
                    break
                prev = r["end_cycle"]
        if server:
            base = rs[0]["start_cycle"]
            for r in rs:
                hz = r["clock_hz"]
                out[id(r)] = (dev, (r["start_cycle"] - base) / hz * 1e6, (r["end_cycle"] - r["start_cycle"]) / hz * 1e6)
        else:
            t = 0.0
            for r in rs:
                d = _num(r, "sim_ns") / 1e3
                out[id(r)] = (dev, t, d)
                t += d
    return [(r,) + out[id(r)] for r in recs]


def chrome_trace(recs):
    """The trace document (dict with ``traceEvents``) for a list of records.

    Entries the server could not time (``error``) have no interval and are left out.
    """
    recs = [r for r in recs if not r.get("error")]
    events = []
    spans = {}  # (dev, kind, id, pass) -> [name, start, end, depth]
    devs = set()
    for r, dev, ts, dur in _timeline(recs):
        devs.add(dev)
        pid = dev + 1
        args = {k: r[k] for k in TRACE_ARGS if k in r}
        events.append({"name": shape_key(r), "cat": r.get("op", "op"), "ph": "X", "pid": pid, "tid": TID_OPS,
                       "ts": ts, "dur": dur, "args": args})
        for depth, (name, cid) in enumerate(r.get("_modules", ())):
            s = spans.setdefault((dev, "module", cid, r.get("pass")), [name, ts, ts + dur, depth])
            s[1], s[2] = min(s[1], ts), max(s[2], ts + dur)
        for depth, (name, rid) in enumerate(r.get("_regions", ())):
            s = spans.setdefault((dev, "region", rid, None), [name, ts, ts + dur, depth])
            s[1], s[2] = min(s[1], ts), max(s[2], ts + dur)
    for (dev, kind, _, ps), (name, start, end, depth) in spans.items():
        label = name if kind == "region" or ps != "backward" else name + " (backward)"
        events.append({"name": label, "cat": kind, "ph": "X", "pid": dev + 1,
                       "tid": TID_MODULES if kind == "module" else TID_PHASES, "ts": start, "dur": end - start,
                       "args": {"depth": depth}})
    events.sort(key=lambda e: (e["pid"], e["tid"], e["ts"], -e["dur"]))
    meta = []
    for dev in sorted(devs):
        pid = dev + 1
        meta.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": "device %d (simulated time)" % dev}})
        for tid, tname in ((TID_OPS, "ops"), (TID_MODULES, "modules"), (TID_PHASES, "phases")):
            meta.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": tname}})
    return {"traceEvents": meta + events, "displayTimeUnit": "ns",
            "otherData": {"producer": "sstemu python package", "clock": "simulated"}}
