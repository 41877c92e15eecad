"""`learn bench`: measurements a learner can rerun (multiplexers, the chat under load, scale)."""

from __future__ import annotations


def machine_info() -> dict[str, object]:
    """What a number means depends on where it was measured: cores, CPU, kernel, Python."""
    import os
    import platform

    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.partition(":")[2].strip()
                    break
    except OSError:
        pass
    return {
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
