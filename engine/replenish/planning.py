"""The planner: PairInputs → Planned, over engine.replenish's maths (model, kernels,
policy, rules, explain). The one place the service meets the maths' own types."""

from __future__ import annotations

from collections.abc import Sequence

from engine.replenish.service import PairInputs, Planned


def core_planner(inputs: Sequence[PairInputs]) -> list[Planned]:
    raise NotImplementedError("waiting for engine.replenish.policy")
