"""The columnar body of a `LWSB` shard snapshot (snapshot version 2): the bulk of a shard —
quants, lots and the idempotency window — as per-field arrays, so a shard of 10⁶ quants
decodes in a few array conversions instead of millions of Avro records.

Layout (integers little-endian; `ints` = a typecode byte + u32 count + the array's bytes,
the narrowest of b/h/i/q that holds the column; `strs` = `ints` of indexes into the block's
string table, which holds each distinct string of the block once: code-point lengths as
`ints`, then u32 size + UTF-8 text):

    rest    u32 size + Avro (snapshot v1 schema): the catalog, headers and marks, and each
            cell without its quants, lots and tabled window entries (holds, externals, the
            window entries no table holds)
    blocks  u32 count, then per block of consecutive cells (about BLOCK_QUANTS quants and
            window entries):
        u32 cells, the string table
        quants   ints per-cell count; strs lot_id, bin, status, owner; ints qty, held
        lots     ints per-cell count; strs lot_id; ints received_at_ms, expires_at_ms, opened_at_ms
        window   ints per-cell count; u32 size + bytes `where` (per entry, in the cell's
                 order: 0 = the rest's next entry, k = table k's next row); u32 tables; per
                 table: [command type, answer type], the command's field names, u32 size +
                 their kinds, the answer's field names, u32 size + their kinds (names as
                 self-contained string columns); strs request_id; ints at_ms; a column per
                 field (none for kind `z`)

Field kinds: `s` str, `i` int, `z` always None (no column), `x` External, `g` Strategy.
A window entry goes to a table when its command and answer are of the flat types below and
every field is of one of those kinds; any other entry (a Reserve's lines, a hold view, a
finance context, a refusal) stays in the Avro rest, in its order (`where`).
Field names travel with each table, so a release whose type gained a field (with a
default) still reads the columns by name.
"""

from __future__ import annotations

import dataclasses
import struct
import sys
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from enum import StrEnum
from itertools import accumulate, repeat
from operator import attrgetter
from typing import Any, Protocol

from engine.domain.cell import WindowSource
from engine.domain.commands import (
    Adjust,
    Adjusted,
    ChangeStatus,
    Command,
    Commit,
    Consume,
    Move,
    Moved,
    Receive,
    Received,
    Release,
    Reply,
    StatusChanged,
    Strategy,
)
from engine.domain.errors import DomainError
from engine.domain.model import External, Lot, QuantKey
from engine.domain.state import CellState, DeferredWindow, QuantBalance, Refusal, Remembered, error_of

BLOCK_QUANTS = 16_384  # quants and window entries per block: bounds each column's conversion (ms)
_FLAT_COMMANDS: dict[str, type] = {
    cls.__name__: cls for cls in (Receive, Move, ChangeStatus, Commit, Release, Consume, Adjust)
}
_FLAT_ANSWERS: dict[str, type] = {cls.__name__: cls for cls in (Received, Moved, StatusChanged, Adjusted)}
_ENUMS: dict[str, type[StrEnum]] = {"x": External, "g": Strategy}
_ENUM_KINDS: dict[type, str] = {cls: kind for kind, cls in _ENUMS.items()}
_KEY_FIELDS = ("lot_id", "bin", "status", "owner")  # QuantKey's, in its order (a test checks)
_LOT_DATES = ("received_at_ms", "expires_at_ms", "opened_at_ms")  # Lot's after lot_id, in its order
_key_values = attrgetter(*_KEY_FIELDS)
_U32 = struct.Struct("<I")
_TYPECODES = (("b", 1 << 7), ("h", 1 << 15), ("i", 1 << 31), ("q", 1 << 63))
_LITTLE = sys.byteorder == "little"

TableKey = tuple[str, str, tuple[str, ...], tuple[str, ...]]  # command, answer, their field kinds


# ---- writing ----


def _ints(values: Sequence[int]) -> bytes:
    low, high = (min(values), max(values)) if values else (0, 0)
    codes = [code for code, bound in _TYPECODES if -bound <= low and high < bound]
    if not codes:
        raise OverflowError(f"an integer column spans {low}..{high}")
    column = array(codes[0], values)
    if not _LITTLE:
        column.byteswap()
    return codes[0].encode() + _U32.pack(len(column)) + column.tobytes()


