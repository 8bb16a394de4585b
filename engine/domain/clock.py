"""Engine clocks: the system's, and one tests move by hand (the Clock port: engine.domain.ports)."""

from __future__ import annotations

import time


class SystemClock:
    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock tests move by hand."""

    __slots__ = ("_now_ms",)

    def __init__(self, now_ms: int = 1_767_225_600_000) -> None:  # 2026-01-01T00:00Z
        self._now_ms = now_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("engine time never goes back")
        self._now_ms += ms
