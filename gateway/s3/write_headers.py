"""The request headers every write reads (PutObject, CopyObject, CreateMultipartUpload, the
plain /objects API): the encryption envelope and user metadata, and the class asked for.

The envelope travels in ``x-amz-meta-bp-*``; every such name is reserved for it, so an unknown
one is refused rather than stored as metadata. The class is ``X-Redundancy-Class``, or
``x-amz-storage-class`` naming a class (``STANDARD`` names none): unknown names are refused
here, before the body is read; the data path then applies the default chain.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.envelope import ENVELOPE_METADATA, Envelope, envelope_from_metadata
from core.policy import PolicyDocument
from gateway.s3 import errors as s3e
from gateway.s3.call import user_metadata

__all__ = ["object_metadata", "requested_class"]


def object_metadata(headers: Mapping[str, str]) -> tuple[Envelope | None, dict[str, str]]:
    """(encryption envelope, the other user metadata) of a write request: ``x-amz-meta-*``
    (2 KiB at most), where every ``x-amz-meta-bp-*`` name is reserved for the envelope."""
    meta = user_metadata(headers)
    envelope = envelope_from_metadata(meta)
    unknown = sorted(k for k in meta if k.startswith("bp-") and k not in ENVELOPE_METADATA)
    if unknown:
        raise s3e.InvalidArgument(
            f"x-amz-meta-{unknown[0]} is not an envelope field; x-amz-meta-bp-* is reserved"
            " for the encryption envelope (docs/envelope.md section 8)"
        )
    return envelope, {k: v for k, v in meta.items() if not k.startswith("bp-")}


def requested_class(policy: PolicyDocument, headers: Mapping[str, str]) -> str | None:
    """The class the request names: X-Redundancy-Class, else x-amz-storage-class naming a
    class (``STANDARD`` names none). None when it names none."""
    requested = headers.get("x-redundancy-class")
    if requested is None:
        storage_class = headers.get("x-amz-storage-class")
        if storage_class and storage_class != "STANDARD":
            if storage_class not in policy.classes:
                raise s3e.InvalidStorageClass(
                    f"Storage class {storage_class!r} is not a redundancy class of this gateway"
                )
            requested = storage_class
    if requested is None:
        return None
    if requested not in policy.classes:
        raise s3e.InvalidArgument(f"Unknown redundancy class {requested!r}")
    return requested
