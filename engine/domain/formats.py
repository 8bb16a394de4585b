"""What stops recovery when a stored journal entry or snapshot is in a format this release
cannot read (DESIGN.md §9): a typed error naming the format, its version and where it lies.

Decoders are pure and do not know where their bytes came from, so they raise
`UnsupportedFormat`; the journal or snapshot store that read the bytes knows the shard
and the position and turns it into `UnreadableFormat`, which recovery stops on (it is a
`JournalCorrupt`: nothing is skipped, nothing is guessed).
"""

from __future__ import annotations

from engine.domain.ports import JournalCorrupt


class UnsupportedFormat(ValueError):
    """Raised by a decoder: `format` at `version` (None: not even a version could be read)."""

    def __init__(self, format: str, version: int | None, reason: str) -> None:
        super().__init__(f"{format} version {version}: {reason}" if version is not None else f"{format}: {reason}")
        self.format, self.version, self.reason = format, version, reason


class UnreadableFormat(JournalCorrupt):
    """A journal entry or snapshot of shard `shard` at `position` (the stream sequence) is in
    `format` at `version`, which this release cannot read: recovery stops here."""

    def __init__(self, stream: str, position: int, shard: str, format: str, version: int | None, reason: str) -> None:
        described = f"{format} version {version}" if version is not None else format
        super().__init__(stream, position, f"shard {shard}: {described} cannot be read by this release: {reason}")
        self.shard, self.format, self.version = shard, format, version

    @classmethod
    def at(cls, stream: str, position: int, shard: str, cause: UnsupportedFormat) -> UnreadableFormat:
        return cls(stream, position, shard, cause.format, cause.version, cause.reason)
