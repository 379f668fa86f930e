"""The machine a measurement ran on, read without importing a framework."""

from __future__ import annotations

import os
import platform
from pathlib import Path

FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", "neon", "asimd")


def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def _caches() -> dict[str, int]:
    """Cache sizes of the first CPU in bytes, by level and type (L1d, L2, L3)."""
    found: dict[str, int] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        if kind == "Instruction":
            continue
        units = {"K": 1024, "M": 1024**2, "G": 1024**3}
        number = int("".join(c for c in size if c.isdigit()) or 0)
        found[f"L{level}{'d' if kind == 'Data' else ''}"] = number * units.get(
            size[-1:], 1
        )
    return found


def machine(threads: int) -> dict:
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {
        "cpu": info.get("model name") or platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "threads": threads,
        "flags": [f for f in FLAGS if f in flags],
        "caches": _caches(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average": load_average(),
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None
