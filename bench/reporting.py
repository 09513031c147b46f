"""Command line and reporting shared by the bench scripts: engines, machine, percentiles."""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import time
from collections.abc import Callable, Sequence

import psycopg

from bench.databases import PG_ADMIN_URL, pg_version

ENGINES = ("sqlite", "postgresql")


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    return p


def engines(choice: str) -> list[str]:
    wanted = list(ENGINES) if choice == "both" else [choice]
    if "postgresql" in wanted and pg_version() is None:
        print(f"PostgreSQL at {PG_ADMIN_URL} unreachable: skipping it", flush=True)
        wanted.remove("postgresql")
    return wanted


def machine_info() -> str:
    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo", encoding="utf-8") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    cores = len(os.sched_getaffinity(0))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"machine: {cores} cores ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}\n"
        f"software: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"PostgreSQL {pg_version() or 'unreachable'}, psycopg {psycopg.__version__}\n"
        f"load average at start: {load} (the machine may be shared: compare ratios, not absolutes)"
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def step(message: str) -> Callable[[], None]:
    """Print ``message …`` now and the seconds it took when the returned function is called."""
    started = time.perf_counter()
    print(f"  {message} …", end="", flush=True)
    return lambda: print(f" {time.perf_counter() - started:.1f} s", flush=True)
