"""The peak memory of a job: its kernel and everything the kernel starts, sampled while it runs.

``ru_maxrss`` from ``wait4`` is not enough: on Linux a child's maximum starts from its parent's
resident size at fork and exec (the runner may itself be large), and it is the largest single
process, not the sum of a kernel and the processes it launches (data loaders, DDP workers). So
the runner samples the summed resident size of the worker's descendants with psutil (installed
with ipykernel) every ``interval`` seconds; the worker itself (papermill) is overhead, not the
notebook, and is left out.
"""

from __future__ import annotations

import subprocess

try:
    import psutil
except ImportError:  # pragma: no cover - psutil comes with ipykernel
    psutil = None

MIB = 2**20


def descendants_rss(pid: int) -> int:
    """Summed resident bytes of ``pid``'s children, grandchildren, ... (0 once it is gone)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for child in children:
        try:
            total += child.memory_info().rss
        except psutil.Error:  # it ended between the listing and the reading
            continue
    return total


def wait_with_peak(process: subprocess.Popen, interval: float = 0.25) -> float | None:
    """Wait for ``process``; return its descendants' peak summed RSS in MiB (None w/o psutil)."""
    if psutil is None:  # pragma: no cover
        process.wait()
        return None
    peak = 0
    while process.poll() is None:
        peak = max(peak, descendants_rss(process.pid))
        try:
            process.wait(timeout=interval)
        except subprocess.TimeoutExpired:
            continue
    return round(peak / MIB, 1)


__all__ = ["descendants_rss", "wait_with_peak"]
