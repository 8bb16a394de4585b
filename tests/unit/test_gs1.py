"""GS1 barcodes (engine.domain.gs1): the forms scanners send, every refusal, round trips."""

from __future__ import annotations

import pickle
import re
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.domain.gs1 import (
    GS,
    MAX_INPUT_CHARS,
    Gs1Data,
    Gs1Error,
    encode_gs1,
    gtin_check_digit,
    normalize_gtin,
    parse_gs1,
)

# Written out here, not imported: the test is an independent reading of the spec.
SET82 = "!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
GTIN = "09506000134352"  # the GTIN of the GS1 General Specifications' examples
SSCC = "106141412345678908"


def test_set82_has_82_characters() -> None:
    assert len(set(SET82)) == 82


# --- check digits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first13", "check"),
    [("0950600013435", 2), ("0400638133393", 1), ("0003600029145", 2), ("1234567890123", 1), ("0000000000000", 0)],
)
def test_gtin_check_digit(first13: str, check: int) -> None:
    assert gtin_check_digit(first13) == check


@pytest.mark.parametrize("bad", ["", "095060001343", "09506000134352", "095060001343x", "0950600013435²"])
def test_gtin_check_digit_wants_13_ascii_digits(bad: str) -> None:
    with pytest.raises(Gs1Error):
        gtin_check_digit(bad)


@pytest.mark.parametrize(
    ("code", "gtin14"),
    [
        ("96385074", "00000096385074"),  # GTIN-8 (EAN-8)
        ("036000291452", "00036000291452"),  # GTIN-12 (UPC-A)
        ("4006381333931", "04006381333931"),  # GTIN-13 (EAN-13)
        (GTIN, GTIN),
    ],
)
def test_normalize_gtin(code: str, gtin14: str) -> None:
    assert normalize_gtin(code) == gtin14


@pytest.mark.parametrize(
    ("code", "position"),
    [("4006381333932", 12), ("40063813339", 0), ("400638133393a", 12), ("", 0), ("4006381 33931", 7)],
)
def test_normalize_gtin_refuses(code: str, position: int) -> None:
    with pytest.raises(Gs1Error) as err:
        normalize_gtin(code)
    assert err.value.position == position


# --- the forms scanners send -------------------------------------------------------------

EXPECTED = Gs1Data(gtin=GTIN, lot="ABC123", expiry=date(2026, 12, 31), serial="XYZ")


@pytest.mark.parametrize(
    "text",
    [
        f"(01){GTIN}(17)261231(10)ABC123(21)XYZ",
        f"(01){GTIN}(10)ABC123(17)261231(21)XYZ",  # order is free
        f"01{GTIN}17261231" + "10ABC123\x1d21XYZ",
        f"01{GTIN}10ABC123\x1d17261231" + "21XYZ",  # no GS after a fixed-length field
        f"]C101{GTIN}17261231" + "10ABC123\x1d21XYZ",
        f"]d201{GTIN}17261231" + "10ABC123\x1d21XYZ",
        f"]Q301{GTIN}17261231" + "10ABC123\x1d21XYZ",
        f"]e001{GTIN}17261231" + "10ABC123\x1d21XYZ",
        f"]d2\x1d01{GTIN}17261231" + "10ABC123\x1d21XYZ\x1d",  # leading FNC1, trailing GS
        f"01{GTIN}\x1d17261231" + "10ABC123\x1d21XYZ",  # redundant GS after a fixed field
        f"01{GTIN}17261231" + "10ABC123<GS>21XYZ",
        f"01{GTIN}17261231" + "10ABC123{GS}21XYZ",
        f"]d201{GTIN}17261231" + "10ABC123{GS}21XYZ\r\n",  # keyboard-wedge CR/LF
        f"(01){GTIN}(17)261231(10)ABC123<GS>(21)XYZ",  # a separator before "(" is harmless
    ],
)
def test_forms_of_one_scan(text: str) -> None:
    assert parse_gs1(text) == EXPECTED


@pytest.mark.parametrize(
    ("text", "gtin"),
    [
        ("96385074", "00000096385074"),
        ("036000291452", "00036000291452"),
        ("4006381333931", "04006381333931"),
        (GTIN, GTIN),
        ("]E04006381333931", "04006381333931"),
        ("]E496385074", "00000096385074"),
    ],
)
def test_a_plain_upc_or_ean_scan_is_just_a_gtin(text: str, gtin: str) -> None:
    assert parse_gs1(text) == Gs1Data(gtin=gtin)


