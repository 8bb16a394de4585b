"""The engine process's cyclic collector (engine.bootstrap.engine): start-up's objects leave
its generations once the engine is up, and come back when it stops."""

from __future__ import annotations

import gc

from engine.bootstrap.engine import _release_collector, _settle_collector
from engine.runtime.host import YOUNG_THRESHOLD


def test_start_up_objects_are_frozen_and_released_again() -> None:
    saved = gc.get_threshold()
    try:
        kept = [[n] for n in range(1_000)]  # long-lived: what start-up made
        _settle_collector()
        assert gc.get_freeze_count() >= len(kept)
        assert gc.get_threshold()[0] >= YOUNG_THRESHOLD
        _release_collector()
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
