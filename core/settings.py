"""Gateway settings: environment variables, optionally overlaid by a YAML file (``--config``).

Names are a contract shared with the CLI, the Makefile and the tests; each ``BP_*`` variable maps
to one field. The YAML file uses the field names (``database_url: ...``). Precedence: explicit
environment variable > YAML file > default. Pure: reading files is the caller's business.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InvalidInput

__all__ = ["Settings", "load_settings"]


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql://postgres@127.0.0.1:5432/bulletproof"
    # On a database `bulletproof up` creates: migrations run as the owner role, the gateway and
    # workers connect as the app role (no UPDATE/DELETE of the audit tables); "" = one role.
    database_owner_role: str = "bulletproof_owner"
    database_app_role: str = "bulletproof_app"
    redis_url: str = "redis://127.0.0.1:6379/0"
    http_host: str = "127.0.0.1"
    http_port: int = 9000
    # HTTPS: the gateway serves TLS with this certificate chain and key (PEM; both or neither).
    # tls_ca_file: what the CLI trusts for the gateway's certificate (default: the system's).
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_ca_file: str = ""
    state_dir: str = ".bulletproof"
    master_key_file: str = ""  # default: <state_dir>/master.key
    admin_token: str = ""  # default: generated into <state_dir>/admin.token
    # OIDC issuers trusted for /admin bearer JWTs and their claim -> role table (YAML;
    # core/admin_roles.py, docs/admin.md). Empty: only the bootstrap token.
    admin_oidc_file: str = ""
    tenant_oidc_file: str = ""  # STS trust rules (core/tenant_identities.py); empty: no STS
    region: str = "us-east-1"  # the SigV4 region clients sign for
    sigv2: bool = True  # accept SigV2 (HMAC-SHA1) header and presigned-URL auth; off: SigV4 only
    virtual_host_domain: str = ""  # "s3.example.net": bucket.s3.example.net is virtual-hosted
    ui_origins: str = ""  # comma-separated browser origins allowed by CORS (the gateway's UI)
    part_size: int = 8 * 1024 * 1024  # bytes per stored part; bounds memory per request
    max_object_size: int = 5 * 1024**3
    gateway_replicas: int = 1
    # Autoscaling: above gateway_replicas, Serve adds replicas up to this many, aiming at this
    # many requests in flight per replica (0: a fixed gateway_replicas).
    gateway_max_replicas: int = 0
    gateway_target_ongoing_requests: float = 16.0
    max_ongoing_requests: int = 64
    backend_timeout_s: float = 30.0
    # Threads one process may hold in reads of one backend (actors/read_lanes.py): a frozen
    # backend absorbs at most this many; beyond it, reads go to the other replicas first.
    backend_read_threads: int = 16
    # Hedged reads: a part not answered within its backend's p95 latency is also asked of
    # the next replica, the first verified answer wins (actors/verified_reader.py).
    hedged_reads: bool = True
    health_interval_s: float = 5.0
    cache_ttl_s: int = 60
    ray_address: str = ""  # join this cluster instead of starting a local head
    ray_num_cpus: int = 0  # 0 = let Ray detect
    # The Ray dashboard (bound to 127.0.0.1): imports are submitted through its Job Submission
    # API and show on its Jobs page. BP_DASHBOARD=false / --no-dashboard turn it off.
    dashboard: bool = True
    dashboard_host: str = "127.0.0.1"
    # Logs of every Ray process (gateway replicas, backend actors, agents, workers) as JSON
    # lines with request_id, job, node, actor and task ids; "text" for Ray's plain format.
    log_format: str = "json"  # BP_DASHBOARD_HOST=0.0.0.0 exposes it (put auth in front)
    redundancy_class: str = "StandardClass"
    # -- self-healing (docs/self-healing.md) --------------------------------------------------
    agent_count: int = 2  # ReplicationAgent actors started by `bulletproof up`/`serve`
    agent_concurrency: int = 8  # jobs one agent runs at once
    agent_lease_s: float = 60.0  # job lease; renewed every third of it while the job runs
    agent_poll_s: float = 1.0  # idle wait between empty leases
    agent_defer_s: float = 30.0  # a job whose target backend is down is retried after this
    agent_verify: str = "head"  # after a repair write: "head" (size) or "read" (size + SHA-256)
    job_backoff_base_s: float = 2.0  # retry delay after failed attempt n: base * 2**(n-1) ...
    job_backoff_max_s: float = 600.0  # ... capped here, with jitter
    job_retention_s: float = 7 * 86400.0  # done jobs older than this are purged by the vacuumer
    dead_job_cooldown_s: float = 3600.0  # the repairer re-enqueues dead-lettered work after this
    scheduler_enabled: bool = True  # start the scheduler actor (periodic workers)
    repair_interval_s: float = 60.0
    scrub_interval_s: float = 300.0
    scrub_batch: int = 500  # replicas re-read per scrubber run
    scrub_bytes_per_s: int = 32 * 1024 * 1024  # scrubber read rate limit
    scrub_listing_interval_s: float = 3600.0  # backend listing audits (cheap missing-object check)
    placement_interval_s: float = 300.0
    vacuum_interval_s: float = 600.0
    orphan_grace_s: float = 86400.0  # must exceed the longest write in flight
    snapshot_interval_s: float = 86400.0  # 0 disables scheduled snapshots
    snapshot_public_key_file: str = ""  # operator's X25519 or RSA public key (PEM)
    snapshot_class: str = "StandardClass"  # redundancy class for snapshot parts
    snapshot_keep: int = 7
    # -- multipart uploads (docs/s3-api.md) -----------------------------------------------------
    upload_expiry_s: float = 7 * 86400.0  # an upload not completed by then is aborted
    upload_expiry_interval_s: float = 3600.0  # how often the upload expirer runs (0: never)
    max_open_uploads: int = 10000  # open multipart uploads per tenant (0: unlimited)
    # -- request admission (docs/operations.md "Request limits"; core/request_limits.py) -----
    replay_cache: bool = True  # refuse a PUT/POST/DELETE whose signature was already used ...
    replay_grace_s: float = 2.0  # ... more than this long after it was first seen
    # Per-tenant token buckets shared by every replica (a tenant may have its own rates,
    # PUT /admin/tenants/{t}/limits); each bucket holds tenant_burst_s seconds of its rate.
    tenant_requests_per_s: float = 2000.0  # 0: off
    tenant_bytes_per_s: int = 2 * 1024**3  # body bytes in and out; 0: off
    tenant_burst_s: float = 2.0
    body_idle_timeout_s: float = 20.0  # no request-body byte for this long: RequestTimeout
    body_min_rate: int = 1024  # average body bytes/s of waiting the client must keep up ...
    body_rate_grace_s: float = 20.0  # ... once the gateway has waited this long in all
    # -- watching it (docs/operations.md) -------------------------------------------------------
    metrics_interval_s: float = 30.0  # the federation sampler's gauges (0: not sampled)
    # -- audit log (docs/architecture.md, audit) -------------------------------------------------
    audit_checkpoint_interval_s: float = 300.0  # signed chain-head checkpoints (0: never)
    audit_checkpoint_dir: str = ""  # copies outside the database; default <state_dir>/audit
    audit_archive_public_key_file: str = ""  # X25519 or RSA public key (PEM); "" = no archives
    audit_archive_interval_s: float = 3600.0  # sealed chain segments (with a key configured)
    audit_archive_segment_rows: int = 10000  # rows of one chain per sealed segment, at most

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir)

    @property
    def master_key_path(self) -> Path:
        return (
            Path(self.master_key_file) if self.master_key_file else self.state_path / "master.key"
        )

    @property
    def audit_checkpoint_path(self) -> Path:
        return (
            Path(self.audit_checkpoint_dir)
            if self.audit_checkpoint_dir
            else self.state_path / "audit"
        )

    @property
    def admin_token_path(self) -> Path:
        return self.state_path / "admin.token"

    @property
    def endpoint(self) -> str:
        """Where this machine's CLI reaches the gateway: https when it serves TLS; the loopback
        address when it binds every interface (BP_HTTP_HOST=0.0.0.0 or ::)."""
        scheme = "https" if self.tls_cert_file else "http"
        host = self.http_host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "[::1]"
        return f"{scheme}://{host}:{self.http_port}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ENV_PREFIX = "BP_"


def _coerce(field: dataclasses.Field[Any], raw: object) -> object:
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "")
    try:
        if kind == "int":
            return int(str(raw))
        if kind == "float":
            return float(str(raw))
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in {"1", "true", "yes", "on"}
        return str(raw)
    except ValueError as exc:
        raise InvalidInput(f"setting {field.name}: cannot read {raw!r} as {kind}") from exc


def load_settings(
    env: Mapping[str, str] | None = None, file_values: Mapping[str, object] | None = None
) -> Settings:
    """Settings from ``file_values`` (parsed YAML) overlaid by ``env`` (default: os.environ)."""
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, object] = {}
    for name, raw in (file_values or {}).items():
        if name not in fields:
            raise InvalidInput(f"unknown setting {name!r} in configuration file")
        values[name] = _coerce(fields[name], raw)
    for name, field in fields.items():
        raw_env = env.get(_ENV_PREFIX + name.upper())
        if raw_env is not None and raw_env != "":
            values[name] = _coerce(field, raw_env)
    if "ray_address" not in values and env.get("RAY_ADDRESS"):
        values["ray_address"] = env["RAY_ADDRESS"]
    return Settings(**values)  # type: ignore[arg-type]
