"""How to use `transitions` per request: measured, and the cheaper way kept.

Three ways to move a loaded case by one event, with the real states and transitions of
workflows/case_machine.py:
  per_case   - a new Machine(model=case) for every request (the textbook way);
  add_remove - one shared Machine, add_model(case, initial=case.state) ... remove_model(case);
  shared     - one shared Machine(model=None), MACHINE.events[name].trigger(case) (what we ship).
Prints microseconds per request and each way's cost as a ratio of the shipped one, plus the memory
a per-case Machine holds.

    .venv/bin/python bench/machine_usage.py [--n 20000]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import tracemalloc
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/transitions.py would shadow the
# `transitions` library: move the folder to the end (a stable sort) and put the repository first.
sys.path.sort(key=lambda p: Path(p or ".").resolve() == Path(__file__).resolve().parent)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transitions import Machine

from workflows import case_machine as m


class Case:
    def __init__(self) -> None:
        self.state = m.SCREENED
        self.referred_from = None


def _definition() -> dict:
    return {
        "states": list(m.OPEN_STATES + m.TERMINAL_STATES),
        "transitions": m._machine_transitions(),
        "auto_transitions": False,
        "send_event": True,
    }


def per_case(n: int) -> float:
    definition = _definition()
    start = time.perf_counter()
    for _ in range(n):
        case = Case()
        machine = Machine(model=case, initial=case.state, **definition)
        machine.events["confirm"].trigger(case, ctx=None)
    return (time.perf_counter() - start) / n


def add_remove(n: int) -> float:
    machine = Machine(model=None, initial=m.SCREENED, **_definition())
    start = time.perf_counter()
    for _ in range(n):
        case = Case()
        machine.add_model(case, initial=case.state)
        try:
            case.trigger("confirm", ctx=None)
        finally:
            machine.remove_model(case)
    return (time.perf_counter() - start) / n


def shared(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        case = Case()
        m.MACHINE.events["confirm"].trigger(case, ctx=None)
    return (time.perf_counter() - start) / n


def machine_bytes(count: int = 200) -> float:
    definition = _definition()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    keep = [Machine(model=Case(), initial=m.SCREENED, **definition) for _ in range(count)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    size = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del keep
    return size / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, n={args.n}")
    for fn in (per_case, add_remove, shared):
        fn(min(args.n, 500))  # warm-up
    figures = {fn.__name__: fn(args.n) for fn in (per_case, add_remove, shared)}
    baseline = figures["shared"]
    for name, seconds in figures.items():
        print(f"{name:<11} {seconds * 1e6:8.1f} us/request   x{seconds / baseline:6.1f} of shared")
    print(f"per_case Machine holds ~{machine_bytes() / 1024:.1f} KiB each")


if __name__ == "__main__":
    main()