class Strings:
    """A block's string table: every distinct string of the block once (a lot id appears
    in its quant, its lot, its receipt and the receipt's answer); columns are indexes."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def column(self, values: Sequence[str]) -> bytes:
        # New strings numbered in the order they first appear (as a setdefault per value
        # would), one Python step per distinct string; the indexes are looked up in C.
        index = self.index
        for value in dict.fromkeys(values):
            if value not in index:
                index[value] = len(index)
        return _ints(list(map(index.__getitem__, values)))

    def table(self) -> bytes:
        text = "".join(self.index).encode()
        return _ints([len(v) for v in self.index]) + _U32.pack(len(text)) + text


def _strs(values: Sequence[str]) -> bytes:
    """A self-contained string column (a table of its own, then the indexes)."""
    strings = Strings()
    positions = strings.column(values)
    return strings.table() + positions


def _blob(data: bytes) -> bytes:
    return _U32.pack(len(data)) + data


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_GETTERS: dict[type, Callable[[Any], tuple[Any, ...]]] = {}
_TYPE_KINDS: dict[type, str] = {type(None): "z", str: "s", int: "i", **{cls: k for k, cls in _ENUMS.items()}}
_KEYS: dict[tuple[type, tuple[type, ...], type, tuple[type, ...]], TableKey | None] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """A record type's fields, in its constructor's order (remembered per type)."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def values_of(cls: type) -> Callable[[Any], tuple[Any, ...]]:
    """All of a record's field values at once (one C call per record)."""
    getter = _GETTERS.get(cls)
    if getter is None:
        names = field_names(cls)
        single = attrgetter(names[0])
        getter = attrgetter(*names) if len(names) > 1 else lambda record: (single(record),)
        _GETTERS[cls] = getter
    return getter


def table_key(entry: Remembered) -> TableKey | None:
    """The table an entry's row goes to; None: it stays in the Avro rest. Decided by the
    types of its values (cached per combination: µs per entry)."""
    command, answer = entry.command, entry.answer
    command_cls, answer_cls = type(command), type(answer)
    if _FLAT_COMMANDS.get(command_cls.__name__) is not command_cls:
        return None
    if _FLAT_ANSWERS.get(answer_cls.__name__) is not answer_cls:
        return None
    types = (
        command_cls,
        tuple(map(type, values_of(command_cls)(command))),
        answer_cls,
        tuple(map(type, values_of(answer_cls)(answer))),
    )
    try:
        return _KEYS[types]
    except KeyError:
        pass
    kinds = tuple(_TYPE_KINDS.get(t) for t in types[1])
    answer_kinds = tuple(_TYPE_KINDS.get(t) for t in types[3])
    key: TableKey | None = None
    if None not in kinds and None not in answer_kinds:
        key = (command_cls.__name__, answer_cls.__name__, kinds, answer_kinds)  # type: ignore[assignment]  # no None
    if len(_KEYS) < 4096:  # bounded: the combinations are few (None or not, per field)
        _KEYS[types] = key
    return key


def _column(values: Sequence[Any], kind: str, strings: Strings) -> bytes:
    if kind == "z":
        return b""
    if kind == "i":
        return _ints(values)
    return strings.column(values)  # str and StrEnum values alike


def _table(key: TableKey, rows: list[Remembered], strings: Strings) -> Iterator[bytes]:
    """A window table, a column per piece."""
    name, answer_name, kinds, answer_kinds = key
    command_fields = field_names(_FLAT_COMMANDS[name])
    answer_fields = field_names(_FLAT_ANSWERS[answer_name])
    yield b"".join(
        (
            _strs([name, answer_name]),
            _strs(list(command_fields)),
            _blob("".join(kinds).encode()),
            _strs(list(answer_fields)),
            _blob("".join(answer_kinds).encode()),
            strings.column([r.request_id for r in rows]),
            _ints([r.at_ms for r in rows]),
        )
    )
    # Rows to columns in C: each record's values at once, then transposed.
    command_columns = zip(*map(values_of(_FLAT_COMMANDS[name]), [r.command for r in rows]), strict=True)
    for values, kind in zip(command_columns, kinds, strict=True):
        yield _column(values, kind, strings)
    answer_columns = zip(*map(values_of(_FLAT_ANSWERS[answer_name]), [r.answer for r in rows]), strict=True)
    for values, kind in zip(answer_columns, answer_kinds, strict=True):
        yield _column(values, kind, strings)


