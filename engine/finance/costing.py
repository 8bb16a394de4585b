"""Cost layers of one company's sku: lot-valuated FIFO or moving average (per sku category).

FIFO keeps one layer per receipt of a lot (Odoo's `stock.valuation.layer`, ERPNext's bin
queue): an issue from a named lot eats that lot's layers oldest first (specific
identification, which is FIFO under FIFO removal and exact under FEFO); an issue with no
lot named eats the oldest layers of any lot. Moving average keeps one running
(qty, value) per sku: (q·r + q_in·r_in)/(q + q_in); per-lot quantities are kept only to
report them.

Values are amounts in the ledger's currency, rounded half up to its minor unit at each
layer; an issue takes the exact remaining value when it empties a layer, so
Σ remaining values is always the inventory account, to the cent. Issuing more than is on
hand (only possible when stock is allowed negative) values the shortfall at the last cost
and leaves a negative layer; the next receipt of that lot fills it at that cost and hands
the difference back as a correction (it belongs to COGS: the goods are gone).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from engine.domain.errors import InvariantViolation
from engine.finance.money import ZERO, money, unit_cost_of


class Method(StrEnum):
    FIFO = "fifo"  # lot-valuated: layers per lot, oldest first
    AVERAGE = "average"  # moving average per sku


@dataclass(slots=True)
class Layer:
    layer_id: str  # the source event's id (receipt, return, transfer in)
    lot_id: str
    at_ms: int
    qty: int  # as received
    unit_cost: Decimal
    remaining_qty: int
    remaining_value: Decimal


class Consumed(NamedTuple):
    """What an issue took from one layer (or, layer_id "", from the average). The results
    of costing are named tuples: immutable, and cheap to make once per movement."""

    layer_id: str
    lot_id: str
    qty: int
    value: Decimal


class Issue(NamedTuple):
    qty: int
    value: Decimal
    consumed: tuple[Consumed, ...]
    shortfall: int = 0  # units issued beyond what was on hand (valued at the last cost)

    @property
    def unit_cost(self) -> Decimal:
        return unit_cost_of(self.value, self.qty)


class Receipt(NamedTuple):
    value: Decimal  # what the receipt is worth at its own cost: money(qty × unit cost)
    inventory: Decimal  # what the inventory account gains (≠ value when it fills a shortfall)

    @property
    def correction(self) -> Decimal:
        """Cost difference on units already issued at the last cost: to COGS."""
        return self.value - self.inventory


class LotLayers(NamedTuple):
    """One lot's open FIFO layers in sum. The sums are exact (amounts of one currency, far
    below 28 digits) and start from ZERO as a sum over the layers does, so they equal it to
    the exponent; a lot with no open layer has no entry, as it has no layer to sum."""

    layers: int  # how many
    negative: int  # how many of them are negative (a shortfall a receipt of the lot fills)
    qty: int
    value: Decimal


class LotValue(NamedTuple):
    lot_id: str
    qty: int
    value: Decimal


@dataclass(slots=True)
class Position:
    """One company's sku: its method, currency and layers (or average)."""

    method: Method
    currency: str
    layers: list[Layer] = field(default_factory=list)  # FIFO: open layers, oldest first
    avg_qty: int = 0  # AVERAGE
    avg_value: Decimal = ZERO
    lot_qty: dict[str, int] = field(default_factory=dict)  # AVERAGE: per lot, for reports
    last_cost: dict[str, Decimal] = field(default_factory=dict)  # lot → its last unit cost; "" → the sku's
    # FIFO: each lot's LotLayers, kept as its layers change, so that valuing the lot an event
    # touches (before and after it: the follower's valuation rows) does not sum every open
    # layer twice per movement (~9 % of the follower's CPU with ~50 layers a lot). Built from
    # `layers` at first use — a position loaded from a checkpoint gets its layers assigned
    # once, before any use — and every later change of a layer goes through this class.
    _by_lot: dict[str, LotLayers] | None = field(default=None, repr=False, compare=False)

    # ---- in ----

    def receive(self, layer_id: str, lot_id: str, qty: int, unit_cost: Decimal, at_ms: int) -> Receipt:
        if qty <= 0 or unit_cost < 0:
            raise InvariantViolation(f"receipt of {qty} at {unit_cost}: needs qty > 0 and cost ≥ 0")
        value = money(unit_cost * qty, self.currency)
        self.last_cost[lot_id] = self.last_cost[""] = unit_cost
        if self.method is Method.AVERAGE:
            inventory = self._receive_average(lot_id, qty, unit_cost, value)
        else:
            inventory = self._receive_fifo(layer_id, lot_id, qty, unit_cost, value, at_ms)
        return Receipt(value, inventory)

    def _receive_average(self, lot_id: str, qty: int, unit_cost: Decimal, value: Decimal) -> Decimal:
        before = self.avg_value
        self.lot_qty[lot_id] = self.lot_qty.get(lot_id, 0) + qty
        if self.lot_qty[lot_id] == 0:
            del self.lot_qty[lot_id]
        if self.avg_qty < 0:  # fill the shortfall back at the cost it went out at
            filled = min(qty, -self.avg_qty)
            if filled == -self.avg_qty:
                delta = -self.avg_value
            else:
                delta = -money(self.avg_value * filled / -self.avg_qty, self.currency)
            self.avg_qty += filled
            self.avg_value += delta
            qty -= filled
            value -= money(unit_cost * filled, self.currency)
        if qty:
            self.avg_qty += qty
            self.avg_value += value
        return self.avg_value - before

    def _receive_fifo(
        self, layer_id: str, lot_id: str, qty: int, unit_cost: Decimal, value: Decimal, at_ms: int
    ) -> Decimal:
        inventory = ZERO
        by_lot = self._lots_now()
        lot = by_lot.get(lot_id, _NO_LAYERS)
        if lot.negative:  # a shortfall of the lot to fill first (rare: negative stock allowed)
            inventory, qty, value, lot = self._fill_shortfall(lot_id, qty, unit_cost, value, lot)
        if qty > 0:
            self.layers.append(Layer(layer_id, lot_id, at_ms, qty, unit_cost, qty, value))
            inventory += value
            lot = LotLayers(lot.layers + 1, lot.negative, lot.qty + qty, lot.value + value)
        _set_lot(by_lot, lot_id, lot)
        return inventory

    def _fill_shortfall(
        self, lot_id: str, qty: int, unit_cost: Decimal, value: Decimal, lot: LotLayers
    ) -> tuple[Decimal, int, Decimal, LotLayers]:
        """The lot's negative layers filled, oldest first, at the cost they went out at:
        (what the inventory account gains, the qty and value left to receive, the lot after)."""
        inventory = ZERO
        layers, negative, lot_qty, lot_value = lot
        for layer in self.layers:  # bounded: one pass over the open layers
            if qty == 0:
                break
            if layer.lot_id != lot_id or layer.remaining_qty >= 0:
                continue
            filled = min(qty, -layer.remaining_qty)
            if filled == -layer.remaining_qty:
                delta = -layer.remaining_value
            else:
                delta = money(layer.unit_cost * filled, self.currency)
            layer.remaining_qty += filled
            layer.remaining_value += delta
            lot_qty, lot_value = lot_qty + filled, lot_value + delta
            if layer.remaining_qty == 0:
                negative -= 1
                layers -= layer.remaining_value == 0  # emptied: dropped below
            inventory += delta
            qty -= filled
            value -= money(unit_cost * filled, self.currency)
        self.layers = [layer for layer in self.layers if layer.remaining_qty != 0 or layer.remaining_value != 0]
        return inventory, qty, value, LotLayers(layers, negative, lot_qty, lot_value)

    def add_cost(self, lot_id: str, amount: Decimal) -> Decimal:
        """A landed cost (freight, duty) on a lot ("" = the whole sku): onto what is still
        on hand, split by remaining qty (the last layer takes the rounding). Returns the
        part that found no stock on hand (it goes to COGS)."""
        amount = money(amount, self.currency)
        if self.method is Method.AVERAGE:
            if self.avg_qty <= 0:
                return amount
            self.avg_value += amount
            return ZERO
        open_layers = [ly for ly in self.layers if ly.remaining_qty > 0 and (not lot_id or ly.lot_id == lot_id)]
        total_qty = sum(ly.remaining_qty for ly in open_layers)
        if total_qty == 0:
            return amount
        left = amount
        by_lot = self._lots_now()
        for i, layer in enumerate(open_layers):
            share = (
                left if i == len(open_layers) - 1 else money(amount * layer.remaining_qty / total_qty, self.currency)
            )
            layer.remaining_value += share
            lot = by_lot[layer.lot_id]
            by_lot[layer.lot_id] = lot._replace(value=lot.value + share)
            left -= share
        return ZERO

    # ---- out ----

    def issue(self, lot_id: str, qty: int) -> Issue:
        """Take `qty` of `lot_id` ("" = any lot, oldest first) at cost."""
        if qty <= 0:
            raise InvariantViolation(f"an issue needs qty > 0, got {qty}")
        if self.method is Method.AVERAGE:
            return self._issue_average(lot_id, qty)
        return self._issue_fifo(lot_id, qty)

    def _share(self, qty: int) -> Decimal:
        """The average value of `qty` units (all of it when they are all)."""
        if qty == self.avg_qty:
            return self.avg_value
        return money(self.avg_value * qty / self.avg_qty, self.currency)

    def _issue_average(self, lot_id: str, qty: int) -> Issue:
        on_hand = max(self.avg_qty, 0)
        taken = min(qty, on_hand)
        value = self._share(taken) if taken else ZERO
        self.avg_qty -= taken
        self.avg_value -= value
        shortfall = qty - taken
        if shortfall:
            short_value = money(self.last_cost.get("", ZERO) * shortfall, self.currency)
            self.avg_qty -= shortfall
            self.avg_value -= short_value
            value += short_value
        self._take_lot_qty(lot_id, qty)
        return Issue(qty, value, (Consumed("", lot_id, qty, value),), shortfall)

    def _take_lot_qty(self, lot_id: str, qty: int) -> None:
        """The named lot first, then the others oldest first; what is left goes negative."""
        left = qty
        for lot in [lot_id, *(lot for lot in self.lot_qty if lot != lot_id)]:  # bounded: the lots
            have = self.lot_qty.get(lot, 0)
            take = min(left, max(have, 0))
            if take:
                self.lot_qty[lot] = have - take
                left -= take
            if left == 0:
                break
        if left:
            self.lot_qty[lot_id] = self.lot_qty.get(lot_id, 0) - left
        self.lot_qty = {lot: q for lot, q in self.lot_qty.items() if q}

    def _issue_fifo(self, lot_id: str, qty: int) -> Issue:
        consumed: list[Consumed] = []
        by_lot = self._lots_now()
        left = qty
        emptied = False
        for layer in self.layers:  # oldest first; bounded by the open layers
            if left == 0:
                break
            if layer.remaining_qty <= 0 or (lot_id and layer.lot_id != lot_id):
                continue
            take = min(left, layer.remaining_qty)
            if take == layer.remaining_qty:
                value = layer.remaining_value
            else:
                value = money(layer.remaining_value * take / layer.remaining_qty, self.currency)
            layer.remaining_qty -= take
            layer.remaining_value -= value
            lot = by_lot[layer.lot_id]
            gone = layer.remaining_qty == 0 and layer.remaining_value == 0
            emptied = emptied or gone
            by_lot[layer.lot_id] = LotLayers(lot.layers - gone, lot.negative, lot.qty - take, lot.value - value)
            consumed.append(Consumed(layer.layer_id, layer.lot_id, take, value))
            left -= take
        if emptied:  # only a layer taken whole can have emptied: else the list stays as it is
            self.layers = [layer for layer in self.layers if layer.remaining_qty != 0 or layer.remaining_value != 0]
            for lot_of in {c.lot_id for c in consumed}:
                _set_lot(by_lot, lot_of, by_lot[lot_of])
        if left:
            cost = self.last_cost.get(lot_id, self.last_cost.get("", ZERO))
            value = money(cost * left, self.currency)
            self.layers.append(Layer(f"short:{lot_id}", lot_id, 0, -left, cost, -left, -value))
            consumed.append(Consumed(f"short:{lot_id}", lot_id, left, value))
            lot = by_lot.get(lot_id, _NO_LAYERS)
            by_lot[lot_id] = LotLayers(lot.layers + 1, lot.negative + 1, lot.qty - left, lot.value - value)
        return Issue(qty, sum((c.value for c in consumed), ZERO), tuple(consumed), left)

    # ---- reports ----

    @property
    def qty(self) -> int:
        if self.method is Method.AVERAGE:
            return self.avg_qty
        return sum(layer.remaining_qty for layer in self.layers)

    @property
    def value(self) -> Decimal:
        if self.method is Method.AVERAGE:
            return self.avg_value
        return sum((layer.remaining_value for layer in self.layers), ZERO)

    @property
    def unit_cost(self) -> Decimal:
        """The sku's cost now: value ÷ qty (Odoo's product cost: 6.111 in the lot test)."""
        return unit_cost_of(self.value, self.qty)

    def lot_value(self, lot_id: str) -> tuple[int, Decimal]:
        """Qty and value of one lot of a FIFO position (its layers' remainders)."""
        lot = self._lots_now().get(lot_id, _NO_LAYERS)
        return lot.qty, lot.value

    def _lots_now(self) -> dict[str, LotLayers]:
        """The per-lot sums of the FIFO layers (built once, then kept by every change)."""
        if self._by_lot is None:
            self._by_lot = lot_layers(self.layers)
        return self._by_lot

    def lots(self) -> list[LotValue]:
        """Qty and value per lot, summing exactly to the position's."""
        if self.method is Method.FIFO:
            by_lot: dict[str, tuple[int, Decimal]] = {}
            for layer in self.layers:
                q, v = by_lot.get(layer.lot_id, (0, ZERO))
                by_lot[layer.lot_id] = (q + layer.remaining_qty, v + layer.remaining_value)
            return [LotValue(lot, q, v) for lot, (q, v) in sorted(by_lot.items())]
        out: list[LotValue] = []
        lots = sorted((lot, q) for lot, q in self.lot_qty.items() if q)
        left = self.avg_value
        for i, (lot, q) in enumerate(lots):
            v = (
                left
                if i == len(lots) - 1
                else (money(self.avg_value * q / self.avg_qty, self.currency) if self.avg_qty else ZERO)
            )
            out.append(LotValue(lot, q, v))
            left -= v
        return out


_NO_LAYERS = LotLayers(0, 0, 0, ZERO)


def lot_layers(layers: list[Layer]) -> dict[str, LotLayers]:
    """Each lot's open layers in sum, oldest first (as a sum over the layers adds them)."""
    out: dict[str, LotLayers] = {}
    for layer in layers:  # bounded by the open layers
        n, neg, q, v = out.get(layer.lot_id, _NO_LAYERS)
        out[layer.lot_id] = LotLayers(
            n + 1, neg + (layer.remaining_qty < 0), q + layer.remaining_qty, v + layer.remaining_value
        )
    return out


def _set_lot(by_lot: dict[str, LotLayers], lot_id: str, lot: LotLayers) -> None:
    """A lot left with no layer has no entry (its sum is ZERO again, as over no layers)."""
    if lot.layers:
        by_lot[lot_id] = lot
    else:
        by_lot.pop(lot_id, None)
