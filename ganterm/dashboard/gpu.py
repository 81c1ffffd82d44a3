"""GPU utilisation and memory for the header, through nvidia-ml-py when it is installed."""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _nvml() -> Any | None:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # not installed, no driver, no GPU: the header simply omits the GPU
        return None
    return pynvml


def gpu_usage(status: dict[str, Any]) -> str | None:
    """'GPU 87% · 5.1/80.0 GB' for a CUDA run on this machine; None when it cannot be known."""
    device = str(status.get("device", ""))
    if not device.startswith("cuda"):
        return None
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        index = int(device.split(":")[1].split()[0]) if ":" in device else 0
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        busy = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    except Exception:  # the driver went away mid-run; say nothing rather than crash the viewer
        return None
    return f"GPU {busy}% · {memory.used / 1e9:.1f}/{memory.total / 1e9:.1f} GB"
