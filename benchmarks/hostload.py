"""How busy the host was during a measurement: /proc/stat CPU ticks and the hypervisor's steal between two readings.

Every benchmark prints these beside its figures (a loaded or stolen-from host inflates the peer's time more than
ours), so the readings live here once.
"""

from __future__ import annotations


def cpu_ticks() -> list[int]:
    """Aggregate /proc/stat CPU ticks (Linux); [] elsewhere."""
    try:
        with open("/proc/stat") as fh:
            return [int(x) for x in fh.readline().split()[1:]]
    except OSError:
        return []


def steal_pct(t0: list[int], t1: list[int]) -> float | None:
    """Share (%) of this VM's CPU time the hypervisor gave to other tenants between two `cpu_ticks` readings."""
    if not t0 or not t1 or len(t0) < 8:
        return None
    return round(100 * (t1[7] - t0[7]) / max(1, sum(t1) - sum(t0)), 1)
