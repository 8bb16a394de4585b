"""Read-only upcasters for the two pickles releases up to journal schema v2 wrote: the
cell inside a v1/v2 `Adopt` (`cell_blob`) and a `LWS1` shard snapshot.

Nothing writes pickles any more; these are read once, on recovery, and turned at once into
the typed state records (engine.domain.state), so no live object of an older release
survives the read. The unpickler resolves only the domain's value classes named below
(an allowlist, also mapping the shard core's module before it moved into the domain):
anything else in a blob is refused as an unreadable format, never executed.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from collections import OrderedDict
from typing import Any

from engine.domain.catalog import Sku
from engine.domain.cell import Cell
from engine.domain.formats import UnsupportedFormat
from engine.domain.shard import ShardCore
from engine.domain.state import CellState, ShardState, export_cell

_MODULES = {
    "engine.domain.catalog": "engine.domain.catalog",
    "engine.domain.cell": "engine.domain.cell",
    "engine.domain.commands": "engine.domain.commands",
    "engine.domain.errors": "engine.domain.errors",
    "engine.domain.ledger": "engine.domain.ledger",
    "engine.domain.model": "engine.domain.model",
    "engine.domain.shard": "engine.domain.shard",
    "engine.runtime.shard": "engine.domain.shard",  # where ShardCore lived before the move
    "engine.domain.statuses": "engine.domain.statuses",
}
_NAMES = frozenset(
    {
        "Site", "Sku", "Cell", "CellLimits", "Ledger", "Status", "StatusDictionary", "ShardCore", "HoldHeader",
        "Receive", "Move", "ChangeStatus", "Reserve", "ReserveLine", "Commit", "Release", "Consume", "Adjust",
        "Strategy", "Received", "Moved", "StatusChanged", "Reserved", "Committed", "Released", "Consumed",
        "Adjusted", "InvalidArgument", "FieldViolation", "NotFound", "FailedPrecondition", "InsufficientStock",
        "RequestConflict", "PermissionDenied", "Overloaded", "Unavailable", "DeadlineExceeded", "Internal",
        "Allocation", "External", "Finance", "HoldPart", "HoldState", "HoldView", "Lot", "Quant", "QuantKey",
    }
)  # fmt: skip


class _DomainValues(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return super().find_class(module, name)
        target = _MODULES.get(module)
        if target is None or name not in _NAMES:
            raise pickle.UnpicklingError(f"{module}.{name} is not a domain value")
        return super().find_class(target, name)


def _load(blob: bytes, format: str, version: int | None) -> Any:
    try:
        return _DomainValues(io.BytesIO(blob)).load()
    except Exception as exc:  # any failure: the blob is not what this release can read
        raise UnsupportedFormat(format, version, f"pickled state unreadable: {type(exc).__name__}: {exc}") from None


def cell_from_pickle(blob: bytes, journal_version: int) -> CellState:
    """A v1/v2 Adopt's pickled cell, as a typed cell state."""
    cell = _load(blob, "journal batch Adopt.cell_blob (pickle)", journal_version)
    if not isinstance(cell, Cell):
        raise UnsupportedFormat("journal batch Adopt.cell_blob (pickle)", journal_version, "not a cell")
    _complete(cell)
    return export_cell(cell)


def _with_defaults(value: Any) -> Any:
    """The dataclass `value` rebuilt through its constructor: a slot its pickle lacked takes
    the field's default."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return value
    present = {
        f.name: _with_defaults(getattr(value, f.name)) for f in dataclasses.fields(value) if hasattr(value, f.name)
    }  # nested: a command's Finance lacks the typed attributes of journal v7
    return type(value)(**present)


def _complete(cell: Cell) -> None:
    """A pickled slotted Ledger holds only the slots of its day: the out-of-stock marks
    (since journal v4) start empty, the per-lot quant counts are rebuilt from the quants."""
    cell.devices = {}
    cell._business_at_ms = 0
    # Remembered commands unpickle positionally with the slots of their day: fields added
    # since (journal v6: Adjust.delta_qty) take their defaults.
    for request_id, entry in list(cell._seen.items()):
        at_ms, cmd, answer = Cell.recalled(entry)  # a pickled window is never left encoded
        cell._seen[request_id] = (at_ms, _with_defaults(cmd), answer)
    ledger = cell.ledger
    ledger.zeroed = OrderedDict()
    ledger.live = {}
    for key in ledger.quants:
        ledger.live[key.lot_id] = ledger.live.get(key.lot_id, 0) + 1
    ledger.opened_lots = sum(1 for lot in ledger.lots.values() if lot.opened_at_ms)


def shard_from_pickle(blob: bytes) -> ShardState:
    """A LWS1 snapshot's pickled shard core (without its tag), as a typed shard state."""
    core = _load(blob, "shard snapshot LWS1 (pickle)", None)
    if not isinstance(core, ShardCore):
        raise UnsupportedFormat("shard snapshot LWS1 (pickle)", None, "not a shard core")
    # A pickled slotted Sku holds only the fields of its day: rebuild it, so the fields added
    # since (journal v4: the freshness fields) take their defaults.
    core.skus = {name: Sku(s.sku, s.name, s.unit, s.opened_shelf_life_days) for name, s in core.skus.items()}
    for cell in core.cells.values():
        _complete(cell)
    return core.export_state()