def block_bytes(cells: Sequence[CellState], keys: Sequence[Sequence[TableKey | None]]) -> Iterator[bytes]:
    """One block's bytes in pieces (one column at a time: each piece is a bounded unit of
    work for a caller that serves between pieces). `keys[i][j]`: the table of cell i's
    j-th window entry (None: in the rest). The block's string table comes first, so it
    is written last: the columns wait in a list (one block's worth)."""
    strings, parts = Strings(), []
    quants = [b for c in cells for b in c.quants]
    parts.append(_ints([len(c.quants) for c in cells]))
    key_columns = zip(*map(_key_values, [b.key for b in quants]), strict=True)
    for _ in _KEY_FIELDS:
        parts.append(strings.column(next(key_columns, ())))
        yield b""
    parts.append(_ints([b.qty for b in quants]) + _ints([b.held for b in quants]))
    lots = [lot for c in cells for lot in c.lots]
    parts.append(_ints([len(c.lots) for c in cells]) + strings.column([lot.lot_id for lot in lots]))
    parts.append(b"".join(_ints([getattr(lot, f) for lot in lots]) for f in _LOT_DATES))
    yield b""
    tables: dict[TableKey, list[Remembered]] = {}
    numbers: dict[TableKey, int] = {}  # 1-based, in order of first appearance
    where = bytearray()
    for cell, cell_keys in zip(cells, keys, strict=True):
        for entry, key in zip(cell.remembered, cell_keys, strict=True):
            if key is None:
                where.append(0)
                continue
            number = numbers.get(key)
            if number is None:
                if len(numbers) == 255:
                    raise OverflowError("more than 255 window tables in one block")
                number = numbers[key] = len(numbers) + 1
                tables[key] = []
            where.append(number)
            tables[key].append(entry)
    parts.append(_ints([len(c.remembered) for c in cells]) + _blob(bytes(where)) + _U32.pack(len(tables)))
    for key, rows in tables.items():
        for piece in _table(key, rows, strings):
            parts.append(piece)
            yield b""
    yield _U32.pack(len(cells)) + strings.table()
    yield from parts


# ---- reading ----


class Reader:
    """Reads the pieces above from one buffer; a short buffer raises ValueError."""

    def __init__(self, data: bytes | memoryview, offset: int = 0) -> None:
        self.data = memoryview(data)
        self.at = offset
        self.strings: list[str] = []  # the current block's string table

    def take(self, n: int) -> memoryview:
        end = self.at + n
        if n < 0 or end > len(self.data):
            raise ValueError(f"snapshot truncated at byte {self.at} (wanted {n} more)")
        piece, self.at = self.data[self.at : end], end
        return piece

    def u32(self) -> int:
        value: int = _U32.unpack(self.take(4))[0]
        return value

    def blob(self) -> bytes:
        return bytes(self.take(self.u32()))

    def ints(self) -> list[int]:
        return self.int_array().tolist()

    def int_array(self) -> array[int]:
        """An integer column as it is stored (no int object per value until one is read)."""
        code = bytes(self.take(1)).decode("ascii", "replace")
        if code not in ("b", "h", "i", "q"):
            raise ValueError(f"unknown integer column type {code!r}")
        column = array(code)
        column.frombytes(self.take(self.u32() * column.itemsize))
        if not _LITTLE:
            column.byteswap()
        return column

    def string_table(self) -> list[str]:
        lengths = self.ints()
        text = str(self.take(self.u32()), "utf-8")
        ends = list(accumulate(lengths))
        if (ends and ends[-1] != len(text)) or any(n < 0 for n in lengths):
            raise ValueError("a string table's lengths do not match its text")
        return [text[a:b] for a, b in zip([0, *ends][:-1], ends, strict=True)]

    def strs(self) -> list[str]:
        """A column of the current block's strings (IndexError: an index beyond them)."""
        return list(map(self.strings.__getitem__, self.int_array()))

    def own_strs(self) -> list[str]:
        """A self-contained string column (`_strs`)."""
        table = self.string_table()
        return [table[i] for i in self.ints()]


