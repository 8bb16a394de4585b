"""Replenishment: demand estimates, the ordering policy, rules as data and explanations (issue 14).

A pure room: it imports engine.domain (errors) and numpy / numba / scipy, nothing of infrastructure.
"""

from engine.replenish.explain import explain, suggestion_dict
from engine.replenish.kernels import BatchForecast, forecast_batch
from engine.replenish.model import (
    AppliedFactor,
    Arrival,
    DemandHistory,
    Factor,
    LeadTime,
    PairPosition,
    Panel,
    PolicySettings,
    RuleLine,
    Suggestion,
    SupplierTerms,
)
from engine.replenish.policy import BatchPolicy, policy_batch, suggest
from engine.replenish.rules import Match, Rule, RuleContext, load_rules, loads_rules, parse_rules

__all__ = [
    "AppliedFactor",
    "Arrival",
    "BatchForecast",
    "BatchPolicy",
    "DemandHistory",
    "Factor",
    "LeadTime",
    "Match",
    "PairPosition",
    "Panel",
    "PolicySettings",
    "Rule",
    "RuleContext",
    "RuleLine",
    "Suggestion",
    "SupplierTerms",
    "explain",
    "forecast_batch",
    "load_rules",
    "loads_rules",
    "parse_rules",
    "policy_batch",
    "suggest",
    "suggestion_dict",
]
