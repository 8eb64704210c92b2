"""``bulletproof``: the operator CLI (part of the composition root).

Commands: ``up`` (start a gateway in the background and return once /health answers),
``serve`` (the same in the foreground; Ctrl-C stops it), ``down``, ``status``,
``backend ...`` (cluster/cli_backends.py); ``tenant ...``, ``key ...``, ``admin token rotate``
(cluster/cli_tenants.py), ``policy ...`` (cluster/cli_policy.py), ``compliance report``
(cluster/cli_compliance.py), ``session list|revoke`` (cluster/cli_sessions.py), ``import ...``
(cluster/cli_import.py), ``agent``, ``worker ...``, ``restore`` (cluster/cli_workers.py) and
``audit verify``, ``audit export`` (cluster/cli_audit.py).
Settings: ``BP_*`` variables or ``--config``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from cluster import (
    cli_audit,
    cli_backends,
    cli_compliance,
    cli_import,
    cli_policy,
    cli_sessions,
    cli_tenants,
    cli_workers,
)
from cluster.cli_backends import print_table
from cluster.cli_base import admin_call, admin_response, pid_file, settings_of
from cluster.ray_join import enable_token_auth_for_join
from core.settings import Settings

__all__ = ["main"]


def cmd_serve(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    if settings.ray_address:
        enable_token_auth_for_join()  # before Ray is imported: it reads the mode once
    from cluster.bootstrap import serve_forever

    serve_forever(settings, pid_file=pid_file(settings))
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """For a gateway deployed with ``serve deploy deploy/serve.yaml``: migrate the database,
    register the first admin token, and start the agents and scheduler on the cluster."""
    settings = settings_of(args)
    if settings.ray_address:
        enable_token_auth_for_join()  # before Ray is imported: it reads the mode once
    from cluster.bootstrap import prepare_cluster

    prepare_cluster(settings)
    print("prepared: database migrated, agents and scheduler running on the cluster")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from cluster.bootstrap import prepare_state, wait_healthy

    settings = settings_of(args)
    pid_path = pid_file(settings)
    if pid_path.exists():
        pid = int(pid_path.read_text())
        try:
            os.kill(pid, 0)
            print(f"gateway already running (pid {pid}) at {settings.endpoint}")
            return 0
        except ProcessLookupError:
            pid_path.unlink()
    prepare_state(settings)
    log_path = settings.state_path / "gateway.log"
    cmd = [sys.executable, "-m", "cluster.cli"]
    if args.config:
        cmd += ["--config", args.config]
    if args.no_dashboard:
        cmd.append("--no-dashboard")
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            [*cmd, "serve"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_healthy(settings, timeout_s=args.timeout)
    except TimeoutError as exc:
        child.terminate()
        raise SystemExit(f"{exc}; see {log_path}") from exc
    print(f"gateway up at {settings.endpoint} (pid {child.pid}, log {log_path})")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    pid_path = pid_file(settings)
    if not pid_path.exists():
        print("no gateway running")
        return 0
    pid = int(pid_path.read_text())
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pid_path.unlink(missing_ok=True)
        return 0
    if _wait_gone(pid, 60):
        print("gateway stopped")
        return 0
    # `up` started the gateway in its own session: its Ray processes share its process
    # group, so killing the group leaves no orphaned raylet or workers behind.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    pid_path.unlink(missing_ok=True)
    print("gateway killed after 60 s")
    return 0


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs. A process that exited but was not reaped (a zombie: the
    gateway `demo` started and still waits for) counts as gone; when it is our own child it
    is reaped here. (Linux: the state letter of /proc/PID/stat.)"""
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.3)
    return False


