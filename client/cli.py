"""``bp``: the command-line client. Encrypts before upload, authenticates before it writes.

Commands (``bp COMMAND --help`` for each)::

    bp keygen [--type rsa|x25519|p256] [--bits 3072|4096] NAME
    bp key list
    bp key export NAME [--version N]
    bp key publish NAME [--version N]
    bp key published
    bp put FILE s3://bucket/key [--key NAME|PEM ...] [--class C] [--part-size SIZE]
           [--concurrency N]
    bp get s3://bucket/key FILE|- [--key NAME] [--range A-B] [--version-id ID]
    bp verify s3://bucket/key [--key NAME] [--version-id ID]
    bp verify --placement s3://bucket/key [--version-id ID] [--deployment-key FILE]
    bp share s3://bucket/key --recipient NAME|PEM [--key NAME]
    bp rotate --from NAME --to NAME|PEM s3://bucket[/prefix] [--from-version N]
              [--to-version N] [--batch 500] [--workers 8]
    bp ls [s3://bucket[/prefix]]
    bp rm s3://bucket/key
    bp mb s3://bucket

This module is the entry point only (the ``bp`` console script is :func:`main`): it parses
(:mod:`client.cli_parser`), runs the chosen command with a
:class:`~client.cli_context.CommandContext` (the commands are :mod:`client.cli_commands_keys`,
:mod:`client.cli_commands_transfer` and :mod:`client.cli_commands_sharing`; the keys they use
come from :mod:`client.cli_keys`), and turns whatever escapes into one line and an exit code.

Recipients beyond the primary one live only in the gateway's recipient list (``?share`` /
``?recipients``, :mod:`client.sharing`); rotation re-wraps metadata only and never reads more
than an object's 112-byte header (:mod:`client.rotation`). Both talk to the gateway's
extensions through :mod:`client.api`; plain S3 goes through :mod:`client.remote` (boto3).

Every failure is one line on stderr, ``bp: <what>: <why>``, and a distinct exit code
(:data:`~client.exit_codes.EXIT_CODES`, documented in ``docs/client.md``); the mapping from
exception types to codes is the one table in :mod:`client.exit_codes` and nothing else decides
an exit code. Tracebacks are never shown for expected failures; an unexpected exception prints
its type and message only (set ``BP_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

from client.cli_context import CommandContext
from client.cli_parser import build_parser
from client.exit_codes import EXIT_ERROR, UsageError, describe_error, exit_code_for

__all__ = ["main"]


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one ``bp`` command and return its exit code (the console script exits with it)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    args: argparse.Namespace | None = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help / --version printed and asked to exit
            return int(exc.code or 0)
        handler: Callable[[CommandContext], int] = args.handler
        return handler(CommandContext(args, out, err))
    except BaseException as exc:
        if isinstance(exc, SystemExit | GeneratorExit):
            raise
        code = exit_code_for(exc)
        command = getattr(args, "command", None)
        prefix = f"bp {command}" if command else "bp"
        message = describe_error(exc)
        if isinstance(exc, UsageError) and message.startswith("bp"):
            print(message, file=err)
        else:
            print(f"{prefix}: {message}", file=err)
        if code == EXIT_ERROR and os.environ.get("BP_DEBUG"):
            traceback.print_exc(file=err)
        return code


if __name__ == "__main__":
    sys.exit(main())
