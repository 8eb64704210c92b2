"""Operator commands for self-healing (part of the composition root): ``register(subparsers)``
adds them to the ``bulletproof`` parser.

- ``bulletproof agent [--name N] [--concurrency C] [--ray-address ADDR] [--once]``: a
  replication agent in this process. Without ``--ray-address`` it builds its own backend
  clients from the sealed credentials and the master key file (a machine outside the Ray
  cluster needs only PostgreSQL, Redis, the backends and the key file); with it, it joins the
  Ray cluster and goes through the named backend actors.
- ``bulletproof worker run NAME [--set OPTION=VALUE ...]``: one pass of a worker (repairer,
  scrubber, placement_checker, vacuumer, snapshotter, upload_expirer, audit_checkpointer,
  audit_archiver) under its run lease; prints its report.
- ``bulletproof worker status``: each worker's last run, and the job queue by kind and state.
- ``bulletproof worker retry-dead [--kind K] [ID ...]``: requeue dead-lettered jobs.
- ``bulletproof restore SNAPSHOT (--private-key PEM | --keyring-key NAME) [--passphrase-env
  VAR] [--target-database URL]``: restore a metadata snapshot into an empty database (runbook
  in docs/self-healing.md).

Exit codes: 0 done, 1 failed, 3 the worker's run lease is held elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from cluster.cli_base import settings_of

__all__ = ["main", "register"]

_WORKER_NAMES = (
    "repairer",
    "scrubber",
    "placement_checker",
    "vacuumer",
    "snapshotter",
    "upload_expirer",
    "audit_checkpointer",
    "audit_archiver",
)


def _use_ray(address: str | None) -> bool:
    if not address:
        return False
    from cluster.ray_join import enable_token_auth_for_join

    enable_token_auth_for_join()  # before Ray is imported: it reads the mode once
    import ray

    if not ray.is_initialized():
        ray.init(address=address, namespace="bulletproof", log_to_driver=False)
    return True


def _options(pairs: list[str] | None) -> dict[str, Any]:
    """``--set batch=10 --set grace_s=0``: values parsed as YAML scalars (numbers, booleans)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"--set expects OPTION=VALUE, got {pair!r}")
        options[name] = yaml.safe_load(value)
    return options


# -- agent -----------------------------------------------------------------------------------
async def _agent(args: argparse.Namespace) -> int:
    from actors.healing import HealingContext
    from actors.replication_agent import AgentLoop

    settings = settings_of(args)
    ctx = await HealingContext.connect(settings, use_ray=_use_ray(args.ray_address))
    try:
        loop = AgentLoop(
            ctx,
            args.name,
            concurrency=args.concurrency,
            lease_s=args.lease_s,
            poll_s=args.poll_s,
        )
        if args.once:
            stats = await loop.run_once()
            print(json.dumps(loop.snapshot(), default=str))
            return 0 if stats.failed == 0 else 1
        stop = asyncio.Event()
        running = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            running.add_signal_handler(sig, stop.set)
        print(f"agent {loop.owner} running ({type(ctx.registry).__name__})", flush=True)
        await loop.run_forever(stop)
        return 0
    finally:
        await ctx.close()


def cmd_agent(args: argparse.Namespace) -> int:
    return asyncio.run(_agent(args))


# -- worker ----------------------------------------------------------------------------------
async def _worker_run(args: argparse.Namespace) -> int:
    from actors.healing import HealingContext
    from actors.scheduler import run_exclusive
    from jobs.catalog import build_worker

    settings = settings_of(args)
    ctx = await HealingContext.connect(settings, use_ray=_use_ray(args.ray_address))
    try:
        work = build_worker(args.name, ctx, **_options(args.set))
        result = await run_exclusive(ctx, work, owner=f"cli@{socket.gethostname()}:{os.getpid()}")
    finally:
        await ctx.close()
    if not result.ran:
        print(f"{args.name} is running elsewhere ({result.holder}); try later", file=sys.stderr)
        return 3
    print(
        json.dumps(
            {
                "worker": args.name,
                "report": result.report,
                "error": result.error,
                "seconds": round(result.seconds, 3),
            }
        )
    )
    return 0 if result.error is None else 1


def cmd_worker_run(args: argparse.Namespace) -> int:
    return asyncio.run(_worker_run(args))


async def _worker_status(args: argparse.Namespace) -> int:
    from schema.db import Database
    from schema.jobs import JobQueue
    from schema.worker_state import WorkerStateRepository

    db = await Database.connect(settings_of(args).database_url, max_size=1)
    try:
        async with db.connection() as conn:
            workers = await WorkerStateRepository().all(conn)
            counts = await JobQueue().counts(conn)
    finally:
        await db.close()
    print(f"{'WORKER':18} {'LAST FINISHED':32} {'HELD BY':40} LAST REPORT / ERROR")
    for w in workers:
        outcome = w.last_error or json.dumps(w.last_report or {})
        print(
            f"{w.name:18} {str(w.last_finished_at or '-'):32} {w.lease_owner or '-':40} {outcome}"
        )
    print()
    print(f"{'JOB KIND':18} {'STATE':8} COUNT")
    for (kind, status), n in sorted(counts.items()):
        print(f"{kind:18} {status:8} {n}")
    return 0


