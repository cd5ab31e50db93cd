"""What the daemon tells clients about its machine: the device in words and its memory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mrflow_protocol.messages import MemoryInfo


def describe_device(device: str) -> str:
    """ "cuda:0 NVIDIA H100 80GB HBM3", "mps", "cpu" for the configured (or automatic) device;
    raises the engine's InvalidRequestError (field "device") for one this machine lacks."""
    import torch

    from mrflow_daemon.engine.pipeline import pick_device

    chosen = pick_device(device or None)
    if chosen.type == "cuda":
        index = chosen.index if chosen.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return chosen.type


def process_rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default); 0 where it cannot be read."""
    status = Path(f"/proc/{pid or 'self'}/status")
    try:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    if pid is None and sys.platform != "win32":
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the peak, not the current
        return peak if sys.platform == "darwin" else peak * 1024
    return 0


def system_ram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0


def memory_info(device_description: str) -> MemoryInfo:
    """Device memory in use on CUDA; this process's resident memory against RAM elsewhere."""
    if device_description.startswith("cuda:"):
        import torch

        try:
            index = int(device_description.split()[0].split(":")[1])
            free, total = torch.cuda.mem_get_info(index)
            return MemoryInfo(used=total - free, total=total)
        except (ValueError, RuntimeError):  # a driver gone since the start: report the host
            pass
    return MemoryInfo(used=process_rss_bytes(), total=system_ram_bytes())