def _split(values: list[Any], counts: list[int]) -> list[list[Any]]:
    out, at = [], 0
    for n in counts:
        out.append(values[at : at + n])
        at += n
    if at != len(values):
        raise ValueError(f"per-cell counts add up to {at}, the column holds {len(values)}")
    return out


def _decoded_column(reader: Reader, kind: str, rows: int) -> list[Any]:
    if kind == "z":
        return [None] * rows
    if kind == "i":
        values: list[Any] = reader.ints()
    elif kind == "s":
        values = reader.strs()
    elif kind in _ENUMS:
        members = {m.value: m for m in _ENUMS[kind]}  # a dict lookup, not Enum.__call__ per row
        values = [members[v] for v in reader.strs()]
    else:
        raise ValueError(f"unknown field kind {kind!r}")
    if len(values) != rows:
        raise ValueError(f"a column of {len(values)} values in a table of {rows} rows")
    return values


def records(cls: type, columns: Sequence[Sequence[Any]]) -> list[Any]:
    """Records of a slotted dataclass from one column per field, in its field order.

    Built the way the dataclass's own __init__ builds a frozen record (every slot set
    past the frozen __setattr__), one C-level pass per column instead of a Python call
    per record: ~4x faster for a command of 14 fields. Only for plain records (no
    __post_init__: there is nothing to re-validate in a state a release wrote)."""
    names = field_names(cls)
    if len(columns) != len(names):
        raise ValueError(f"{cls.__name__}: {len(columns)} columns for {len(names)} fields")
    rows = len(columns[0]) if columns else 0
    if hasattr(cls, "__post_init__") or any(len(c) != rows for c in columns):
        return list(map(cls, *columns))  # strict: ragged columns raise here
    made: list[Any] = list(map(object.__new__, repeat(cls, rows)))
    for name, column in zip(names, columns, strict=True):
        deque(map(getattr(cls, name).__set__, made, column), maxlen=0)
    return made


def _build(cls: type, names: list[str], columns: list[list[Any]]) -> list[Any]:
    if tuple(names) == field_names(cls):
        return records(cls, columns)  # the fields as this release orders them
    # Another release's field list: by name (fields it lacked take their defaults).
    return [cls(**dict(zip(names, row, strict=True))) for row in zip(*columns, strict=True)]


def _read_table(reader: Reader) -> list[Remembered]:
    name, answer_name = reader.own_strs()
    command_cls, answer_cls = _FLAT_COMMANDS.get(name), _FLAT_ANSWERS.get(answer_name)
    if command_cls is None or answer_cls is None:
        raise ValueError(f"unknown window table {name}/{answer_name}")
    names, kinds = reader.own_strs(), reader.blob().decode("ascii")
    answer_names, answer_kinds = reader.own_strs(), reader.blob().decode("ascii")
    if len(names) != len(kinds) or len(answer_names) != len(answer_kinds):
        raise ValueError(f"window table {name}/{answer_name}: field names and kinds differ in number")
    request_ids, at_ms = reader.strs(), reader.ints()
    rows = len(request_ids)
    commands = _build(command_cls, names, [_decoded_column(reader, k, rows) for k in kinds])
    answers = _build(answer_cls, answer_names, [_decoded_column(reader, k, rows) for k in answer_kinds])
    return records(Remembered, (request_ids, at_ms, commands, answers))


class Column(Protocol):
    """A decoded column, read a row at a time (an int array, or one of the two below)."""

    def __getitem__(self, row: int, /) -> Any: ...

    def __len__(self) -> int: ...


class _Indexed:
    """A string (or enum) column left as indexes into its values: `column[row]`."""

    __slots__ = ("indexes", "values")

    def __init__(self, values: Sequence[Any] | dict[int, Any], indexes: array[int]) -> None:
        self.values, self.indexes = values, indexes

    def __getitem__(self, row: int) -> Any:
        return self.values[self.indexes[row]]

    def __len__(self) -> int:
        return len(self.indexes)


class _Constant:
    """A column of kind `z`: None in every row."""

    __slots__ = ("rows",)

    def __init__(self, rows: int) -> None:
        self.rows = rows

    def __getitem__(self, row: int) -> None:
        return None

    def __len__(self) -> int:
        return self.rows


