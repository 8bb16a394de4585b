"""Configuration of NATS ingestion: subjects and formats, device → site mapping, GTINs.

A TOML file (`LOTWISE_INGEST_CONFIG`) validated by pydantic at start-up, so a typo stops
the engine with the field named instead of dead-lettering every message later. The
example `adapters/nats/ingest/example.toml` documents every key; the demo uses it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.domain.statuses import DEFAULT_DICTIONARY

EXAMPLE_CONFIG = Path(__file__).with_name("example.toml")  # the demo dataset's devices
_SUBJECT_RE = re.compile(r"^[^\s.*>]+(\.([^\s.*>]+|\*))*(\.>)?$")
_GTIN_RE = re.compile(r"^\d{14}$")

Source = Literal["cabinet", "wms"]
Format = Literal["json", "avro"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubjectBinding(_Strict):
    """Messages on `subject` (wildcards allowed) come from `source` and are encoded as `format`."""

    subject: str
    source: Source
    format: Format = "json"

    @field_validator("subject")
    @classmethod
    def _is_subject(cls, value: str) -> str:
        if not _SUBJECT_RE.match(value):
            raise ValueError("must be a NATS subject like lotwise.in.cabinet.> (tokens, '*', a final '>')")
        return value


class Cabinet(_Strict):
    """A smart cabinet (or a ward's scanner): which site it stocks, and where in it."""

    site: str = Field(min_length=1, max_length=128)
    bin: str = Field("", max_length=128, description="the cabinet's bin inside the site; '' = the site itself")
    return_status: str = Field(
        "", description="status of an item scanned back in unopened; '' = the dictionary's ready role"
    )
    owner: str = Field("own", description="owner of stock returned or found by a count")


class Wms(_Strict):
    """How WMS events map onto the engine's sites and statuses. A status left '' is the
    status dictionary's for that role (engine.domain.ingestion.StatusChoices)."""

    sites: dict[str, str] = Field(default_factory=dict, description="WMS warehouse code → site; unlisted = same id")
    receipt_status: str = Field("", description="ASN lines arrive in this status; '' = the receipt role")
    qc_pass_status: str = Field("", description="'' = the ready role")
    qc_fail_status: str = Field("", description="'' = the rejected role")
    pick_from_status: str = Field("", description="'' = the ready role")
    transfer_in_status: str = Field("", description="a transfer's arrival; '' = the receipt role")


class Consumer(_Strict):
    """Bounds of the durable pull consumer (DESIGN §7: everything bounded)."""

    durable: str = Field("lotwise-ingest", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    fetch_batch: int = Field(256, ge=1, le=4096, description="messages per pull")
    max_ack_pending: int = Field(2048, ge=1, le=100_000, description="delivered and unacked, at most")
    max_concurrency: int = Field(256, ge=1, le=10_000, description="events applied at once")
    # 2+ overlaps the next pull with the last one's application: measured no faster on one
    # machine (bench/README.md) and with a worse p50, so one pull at a time by default.
    pulls_in_hand: int = Field(1, ge=1, le=8, description="pulls being applied at once (1: one pull at a time)")
    max_deliver: int = Field(8, ge=2, le=100, description="deliveries of a message before it is dead-lettered")
    backoff_s: tuple[float, ...] = Field(
        (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0), description="redelivery delays after a transient failure"
    )
    refused_deliveries: int = Field(
        3, ge=1, le=100, description="deliveries of an event the engine refuses (lot not found...) before it is dead"
    )
    ack_wait_s: float = Field(30.0, gt=0, le=3600, description="an unacked message is redelivered after this")
    apply_timeout_s: float = Field(10.0, gt=0, le=300, description="deadline of one event's engine calls")
    idle_wait_s: float = Field(2.0, gt=0, le=60, description="a pull with nothing to deliver ends after this")
    max_age_s: float = Field(7 * 86_400, gt=0, description="inbound stream retention")
    max_bytes: int = Field(1 << 30, ge=1 << 20, description="inbound stream size bound")
    duplicate_window_s: float = Field(900.0, gt=0, le=86_400, description="Nats-Msg-Id dedupe of the inbound stream")

    @model_validator(mode="after")
    def _redeliveries_fit(self) -> Consumer:
        if any(b <= 0 for b in self.backoff_s):
            raise ValueError("backoff_s: every delay must be > 0")
        if len(self.backoff_s) >= self.max_deliver:
            raise ValueError("backoff_s: must have fewer entries than max_deliver")
        # A redelivered event is applied once because the cells remember its request ids
        # for 15 minutes (dedupe_window_ms); every redelivery must come well inside that.
        worst_s = self.max_deliver * self.ack_wait_s + sum(self.backoff_s)
        if worst_s > 600:
            raise ValueError(f"max_deliver × ack_wait_s + Σ backoff_s = {worst_s:.0f} s; keep it ≤ 600 s")
        return self


class IngestConfig(_Strict):
    stream: str = Field("", description="inbound stream; '' = LOTWISE_INGEST_<namespace>")
    subjects: tuple[SubjectBinding, ...] = Field(default=(), description="'' = the namespace's defaults")
    cabinets: dict[str, Cabinet] = Field(default_factory=dict, description="cabinet or scanner id → where it is")
    gtins: dict[str, str] = Field(default_factory=dict, description="GTIN-14 → sku")
    wms: Wms = Field(default_factory=Wms)
    consumer: Consumer = Field(default_factory=Consumer)
    senders: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="sender (the subject's last token, e.g. lotwise.in.wms.DC-EAST) → the sites it may post for",
    )
    senders_only: bool = Field(False, description="true: a sender not listed in `senders` may post for no site")

    @field_validator("gtins")
    @classmethod
    def _gtins_are_14_digits(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [g for g in value if not _GTIN_RE.match(g)]
        if bad:
            raise ValueError(f"GTINs must be 14 digits (pad GTIN-8/12/13 with zeros): {bad[:5]}")
        return value

    @model_validator(mode="after")
    def _statuses_exist(self) -> IngestConfig:
        statuses = DEFAULT_DICTIONARY
        named = {f"wms.{k}": getattr(self.wms, k) for k in Wms.model_fields if k.endswith("_status")}
        named |= {f"cabinets.{c}.return_status": cab.return_status for c, cab in self.cabinets.items()}
        for where, status in named.items():
            if status and status not in statuses:
                raise ValueError(f"{where}: unknown status {status!r}")
        return self

    def with_defaults(self, namespace: str) -> IngestConfig:
        """Fill the stream name and subjects of `namespace` when the file left them out."""
        tag = subject_tag(namespace)
        stream = self.stream or f"LOTWISE_INGEST_{tag}"
        subjects = self.subjects or default_subjects(namespace)
        return self.model_copy(update={"stream": stream, "subjects": subjects})


def subject_tag(namespace: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", namespace)


def inbound_prefix(namespace: str) -> str:
    """`lotwise.in` for the default namespace, `lotwise.<ns>.in` for the others, so two
    engines can share one NATS without capturing each other's devices."""
    return "lotwise.in" if namespace == "lotwise" else f"lotwise.{subject_tag(namespace)}.in"


def default_subjects(namespace: str) -> tuple[SubjectBinding, ...]:
    p = inbound_prefix(namespace)
    return (
        SubjectBinding(subject=f"{p}.cabinet.>", source="cabinet", format="json"),
        SubjectBinding(subject=f"{p}.wms.>", source="wms", format="json"),
        SubjectBinding(subject=f"{p}.avro.cabinet.>", source="cabinet", format="avro"),
        SubjectBinding(subject=f"{p}.avro.wms.>", source="wms", format="avro"),
    )


class IngestConfigError(ValueError):
    """A configuration file that cannot be used; `field` names where (dotted)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def load_ingest_config(path: Path | None, namespace: str) -> IngestConfig:
    """Read and validate the TOML file (`None` = no devices: every event is dead-lettered
    as unknown until a file maps them). Raises IngestConfigError naming the field."""
    if path is None:
        return IngestConfig().with_defaults(namespace)
    try:
        raw = tomllib.loads(Path(path).read_text())
    except OSError as exc:
        raise IngestConfigError("ingest_config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise IngestConfigError("ingest_config", f"{path} is not valid TOML: {exc}") from None
    try:
        return IngestConfig.model_validate(raw).with_defaults(namespace)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])  # empty for checks across fields
        raise IngestConfigError(f"ingest_config:{where}" if where else "ingest_config", first["msg"]) from None
