"""The one clock the scheduler reads; tests freeze it instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from casework.db import utcnow

Clock = Callable[[], datetime]

_clock: Clock = utcnow


def now() -> datetime:
    return _clock()


def set_clock(clock: Clock) -> None:
    global _clock
    _clock = clock


def reset_clock() -> None:
    set_clock(utcnow)