class TableRows:
    """A window table kept encoded (engine.domain.cell.WindowSource): its columns as read,
    a row built into its command and answer only when asked."""

    __slots__ = ("answer_cls", "answer_columns", "answer_names", "command_cls", "command_columns", "command_names")

    def __init__(
        self,
        command: tuple[type, list[str], list[Column]],
        answer: tuple[type, list[str], list[Column]],
    ) -> None:
        self.command_cls, names, self.command_columns = command
        self.answer_cls, answer_names, self.answer_columns = answer
        # None: the fields as this release orders them (positional); else by name.
        self.command_names = None if tuple(names) == field_names(self.command_cls) else tuple(names)
        self.answer_names = None if tuple(answer_names) == field_names(self.answer_cls) else tuple(answer_names)

    def entry(self, row: int) -> tuple[Command, Reply | DomainError]:
        command: Command = _row(self.command_cls, self.command_names, self.command_columns, row)
        answer: Reply = _row(self.answer_cls, self.answer_names, self.answer_columns, row)
        return command, answer


def _row(cls: type, names: tuple[str, ...] | None, columns: list[Column], row: int) -> Any:
    values = [column[row] for column in columns]
    return cls(*values) if names is None else cls(**dict(zip(names, values, strict=True)))


class RestRows:
    """A cell's window entries that no table holds (the rest's), as a WindowSource."""

    __slots__ = ("entries",)

    def __init__(self, entries: tuple[Remembered, ...]) -> None:
        self.entries = entries

    def entry(self, row: int) -> tuple[Command, Reply | DomainError]:
        entry = self.entries[row]
        answer = entry.answer
        return entry.command, error_of(answer) if isinstance(answer, Refusal) else answer


def _deferred_column(reader: Reader, kind: str, rows: int) -> Column:
    if kind == "z":
        return _Constant(rows)
    if kind == "i":
        column: Column = reader.int_array()
    elif kind == "s":
        column = _Indexed(reader.strings, reader.int_array())
    elif kind in _ENUMS:
        indexes = reader.int_array()
        members = {m.value: m for m in _ENUMS[kind]}
        column = _Indexed({i: members[reader.strings[i]] for i in set(indexes)}, indexes)  # KeyError: damaged
    else:
        raise ValueError(f"unknown field kind {kind!r}")
    if len(column) != rows:
        raise ValueError(f"a column of {len(column)} values in a table of {rows} rows")
    return column


def _read_deferred_table(reader: Reader) -> tuple[list[str], array[int], TableRows]:
    """A window table left encoded: its request ids, times, and its rows as a source."""
    name, answer_name = reader.own_strs()
    command_cls, answer_cls = _FLAT_COMMANDS.get(name), _FLAT_ANSWERS.get(answer_name)
    if command_cls is None or answer_cls is None:
        raise ValueError(f"unknown window table {name}/{answer_name}")
    names, kinds = reader.own_strs(), reader.blob().decode("ascii")
    answer_names, answer_kinds = reader.own_strs(), reader.blob().decode("ascii")
    if len(names) != len(kinds) or len(answer_names) != len(answer_kinds):
        raise ValueError(f"window table {name}/{answer_name}: field names and kinds differ in number")
    for wanted in (names, answer_names):  # unknown names fail now, not at a retry
        unknown = set(wanted) - set(field_names(command_cls if wanted is names else answer_cls))
        if unknown:
            raise ValueError(f"window table {name}/{answer_name}: unknown fields {sorted(unknown)}")
    request_ids, at_ms = reader.strs(), reader.int_array()
    rows = len(request_ids)
    if len(at_ms) != rows:
        raise ValueError(f"window table {name}/{answer_name}: {len(at_ms)} times for {rows} rows")
    commands = [_deferred_column(reader, k, rows) for k in kinds]
    answers = [_deferred_column(reader, k, rows) for k in answer_kinds]
    return request_ids, at_ms, TableRows((command_cls, names, commands), (answer_cls, answer_names, answers))


