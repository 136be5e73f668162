"""sstemu: simulated accelerator timing for PyTorch models, per op, per layer, per phase.

Wrap an unmodified model, run it, read a table::

    import sstemu
    with sstemu.offload(), sstemu.profile() as prof:
        model(x)
    print(prof.table(group_by="module"))

The ops go to an sstemu device server (``sstemu serve``, default 127.0.0.1:9999 or
``$SSTEMU_ADDR``), which computes them and times each through its five simulated layers.
"""

from . import models
from .client import DEFAULT_ADDR, Device, connect, default_device, set_default_device
from .context import region
from .modules import DeviceConv2d, DeviceConv2dFunction, DeviceGEMM, DeviceLinear, DeviceMatmul, patch
from .offload import offload
from .profiler import profile
from .wire import DeviceError, ProtocolError

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ADDR", "Device", "DeviceConv2d", "DeviceConv2dFunction", "DeviceError", "DeviceGEMM", "DeviceLinear",
    "DeviceMatmul", "ProtocolError", "connect", "default_device", "models", "offload", "patch", "plot", "profile",
    "region", "set_default_device",
]


def __getattr__(name):
    # sstemu.plot needs matplotlib, an optional dependency: import it on first use only.
    if name == "plot":
        import importlib
        return importlib.import_module(".plot", __name__)
    raise AttributeError("module 'sstemu' has no attribute %r" % name)
