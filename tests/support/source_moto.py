"""An import source that checks credentials: a moto server process with IAM on, a user who
may do anything (``access_key``/``secret_key``) and one with no permission
(``nobody_access_key``/``nobody_secret_key``), and one bucket holding the given objects."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

import boto3

from tests.support.processes import MotoServer

__all__ = ["iam_source"]


@contextlib.contextmanager
def iam_source(
    bucket: str, objects: Mapping[str, bytes]
) -> Iterator[tuple[MotoServer, dict[str, str]]]:
    server = MotoServer()
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "5"  # the IAM set-up below, then auth is on
    try:
        server.start()
    finally:
        del os.environ["INITIAL_NO_AUTH_ACTION_COUNT"]
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bootstrap",
            aws_secret_access_key="bootstrap",
        )
        iam.create_user(UserName="importer")
        key = iam.create_access_key(UserName="importer")["AccessKey"]
        iam.put_user_policy(
            UserName="importer",
            PolicyName="all",
            PolicyDocument='{"Version": "2012-10-17", "Statement":'
            ' [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}',
        )
        iam.create_user(UserName="nobody")
        nobody = iam.create_access_key(UserName="nobody")["AccessKey"]
        owner = boto3.client(
            "s3",
            endpoint_url=server.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
        owner.create_bucket(Bucket=bucket)
        for name, body in objects.items():
            owner.put_object(Bucket=bucket, Key=name, Body=body)
        yield (
            server,
            {
                "access_key": key["AccessKeyId"],
                "secret_key": key["SecretAccessKey"],
                "nobody_access_key": nobody["AccessKeyId"],
                "nobody_secret_key": nobody["SecretAccessKey"],
            },
        )
    finally:
        server.stop()
