"""Where an op is issued from: phase (regions), module, forward or backward, and who listens.

Every device op asks this module for its attribution and hands its record to the active
profiles. The state is per thread (a model run on one thread does not see another's
regions); the list of profiles is global, so ops of worker threads are collected too.
"""

import contextlib
import itertools
import threading

_tls = threading.local()
_lock = threading.Lock()
_profiles = []  # active sstemu.profile objects, in the order they were entered
_ids = itertools.count(1)
_flushers = []  # active offload(timing_only=True) modes with TIME entries not yet sent
_offloads = []  # active offload modes (their local-op counters)

FORWARD = "forward"
BACKWARD = "backward"


def _state():
    s = getattr(_tls, "s", None)
    if s is None:
        s = _tls.s = _ThreadState()
    return s


class _ThreadState:
    __slots__ = ("regions", "modules", "passes", "device_depth", "bwd_modules", "bwd_tensor", "timing_only")

    def __init__(self):
        self.regions = []  # [(name, instance id)]
        self.modules = []  # [(dotted name, call id)]
        self.bwd_modules = ()  # in backward: the module stack whose output gradient arrived last
        self.bwd_tensor = 0  # id of the tensor whose gradient hook set bwd_modules
        self.passes = []  # explicit FORWARD/BACKWARD overrides, innermost last
        self.device_depth = 0  # > 0 while a device op runs its own local torch calls
        self.timing_only = 0  # > 0 inside offload(timing_only=True)


def next_id():
    """A process-wide unique id (module calls, region instances)."""
    return next(_ids)


@contextlib.contextmanager
def region(name):
    """``with sstemu.region("prefill"):`` labels every device op inside with ``phase``.

    Regions nest; the phase of an op is the names from outermost to innermost joined by
    ``/`` (``"decode/step"``). They are per thread.
    """
    if not isinstance(name, str) or not name:
        raise ValueError("region name must be a non-empty string, got %r" % (name,))
    s = _state()
    s.regions.append((name, next_id()))
    try:
        yield
    finally:
        s.regions.pop()


@contextlib.contextmanager
def in_pass(kind):
    """Marks the ops inside as ``forward`` or ``backward`` (used by the autograd Functions)."""
    s = _state()
    s.passes.append(kind)
    try:
        yield
    finally:
        s.passes.pop()


@contextlib.contextmanager
def with_modules(stack):
    """Runs the ops inside as if called from the module stack saved by :func:`module_stack`."""
    s = _state()
    saved, s.modules = s.modules, list(stack)
    try:
        yield
    finally:
        s.modules = saved


def timing_only_active():
    """Whether this thread is inside ``offload(timing_only=True)``: the device modules then
    leave their products to it (local compute, TIME entries) instead of calling the device."""
    return _state().timing_only > 0


def inside_device_op():
    """Whether this thread is inside a device op's own work."""
    return _state().device_depth > 0


def module_stack():
    """The whole module stack [(name, call id)], outermost first (a copy)."""
    return tuple(_state().modules)


def attribution():
    """The fields every record gets: module, phase, pass, and the spans it lies in."""
    s = _state()
    if s.passes:
        kind = s.passes[-1]
    else:
        kind = BACKWARD if _backward_depth() else FORWARD
    mods = s.modules
    if not mods and kind == BACKWARD:
        mods = s.bwd_modules
    return {
        "module": mods[-1][0] if mods else "",
        "phase": "/".join(r[0] for r in s.regions),
        "pass": kind,
        "_modules": tuple(mods),
        "_regions": tuple(s.regions),
    }


def backward_entered(stack, tensor_id):
    """A module's output gradient arrived: the backward ops that follow are that module's.

    Hooks of one tensor fire one after the other (inner module first, as registered); the
    deepest module of that tensor wins, so attribution stays with the innermost module.
    """
    s = _state()
    if s.bwd_tensor == tensor_id and len(s.bwd_modules) >= len(stack):
        return
    s.bwd_modules, s.bwd_tensor = stack, tensor_id


def _backward_depth():
    return getattr(_tls, "backward", 0)


@contextlib.contextmanager
def backward_running():
    """Marks this thread as inside torch.autograd.backward/grad (see profile's wrappers)."""
    _tls.backward = _backward_depth() + 1
    s = _state()
    s.bwd_modules, s.bwd_tensor = (), 0
    try:
        yield
    finally:
        _tls.backward -= 1
        s.bwd_modules, s.bwd_tensor = (), 0


def add_profile(p):
    """Starts delivering records to profile p."""
    with _lock:
        _profiles.append(p)


def remove_profile(p):
    """Stops delivering records to profile p."""
    with _lock:
        if p in _profiles:
            _profiles.remove(p)


def profiling():
    """Whether any profile is active (records are built only then)."""
    return bool(_profiles)


def emit(record):
    """Hands one finished (or pending) record to every active profile."""
    for p in tuple(_profiles):
        p._add(record)


def emit_round_trip():
    """Counts one request/answer exchange with a server."""
    for p in tuple(_profiles):
        p._count_round_trip()


def add_flusher(f):
    """Registers an object whose ``flush()`` sends queued TIME entries (timing-only offload)."""
    with _lock:
        _flushers.append(f)


def remove_flusher(f):
    """Unregisters what :func:`add_flusher` registered."""
    with _lock:
        if f in _flushers:
            _flushers.remove(f)


def flush_all():
    """Sends every queued TIME entry, so that all records so far are complete."""
    for f in tuple(_flushers):
        f.flush()


def add_offload(m):
    """Registers an active offload mode (profiles read its local-op counts)."""
    with _lock:
        _offloads.append(m)
    for p in tuple(_profiles):
        p._offload_started(m)


def remove_offload(m):
    """Unregisters an offload mode; active profiles take its final local-op counts."""
    with _lock:
        if m in _offloads:
            _offloads.remove(m)
    for p in tuple(_profiles):
        p._offload_ended(m)


def active_offloads():
    """The active offload modes (a copy)."""
    return tuple(_offloads)
