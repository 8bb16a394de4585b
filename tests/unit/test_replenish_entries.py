"""What a listing learns from the suggestion index before it reads a value."""

from __future__ import annotations

from engine.replenish.store import SuggestionEntry, entries_after, pair_key


def test_an_entry_rules_out_only_what_it_knows() -> None:
    known, unknown = SuggestionEntry("k", "open", False), SuggestionEntry("k")
    assert known.may_match("", False)
    assert known.may_match("open", False)
    assert not known.may_match("accepted", False)
    assert not known.may_match("", True)
    assert unknown.may_match("accepted", True)  # written before states were kept: read the value


def test_a_site_is_its_own_keys_only() -> None:
    keys = sorted(pair_key(sku, site) for site in ("A", "AB", "B", "A B") for sku in ("1", "2"))
    entry = SuggestionEntry
    assert [e.key for e in entries_after(keys, "", 10, "A", entry)] == [pair_key("1", "A"), pair_key("2", "A")]
    assert [e.key for e in entries_after(keys, pair_key("1", "A"), 10, "A", entry)] == [pair_key("2", "A")]
    assert entries_after(keys, pair_key("2", "A"), 10, "A", entry) == []
    assert [e.key for e in entries_after(keys, "", 3, "", entry)] == keys[:3]
    assert entries_after(keys, keys[-1], 3, "", entry) == []


async def test_an_index_that_cannot_load_answers_unavailable() -> None:
    """The bucket says it holds suggestions, none arrives: the listing is UNAVAILABLE (retry),
    not an INTERNAL error, and it does not wait past its bound."""
    import pytest

    from adapters.nats.replenish_index import SuggestionIndex
    from engine.domain.errors import Unavailable

    class Sub:
        delivered = 0

        async def consumer_info(self) -> object:
            return type("Info", (), {"num_pending": 5})()

    class Js:
        async def subscribe(self, *args: object, **kwargs: object) -> Sub:
            return Sub()

    class Nc:
        is_closed = False

    async def client() -> tuple[Nc, Js]:
        return Nc(), Js()

    index = SuggestionIndex(client, "KV_b", "$KV.b.s.", lambda token: token)  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="did not load within"):
        await index.entries("", 10, "", ready_timeout_s=0.05)