def read_block(reader: Reader, rest: Iterator[CellState], deferred: bool = False) -> list[CellState]:
    """The next block's cells, completed from the rest's cells (in order). `deferred`: each
    cell's window left encoded (CellState.deferred), built entry by entry when asked."""
    n = reader.u32()
    reader.strings = reader.string_table()
    counts = reader.ints()
    lot_ids, bins, statuses, owners = reader.strs(), reader.strs(), reader.strs(), reader.strs()
    keys = records(QuantKey, (lot_ids, bins, statuses, owners))
    quants = _split(records(QuantBalance, (keys, reader.ints(), reader.ints())), counts)
    lot_counts = reader.ints()
    lots = _split(records(Lot, (reader.strs(), reader.ints(), reader.ints(), reader.ints())), lot_counts)
    window_counts, where = reader.ints(), reader.blob()
    if deferred:
        tables = [_read_deferred_table(reader) for _ in range(reader.u32())]
    else:
        eager = [iter(_read_table(reader)) for _ in range(reader.u32())]
    if not n == len(counts) == len(lot_counts) == len(window_counts) or sum(window_counts) != len(where):
        raise ValueError("a block's per-cell counts disagree")
    cells, at, cursors = [], 0, [0] * (len(tables) if deferred else 0)
    for i in range(n):
        cell = next(rest, None)
        if cell is None:
            raise ValueError("more columnar cells than cells in the rest")
        kinds = where[at : at + window_counts[i]]
        if deferred:
            window: tuple[Remembered, ...] = ()
            later: DeferredWindow | None = _deferred_window(cell, kinds, tables, cursors)
        else:
            from_rest = iter(cell.remembered)
            window, later = tuple(next(from_rest) if k == 0 else next(eager[k - 1]) for k in kinds), None
        at += window_counts[i]
        cells.append(
            CellState(
                cell.sku,
                cell.site,
                cell.opened_shelf_life_ms,
                cell.seq,
                tuple(quants[i]),
                cell.externals,
                tuple(lots[i]),
                cell.active,
                cell.resolved,
                window,
                cell.next_expiry_ms,
                cell.zeroed,
                cell.devices,
                later,
            )
        )
    if deferred and cursors != [len(request_ids) for request_ids, _, _ in tables]:
        raise ValueError("a block's window tables hold rows no cell takes")
    return cells


Table = tuple[list[str], "array[int]", TableRows]


def _deferred_window(cell: CellState, kinds: bytes, tables: list[Table], cursors: list[int]) -> DeferredWindow | None:
    """A cell's window entries `kinds` (0 = the rest's next, k = table k's next row), left
    encoded; `cursors[k - 1]`: table k's next row (the block's earlier cells took those
    before it), advanced here."""
    if not kinds:
        if cell.remembered:
            raise ValueError("a cell's window entries outnumber its window")
        return None
    first = kinds[0]
    if first and not cell.remembered and kinds.count(first) == len(kinds):
        # One table holds the cell's whole window (a window of receipts): slices, no loop.
        request_ids, at_ms, source = tables[first - 1]
        start = cursors[first - 1]
        end = cursors[first - 1] = start + len(kinds)
        if end > len(request_ids):
            raise ValueError("a cell takes more rows than its window table holds")
        return DeferredWindow(request_ids[start:end], at_ms[start:end], [source] * len(kinds), range(start, end))
    return _mixed_window(cell, kinds, tables, cursors)


def _mixed_window(cell: CellState, kinds: bytes, tables: list[Table], cursors: list[int]) -> DeferredWindow:
    """`_deferred_window` entry by entry: entries of several tables, or of the rest."""
    from_rest = RestRows(cell.remembered)
    request_ids: list[str] = []
    at_ms: list[int] = []
    sources: list[WindowSource] = []
    rows: list[int] = []
    rest_row = 0
    for k in kinds:
        if k == 0:
            entry = cell.remembered[rest_row]  # IndexError: fewer rest entries than the where says
            request_ids.append(entry.request_id)
            at_ms.append(entry.at_ms)
            sources.append(from_rest)
            rows.append(rest_row)
            rest_row += 1
            continue
        table_ids, table_at_ms, source = tables[k - 1]
        row = cursors[k - 1]
        cursors[k - 1] = row + 1
        request_ids.append(table_ids[row])  # IndexError: more rows taken than the table holds
        at_ms.append(table_at_ms[row])
        sources.append(source)
        rows.append(row)
    if rest_row != len(cell.remembered):
        raise ValueError("a cell's rest holds window entries its where does not place")
    return DeferredWindow(request_ids, at_ms, sources, rows)
