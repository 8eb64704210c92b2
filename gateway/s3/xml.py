"""S3 XML documents: rendering responses and parsing (untrusted) request bodies.

Rendering escapes every value; parsing goes through defusedxml with a size cap, so entity
expansion and oversized documents become ``MalformedXML`` instead of a 500.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from gateway.s3.errors import MalformedXML, S3Error

__all__ = [
    "S3_NS",
    "error_document",
    "iso8601",
    "list_buckets_document",
    "list_objects_document",
    "location_document",
    "parse_xml",
]

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BYTES = 1024 * 1024


def _esc(value: object) -> str:
    text = str(value)
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def iso8601(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def _doc(body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


def error_document(err: S3Error, request_id: str) -> bytes:
    return _doc(
        f"<Error><Code>{_esc(err.code)}</Code><Message>{_esc(err.message)}</Message>"
        f"<Resource>{_esc(err.resource)}</Resource><RequestId>{_esc(request_id)}</RequestId></Error>"
    )


def list_buckets_document(owner: str, buckets: Iterable[tuple[str, datetime]]) -> bytes:
    items = "".join(
        f"<Bucket><Name>{_esc(name)}</Name><CreationDate>{iso8601(created)}</CreationDate></Bucket>"
        for name, created in buckets
    )
    return _doc(
        f'<ListAllMyBucketsResult xmlns="{S3_NS}"><Owner><ID>{_esc(owner)}</ID>'
        f"<DisplayName>{_esc(owner)}</DisplayName></Owner><Buckets>{items}</Buckets>"
        "</ListAllMyBucketsResult>"
    )


def location_document(region: str) -> bytes:
    return _doc(f'<LocationConstraint xmlns="{S3_NS}">{_esc(region)}</LocationConstraint>')


def list_objects_document(
    *,
    bucket: str,
    prefix: str,
    delimiter: str,
    max_keys: int,
    is_truncated: bool,
    contents: Sequence[tuple[str, datetime, str, int]],
    common_prefixes: Sequence[str],
    encoding_type: str | None,
    v2: bool,
    continuation_token: str | None = None,
    next_continuation_token: str | None = None,
    start_after: str | None = None,
    marker: str | None = None,
    next_marker: str | None = None,
    owner: str | None = None,
) -> bytes:
    from urllib.parse import quote

    def enc(value: str) -> str:
        return _esc(quote(value, safe="/") if encoding_type == "url" else value)

    parts = [f'<ListBucketResult xmlns="{S3_NS}"><Name>{_esc(bucket)}</Name>']
    parts.append(f"<Prefix>{enc(prefix)}</Prefix>")
    if v2:
        parts.append(f"<KeyCount>{len(contents) + len(common_prefixes)}</KeyCount>")
        if continuation_token is not None:
            parts.append(f"<ContinuationToken>{_esc(continuation_token)}</ContinuationToken>")
        if next_continuation_token is not None:
            parts.append(
                f"<NextContinuationToken>{_esc(next_continuation_token)}</NextContinuationToken>"
            )
        if start_after:
            parts.append(f"<StartAfter>{enc(start_after)}</StartAfter>")
    else:
        parts.append(f"<Marker>{enc(marker or '')}</Marker>")
        if next_marker is not None:
            parts.append(f"<NextMarker>{enc(next_marker)}</NextMarker>")
    parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
    if delimiter:
        parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
    if encoding_type:
        parts.append(f"<EncodingType>{_esc(encoding_type)}</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if is_truncated else 'false'}</IsTruncated>")
    for key, modified, etag, size in contents:
        owner_xml = (
            f"<Owner><ID>{_esc(owner)}</ID><DisplayName>{_esc(owner)}</DisplayName></Owner>"
            if owner and not v2
            else ""
        )
        parts.append(
            f"<Contents><Key>{enc(key)}</Key><LastModified>{iso8601(modified)}</LastModified>"
            f"<ETag>&quot;{_esc(etag)}&quot;</ETag><Size>{size}</Size>{owner_xml}"
            "<StorageClass>STANDARD</StorageClass></Contents>"
        )
    for cp in common_prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{enc(cp)}</Prefix></CommonPrefixes>")
    parts.append("</ListBucketResult>")
    return _doc("".join(parts))


def parse_xml(body: bytes) -> Element:
    """Parse an untrusted request document; any problem is ``MalformedXML``."""
    if len(body) > MAX_XML_BYTES:
        raise MalformedXML("The XML you provided was too large.")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException, ValueError) as exc:
        raise MalformedXML() from exc
    return root  # type: ignore[no-any-return]


def local_name(element: Element) -> str:
    tag = element.tag
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def copy_result_document(root: str, etag: str, last_modified: datetime) -> bytes:
    """CopyObjectResult / CopyPartResult."""
    return _doc(
        f'<{root} xmlns="{S3_NS}"><LastModified>{iso8601(last_modified)}</LastModified>'
        f"<ETag>&quot;{_esc(etag)}&quot;</ETag></{root}>"
    )


def private_acl_document(owner: str) -> bytes:
    """The only ACL Bulletproof objects and buckets have: the owning tenant, FULL_CONTROL."""
    grantee = (
        '<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">'
        f"<ID>{_esc(owner)}</ID><DisplayName>{_esc(owner)}</DisplayName></Grantee>"
    )
    return _doc(
        f'<AccessControlPolicy xmlns="{S3_NS}"><Owner><ID>{_esc(owner)}</ID>'
        f"<DisplayName>{_esc(owner)}</DisplayName></Owner><AccessControlList>"
        f"<Grant>{grantee}<Permission>FULL_CONTROL</Permission></Grant>"
        "</AccessControlList></AccessControlPolicy>"
    )