def cmd_worker_status(args: argparse.Namespace) -> int:
    return asyncio.run(_worker_status(args))


async def _retry_dead(args: argparse.Namespace) -> int:
    from schema.db import Database
    from schema.jobs import JobQueue

    if not args.ids and not args.kind:
        raise SystemExit("name job ids or --kind")
    db = await Database.connect(settings_of(args).database_url, max_size=1)
    try:
        async with db.connection() as conn:
            n = await JobQueue().retry_dead(conn, ids=args.ids, kind=args.kind)
    finally:
        await db.close()
    print(f"{n} dead jobs requeued")
    return 0


def cmd_retry_dead(args: argparse.Namespace) -> int:
    return asyncio.run(_retry_dead(args))


# -- restore ---------------------------------------------------------------------------------
def cmd_restore(args: argparse.Namespace) -> int:
    from jobs.restore import RestoreError, private_key_from_pem, restore_snapshot

    settings = settings_of(args)
    passphrase = None
    if args.passphrase_env:
        value = os.environ.get(args.passphrase_env)
        if value is None:
            raise SystemExit(f"{args.passphrase_env} is not set")
        passphrase = value.encode()
    try:
        if args.keyring_key:
            from client import Keyring

            if passphrase is None:
                raise SystemExit("--keyring-key needs --passphrase-env")
            name, _, version = args.keyring_key.partition(":")
            key = Keyring().load_private(name, passphrase, int(version) if version else None)
        else:
            key = private_key_from_pem(Path(args.private_key).read_bytes(), passphrase)
        result = asyncio.run(
            restore_snapshot(
                args.snapshot,
                settings=settings,
                private_key=key,
                target_url=args.target_database or settings.database_url,
            )
        )
    except RestoreError as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


# -- wiring ----------------------------------------------------------------------------------
def register(subparsers: Any) -> None:
    """Add ``agent``, ``worker`` and ``restore`` to the ``bulletproof`` sub-commands."""
    agent = subparsers.add_parser("agent", help="run a replication agent in this process")
    agent.add_argument("--name", default=f"agent-{socket.gethostname()}")
    agent.add_argument("--concurrency", type=int, help="jobs at once (BP_AGENT_CONCURRENCY)")
    agent.add_argument("--lease-s", type=float, help="job lease seconds (BP_AGENT_LEASE_S)")
    agent.add_argument("--poll-s", type=float, help="idle poll seconds (BP_AGENT_POLL_S)")
    agent.add_argument(
        "--ray-address",
        help="join this Ray cluster and use its backend actors (default: "
        "build backend clients here from the sealed credentials and the master key file)",
    )
    agent.add_argument("--once", action="store_true", help="run ready jobs, then exit")
    agent.set_defaults(func=cmd_agent)

    worker = subparsers.add_parser("worker", help="self-healing workers").add_subparsers(
        dest="worker_command", required=True
    )
    run = worker.add_parser("run", help="one pass of a worker, under its run lease")
    run.add_argument("name", choices=_WORKER_NAMES)
    run.add_argument(
        "--set",
        action="append",
        metavar="OPTION=VALUE",
        help="worker option, e.g. --set grace_s=0 (repeatable)",
    )
    run.add_argument("--ray-address", help="use this Ray cluster's backend actors")
    run.set_defaults(func=cmd_worker_run)
    worker.add_parser("status", help="workers' last runs and the job queue").set_defaults(
        func=cmd_worker_status
    )
    retry = worker.add_parser("retry-dead", help="requeue dead-lettered jobs")
    retry.add_argument("ids", nargs="*", type=int)
    retry.add_argument("--kind")
    retry.set_defaults(func=cmd_retry_dead)

    restore = subparsers.add_parser(
        "restore", help="restore a metadata snapshot into an empty database"
    )
    restore.add_argument(
        "snapshot",
        help="manifest .json, .bpsnap file, snapshot name/id, or backend:/DIR |"
        " backend:ENDPOINT_URL/BUCKET (the newest manifest a backend holds)",
    )
    key = restore.add_mutually_exclusive_group(required=True)
    key.add_argument("--private-key", help="operator private key (PEM, PKCS#8)")
    key.add_argument("--keyring-key", help="NAME[:VERSION] in the bp keyring (bp keygen)")
    restore.add_argument("--passphrase-env", help="environment variable holding its passphrase")
    restore.add_argument("--target-database", help="default: BP_DATABASE_URL (must be empty)")
    restore.set_defaults(func=cmd_restore)


def main(argv: list[str] | None = None) -> int:
    """``python -m cluster.cli_workers ...``: these commands on their own."""
    parser = argparse.ArgumentParser(prog="bulletproof", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (BP_* variables override it)")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        return int(args.func(args))
    return 130


if __name__ == "__main__":
    sys.exit(main())