def test_an_element_string_that_looks_like_a_gtin_needs_its_symbology_id() -> None:
    with pytest.raises(Gs1Error, match=r"prefix \]C1"):
        parse_gs1("17261231")
    assert parse_gs1("]C117261231") == Gs1Data(expiry=date(2026, 12, 31))
    assert encode_gs1(Gs1Data(expiry=date(2026, 12, 31))) == "]C117261231"


def test_all_fields_and_extras() -> None:
    text = f"(00){SSCC}(02){GTIN}(37)48(10)L-7/2(11)250115(15)270600(20)03(240)REF 1(91)a"
    with pytest.raises(Gs1Error, match=r"' ' at position \d+ is outside GS1 character set 82"):
        parse_gs1(text)
    data = parse_gs1(text.replace("REF 1", "REF1"))
    assert data == Gs1Data(
        lot="L-7/2",
        production_date=date(2025, 1, 15),
        best_before=date(2027, 6, 30),
        count=48,
        extra=(("00", SSCC), ("02", GTIN), ("20", "03"), ("240", "REF1"), ("91", "a")),
    )
    assert parse_gs1(f"01{GTIN}3012") == Gs1Data(gtin=GTIN, count=12)
    assert parse_gs1(f"01{GTIN}21SN1\x1d400PO-99\x1d2505") == Gs1Data(
        gtin=GTIN, serial="SN1", extra=(("400", "PO-99"), ("250", "5"))
    )


@pytest.mark.parametrize(
    ("yymmdd", "day"),
    [
        ("261200", date(2026, 12, 31)),
        ("240200", date(2024, 2, 29)),
        ("250200", date(2025, 2, 28)),
        ("260400", date(2026, 4, 30)),
    ],
)
def test_day_00_means_the_last_day_of_the_month(yymmdd: str, day: date) -> None:
    assert parse_gs1(f"(01){GTIN}(17){yymmdd}").expiry == day


def test_expiry_is_usable_through_the_whole_expiry_day() -> None:
    data = parse_gs1(f"(01){GTIN}(17)261231")
    next_day = datetime(2027, 1, 1, tzinfo=UTC)
    assert data.expires_at_ms() == int(next_day.timestamp()) * 1000
    assert Gs1Data(gtin=GTIN).expires_at_ms() == 0  # no expiry: never expires


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "ai", "position", "match"),
    [
        (f"(01){GTIN}(23)X", "23", 18, r"unknown application identifier \(23\)"),
        (f"01{GTIN}3103000150", "3103", 16, "unknown application identifier '3103'"),
        (f"01{GTIN}2", "", -1, "unknown application identifier"),
        ("(01)09506000134353", "01", 17, "check digit 3 at position 17, expected 2"),
        (f"(00){SSCC[:-1]}9", "00", 21, "check digit"),
        (f"(02){GTIN[:-1]}0", "02", 17, "check digit"),
        (f"(01){GTIN}(17)261331", "17", 24, "month 13"),
        (f"(01){GTIN}(17)261232", "17", 26, "day 32"),
        (f"(01){GTIN}(17)260230", "17", 26, "day 30 .* 2026-02"),
        (f"(01){GTIN}(17)250229", "17", 26, "day 29 .* 2025-02"),  # not a leap year
        (f"(01){GTIN}(17)2612", "17", 22, "needs 6 characters, got 4"),
        (f"(01){GTIN}(17)2612311", "17", 22, "needs 6 characters, got 7"),
        (f"01{GTIN}172612", "17", 18, "needs 6 characters, got 4"),
        (f"(01){GTIN}(17)26A231", "17", 24, "'A' at position 24 is not a digit"),
        ("(01)0950600013435", "01", 4, "needs 14 characters"),
        (f"(01){GTIN}(10)" + "A" * 21, "10", 22, "21 characters, at most 20"),
        (f"01{GTIN}10" + "A" * 21, "10", 18, "21 characters, at most 20"),
        (f"(01){GTIN}(21)" + "S" * 21, "21", 22, "at most 20"),
        (f"(01){GTIN}(30)123456789", "30", 22, "at most 8"),
        (f"(01){GTIN}(37)12a", "37", 24, "not a digit"),
        (f"(01){GTIN}(400)" + "P" * 31, "400", 23, "at most 30"),
        ("(91)" + "x" * 91, "91", 4, "at most 90"),
        (f"(01){GTIN}(10)", "10", 22, "empty"),
        (f"01{GTIN}10\x1d21X", "10", 18, "empty"),
        (f"(01){GTIN}(10)AB#1", "10", 24, "'#' at position 24 is outside GS1 character set 82"),
        (f"(01){GTIN}(10)AB C", "10", 24, "outside GS1 character set 82"),
        (f"(01){GTIN}(10)ÄB", "10", 22, "outside GS1 character set 82"),
        (f"(01){GTIN}(10)AB<GS>C", "10", 24, "group separator at position"),
        (f"(01){GTIN}(01){GTIN}", "01", 22, "repeats"),
        (f"(01){GTIN}(30)5(37)5", "37", 27, "repeats"),
        (f"01{GTIN}", "", 0, ""),  # a control: valid
        (f"01{GTIN} ", "", 16, "unknown application identifier"),
        (f"(01){GTIN}x", "01", 4, "needs 14 characters, got 15"),
        (f"x(01){GTIN}", "", 0, "unknown application identifier"),
        ("(1)2", "", 0, r"expected '\(AI\)' at position 0"),
        ("]X0" + GTIN, "", 0, "unsupported symbology identifier"),
        ("]d2", "", 3, "empty scan"),
        ("", "", 0, "empty scan"),
        ("]E0409506000134352", "", 3, "not 8, 12, 13 or 14"),
        ("4006381333932", "", 12, r"check digit 2 .* expected 1; prefix \]C1"),
    ],
)
def test_refusals_say_what_and_where(text: str, ai: str, position: int, match: str) -> None:
    if not match:
        parse_gs1(text)
        return
    with pytest.raises(Gs1Error, match=match) as err:
        parse_gs1(text)
    if ai:
        assert err.value.ai == ai
        assert f"({ai})" in str(err.value) or f"'{ai}" in str(err.value)
    if position >= 0:
        assert err.value.position == position
        assert str(position) in str(err.value)


