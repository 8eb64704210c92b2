#!/usr/bin/env bash
# Install the real S3 clients that tests/clients drives against the gateway:
#   - the AWS CLI v1 (`awscli`) and s3cmd from PyPI, into their own venv .venv-clients
#     (awscli pins botocore exactly; the project's .venv pins boto3/botocore itself);
#   - rclone from Debian's package (when `rclone` is not on PATH).
# Idempotent: a stamp keyed on this script's content makes a second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."

AWSCLI_VERSION="1.46.3"
S3CMD_VERSION="2.4.0"

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
VENV=".venv-clients"
STAMP="$VENV/.installed"
WANT="$(sha256sum "$0" | cut -d' ' -f1)"

if ! command -v rclone >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "cannot install rclone: no apt-get" >&2
    exit 1
  fi
  echo "clients: installing Debian's rclone"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq rclone >/dev/null
fi

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/aws" && -x "$VENV/bin/s3cmd" ]]; then
  exit 0
fi

echo "clients: installing awscli==$AWSCLI_VERSION s3cmd==$S3CMD_VERSION into $VENV"
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  "awscli==$AWSCLI_VERSION" "s3cmd==$S3CMD_VERSION"
"$VENV/bin/aws" --version
"$VENV/bin/s3cmd" --version
# sed reads all of rclone's output: `head -n1` would exit first and, under pipefail, the
# SIGPIPE rclone then gets fails the whole install (seen as make's "Error 141").
rclone version | sed -n 1p
echo "$WANT" >"$STAMP"
