"""CPU threads for inference: how many physical cores this process may use, and the torch thread settings."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch


def physical_cores() -> int:
    """Physical cores this process may run on (hyper-threads share a core's vector units, so count cores)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            cores.add(("?", str(cpu)))
    return max(1, len(cores))


THREADS_ENV = "OSTRACK_LIVE_THREADS"


def configure_cpu_threads(threads: int | None = None) -> int:
    """Intra-op threads: ``threads``, else ``$OSTRACK_LIVE_THREADS``, else one per physical core; one inter-op
    thread (the network has no parallel branches). Returns the intra-op count in force.

    On a machine whose cores are busy with other work, fewer threads are faster: OpenMP workers wait for each
    other at every op, and a descheduled one stalls the rest (benchmarks/speed.py measures both).
    """
    wanted = threads or int(os.environ.get(THREADS_ENV, "0") or 0) or physical_cores()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    if torch.get_num_interop_threads() != 1:
        # Only settable before the first inter-op work; after that keep what is there.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
    return wanted