def test_input_is_bounded() -> None:
    long_internal = f"(01){GTIN}" + "".join(f"({n})" + "x" * 90 for n in range(91, 97))
    assert len(long_internal) > MAX_INPUT_CHARS
    with pytest.raises(Gs1Error, match="at most 512"):
        parse_gs1(long_internal)
    with pytest.raises(Gs1Error, match="at most 512"):
        parse_gs1("0" * (MAX_INPUT_CHARS + 1))


def test_errors_pickle_with_their_data() -> None:
    with pytest.raises(Gs1Error) as err:
        parse_gs1(f"(01){GTIN}(17)261331")
    again = pickle.loads(pickle.dumps(err.value))
    assert (again.message, again.ai, again.position) == (err.value.message, "17", 24)
    assert isinstance(again, ValueError)


# --- writing -----------------------------------------------------------------------------


def test_encode_examples() -> None:
    data = Gs1Data(gtin=GTIN, lot="ABC123", expiry=date(2026, 12, 31), serial="XYZ", count=3)
    assert encode_gs1(data, human_readable=True) == f"(01){GTIN}(17)261231(30)3(10)ABC123(21)XYZ"
    assert encode_gs1(data) == f"01{GTIN}17261231" + "303\x1d10ABC123\x1d21XYZ"
    pallet = Gs1Data(count=48, extra=(("00", SSCC), ("02", GTIN)))
    assert encode_gs1(pallet, human_readable=True) == f"(37)48(00){SSCC}(02){GTIN}"


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (Gs1Data(), "nothing to encode"),
        (Gs1Data(gtin="4006381333931"), "needs 14 characters"),
        (Gs1Data(gtin="09506000134353"), "check digit"),
        (Gs1Data(gtin=GTIN, lot="A" * 21), "at most 20"),
        (Gs1Data(gtin=GTIN, lot="a b"), "outside GS1 character set 82"),
        (Gs1Data(gtin=GTIN, lot="A<GS>B"), "group separator at position"),
        (Gs1Data(gtin=GTIN, expiry=date(1999, 12, 31)), "outside 2000–2099"),
        (Gs1Data(gtin=GTIN, count=-1), "not a digit"),
        (Gs1Data(gtin=GTIN, count=100_000_000), "at most 8"),
        (Gs1Data(gtin=GTIN, extra=(("10", "L"),)), "own Gs1Data field"),
        (Gs1Data(gtin=GTIN, extra=(("3103", "000150"),)), "unknown application identifier"),
        (Gs1Data(gtin=GTIN, extra=(("91", "a"), ("91", "b"))), "twice"),
        (Gs1Data(gtin=GTIN, extra=(("12", "261331"),)), "month 13"),
        (Gs1Data(gtin=GTIN, extra=tuple((str(n), "x" * 90) for n in range(91, 97))), "over 512"),
    ],
)
def test_encode_refuses_what_parse_would_refuse(data: Gs1Data, match: str) -> None:
    for human_readable in (False, True):
        with pytest.raises(Gs1Error, match=match):
            encode_gs1(data, human_readable=human_readable)