def cmd_status(args: argparse.Namespace) -> int:
    """The federation's colour and what makes it so (``GET /admin/status``), then the
    backends with their health. ``--json``: the status document alone, for scripts."""
    settings = settings_of(args)
    status = admin_call(settings, "GET", "/admin/status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"federation: {status['state']} (policy version {status['policy_version']})")
    for reason in status["reasons"]:
        print(f"  - {reason}")
    objects, size = status["placement"]["objects"], status["placement"]["bytes"]
    counts = [f"{n} {state.replace('_', ' ')} ({size[state]} B)" for state, n in objects.items()]
    print("objects: " + ", ".join(counts))
    print()
    print_table(admin_call(settings, "GET", "/admin/backends"))
    if status["queue"]:
        print()
        print(f"{'JOB KIND':18} {'QUEUED':>7} {'LEASED':>7} {'DEAD':>5} {'OLDEST READY':>13}")
        for q in status["queue"]:
            print(
                f"{q['kind']:18} {q['queued']:>7} {q['leased']:>7} {q['dead']:>5}"
                f" {q['oldest_ready_s']:>12}s"
            )
    agents = ", ".join(f"{a['name']} ({a['jobs']} jobs)" for a in status["agents"]) or "none"
    print(f"\nagents holding jobs: {agents}")
    for w in status["workers"]:
        outcome = f"FAILED: {w['last_error']}" if w["last_error"] else "ok"
        print(f"worker {w['name']:18} last finished {w['last_finished_at'] or '-'}  {outcome}")
    imports = ", ".join(f"{n} {state}" for state, n in sorted(status["imports"].items()))
    print(f"imports: {imports or 'none'}")
    print(f"dashboard: {status['dashboard_url'] or 'off'}")
    for url in status["metrics_urls"]:
        print(f"metrics: {url}")
    return 0


DEMO_BACKENDS = (
    ("eu-frankfurt", "eu-central", "DE", "EU"),
    ("eu-paris", "eu-west", "FR", "EU"),
    ("us-virginia", "us-east", "US", "US"),
)


def _demo_tenant(settings: Settings) -> tuple[str, str, str]:
    """(tenant, access key id, secret) of the demo tenant, kept in the state directory.

    The metadata database outlives a state directory (a second clone on the same machine, or
    a removed ``.bulletproof``): when its ``demo`` tenant exists but this state directory
    holds no credentials for it, a new demo tenant with a random suffix is made instead of
    failing (its secret is sealed with this state directory's master key)."""
    creds_file = settings.state_path / "demo-credentials"
    if creds_file.exists():
        fields = creds_file.read_text().split()
        if len(fields) == 2:  # written before the tenant name was kept
            return "demo", fields[0], fields[1]
        return fields[0], fields[1], fields[2]
    name = "demo"
    if admin_response(settings, "GET", "/admin/tenants/demo/placement").status_code == 200:
        name = f"demo-{secrets.token_hex(3)}"
    result = admin_call(settings, "POST", "/admin/tenants", {"name": name, "allow_plaintext": True})
    creds_file.write_text(f"{name} {result['access_key_id']} {result['secret_access_key']}\n")
    creds_file.chmod(0o600)
    return name, result["access_key_id"], result["secret_access_key"]


def cmd_demo(args: argparse.Namespace) -> int:
    """Start a gateway with three local-directory backends and a demo tenant; Ctrl-C stops it."""
    settings = settings_of(args)
    args.timeout = 180.0
    cmd_up(args)
    try:
        existing = {b["name"] for b in admin_call(settings, "GET", "/admin/backends")}
        for name, region, country, jurisdiction in DEMO_BACKENDS:
            if name in existing:
                continue
            path = (settings.state_path / "demo-backends" / name).resolve()
            admin_call(
                settings,
                "POST",
                "/admin/add-storage",
                {
                    "name": name,
                    "type": "local",
                    "path": str(path),
                    "region": region,
                    "country": country,
                    "jurisdiction": jurisdiction,
                    "provider": "local",
                },
            )
        tenant, key_id, secret = _demo_tenant(settings)
        print(
            DEMO_TEXT.format(
                endpoint=settings.endpoint,
                tenant=tenant,
                key_id=key_id,
                secret=secret,
                region=settings.region,
            ),
            flush=True,
        )
        pid = int(pid_file(settings).read_text())
        while not _wait_gone(pid, 3600):  # until Ctrl-C here or `make stop` elsewhere
            pass
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        cmd_down(args)
    return 0


DEMO_TEXT = """
Bulletproof demo gateway at {endpoint}
  backends: eu-frankfurt (DE), eu-paris (FR), us-virginia (US): local directories
  tenant:   {tenant} (plaintext allowed for these examples; real tenants must encrypt client-side)

  export AWS_ACCESS_KEY_ID={key_id}
  export AWS_SECRET_ACCESS_KEY={secret}
  export AWS_DEFAULT_REGION={region}
  aws --endpoint-url {endpoint} s3 mb s3://photos
  aws --endpoint-url {endpoint} s3 cp README.md s3://photos/readme.md
  aws --endpoint-url {endpoint} s3 ls s3://photos
  aws --endpoint-url {endpoint} s3 cp s3://photos/readme.md -

  python3 -c "import boto3; s3 = boto3.client('s3', endpoint_url='{endpoint}'); \\
print(s3.list_objects_v2(Bucket='photos').get('Contents'))"

  bulletproof status      # GREEN/YELLOW/RED, backends, queue, workers (--json)
Ctrl-C (or 'make stop' from another shell) stops the gateway.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bulletproof", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (BP_* variables override it)")
    parser.add_argument(
        "--no-dashboard",
        action="store_true",
        help="start Ray without its dashboard (BP_DASHBOARD=false); imports need it",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the gateway in the background")
    up.add_argument("--timeout", type=float, default=180.0)
    up.set_defaults(func=cmd_up)
    sub.add_parser("serve", help="run the gateway in the foreground").set_defaults(func=cmd_serve)
    sub.add_parser(
        "prepare", help="database, agents and scheduler, for `serve deploy deploy/serve.yaml`"
    ).set_defaults(func=cmd_prepare)
    sub.add_parser("down", help="stop the gateway started by up").set_defaults(func=cmd_down)
    status = sub.add_parser(
        "status", help="GREEN / YELLOW / RED, backends, queue, agents, workers, imports"
    )
    status.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    status.set_defaults(func=cmd_status)
    sub.add_parser(
        "demo", help="gateway + 3 local backends + demo tenant, in the foreground"
    ).set_defaults(func=cmd_demo)

    cli_backends.register(sub)

    cli_tenants.register(sub)
    cli_policy.register(sub)
    cli_compliance.register(sub)
    cli_sessions.register(sub)
    cli_import.register(sub)
    cli_workers.register(sub)
    cli_audit.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
