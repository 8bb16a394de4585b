"""Temperature excursions: a cabinet that left its range has its stock frozen for QA (DESIGN.md §3).

Each sku in the cabinet gets one `FreezeStock`, applied inside its cell in one step: every
on-hand unit under the cabinet's bin moves to the dictionary's frozen role. Held units are
handled explicitly: suspect goods must not reach a patient, so they are frozen too and the
holds on them are cut — journaled, and listed in the answer (never silently). A
redelivery finds the stock already frozen and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.domain.commands import FreezeStock
from engine.domain.ingestion import derived_id


def freeze_doc_ref(doc_ref: str, temp_c: float) -> str:
    """The sender's document, or one that names the temperature seen."""
    return doc_ref or f"excursion:{temp_c}C"


def freeze_commands(event_id: str, site: str, bin_: str, skus: Iterable[str], doc_ref: str) -> list[FreezeStock]:
    """The commands that freeze a cabinet (`bin_` at `site`): one per sku it holds."""
    return [FreezeStock(derived_id(event_id, sku), sku, site, bin_, doc_ref) for sku in sorted(set(skus))]