def test_human_readable_refuses_a_value_that_would_read_as_an_ai() -> None:
    data = Gs1Data(gtin=GTIN, lot="A(21)B")
    with pytest.raises(Gs1Error, match="would read as an AI"):
        encode_gs1(data, human_readable=True)
    assert parse_gs1(encode_gs1(data)) == data  # the raw form has no such ambiguity
    assert parse_gs1(encode_gs1(Gs1Data(gtin=GTIN, lot="(A)(1"), human_readable=True)).lot == "(A)(1"


# --- round trips -------------------------------------------------------------------------

HR_AI = re.compile(r"\([0-9]{2,4}\)")


@st.composite
def gtins(draw: st.DrawFn) -> str:
    body = draw(st.text("0123456789", min_size=13, max_size=13))
    return body + str(gtin_check_digit(body))


@st.composite
def ssccs(draw: st.DrawFn) -> str:
    body = draw(st.text("0123456789", min_size=17, max_size=17))
    # GS1 mod-10 by hand (weights 3, 1, … from the right), independent of the module.
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return body + str((10 - total % 10) % 10)


def text82(max_size: int) -> st.SearchStrategy[str]:
    # "<GS>" is made of set-82 characters but reads back as a separator: encode refuses it.
    return st.text(SET82, min_size=1, max_size=max_size).filter(lambda s: "<GS>" not in s)


dates = st.dates(date(2000, 1, 1), date(2099, 12, 31))
yymmdd = dates.map(lambda d: d.strftime("%y%m%d"))
EXTRA_VALUES: dict[str, st.SearchStrategy[str]] = {
    "00": ssccs(),
    "02": gtins(),
    "12": yymmdd,
    "13": yymmdd,
    "16": yymmdd,
    "20": st.text("0123456789", min_size=2, max_size=2),
    **{ai: text82(30) for ai in ("240", "241", "250", "251", "400")},
    **{str(n): text82(90) for n in range(91, 100)},
}
extras = st.lists(
    st.sampled_from(sorted(EXTRA_VALUES)).flatmap(lambda ai: EXTRA_VALUES[ai].map(lambda v: (ai, v))),
    max_size=3,
    unique_by=lambda pair: pair[0],
).map(tuple)

gs1_data = st.builds(
    Gs1Data,
    gtin=st.one_of(st.just(""), gtins()),
    lot=st.one_of(st.just(""), text82(20)),
    expiry=st.none() | dates,
    best_before=st.none() | dates,
    production_date=st.none() | dates,
    serial=st.one_of(st.just(""), text82(20)),
    count=st.none() | st.integers(0, 99_999_999),
    extra=extras,
).filter(lambda d: d != Gs1Data())


def human_readable_safe(data: Gs1Data) -> bool:
    values = [data.lot, data.serial, *(v for _, v in data.extra)]
    return not any(HR_AI.search(v) for v in values)


@settings(max_examples=300, deadline=None)
@given(gs1_data)
def test_raw_round_trip(data: Gs1Data) -> None:
    text = encode_gs1(data)
    assert parse_gs1(text) == data
    assert parse_gs1(text.replace(GS, "<GS>")) == data
    assert parse_gs1(("]d2" if not text.startswith("]") else "") + text) == data


@settings(max_examples=300, deadline=None)
@given(gs1_data.filter(human_readable_safe))
def test_human_readable_round_trip(data: Gs1Data) -> None:
    assert parse_gs1(encode_gs1(data, human_readable=True)) == data


@given(gtins())
def test_every_gtin_form_normalizes_to_14(gtin: str) -> None:
    assert normalize_gtin(gtin) == gtin
    short = gtin.lstrip("0")
    for length in (8, 12, 13):
        if len(short) <= length:
            assert normalize_gtin(gtin[-length:]) == gtin
            assert parse_gs1(gtin[-length:]) == Gs1Data(gtin=gtin)


@given(gtins(), st.integers(1, 9))
def test_a_wrong_check_digit_is_always_caught(gtin: str, delta: int) -> None:
    wrong = gtin[:-1] + str((int(gtin[-1]) + delta) % 10)
    with pytest.raises(Gs1Error, match="check digit"):
        normalize_gtin(wrong)


scanner_noise = st.text(SET82 + "\x1d\r\n #²ÄG<>{}]" + "0123456789" * 3, max_size=MAX_INPUT_CHARS + 20)


@settings(max_examples=500, deadline=None)
@given(st.one_of(scanner_noise, st.text(max_size=80), gs1_data.map(encode_gs1).map(lambda s: s[:-1])))
def test_any_text_is_read_or_refused_with_a_gs1_error(text: str) -> None:
    try:
        data = parse_gs1(text)
    except Gs1Error as err:
        refusal = err
    else:
        assert data != Gs1Data()
        assert parse_gs1(encode_gs1(data)) == data  # whatever is read can be written back
        return
    assert -1 <= refusal.position <= len(text)
