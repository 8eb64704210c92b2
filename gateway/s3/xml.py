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

from actors.upload_completion import ListedPart
from actors.uploads import MAX_PARTS
from core.wire_numbers import parse_decimal
from gateway.s3.errors import InvalidPartOrder, MalformedXML, S3Error

__all__ = [
    "S3_NS",
    "error_document",
    "iso8601",
    "list_buckets_document",
    "list_objects_document",
    "location_document",
    "parse_complete_document",
    "parse_xml",
]

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BYTES = 1024 * 1024


_CONTROL = {c: f"&#{c};" for c in (*range(0x09), 0x0B, 0x0C, 0x0D, *range(0x0E, 0x20))}


def _esc(value: object) -> str:
    """Escape text for an element or attribute. Keys may hold control characters: a carriage
    return is sent as ``&#13;`` (a parser would turn a raw one into a newline), the others
    XML 1.0 cannot carry raw as character references, as S3 sends them."""
    text = str(value)
    text = (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )
    return text.translate(_CONTROL) if any(c < " " for c in text) else text


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
    # With encoding-type=url S3 encodes Delimiter, Marker, NextMarker, Key and the common
    # prefixes in v1, and Delimiter, Prefix, StartAfter, Key and the common prefixes in v2:
    # v1's own Prefix stays as sent (the SDKs decode exactly these fields, no others).
    parts.append(f"<Prefix>{enc(prefix) if v2 else _esc(prefix)}</Prefix>")
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
            if owner
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


# -- multipart uploads ---------------------------------------------------------------------------
def checksum_element(algorithm: str) -> str:
    """The XML element of an ``x-amz-checksum-<algorithm>`` value: ``crc32`` -> ChecksumCRC32."""
    return "Checksum" + algorithm.upper()


def _checksum_xml(checksum: tuple[str, str] | None) -> str:
    if checksum is None:
        return ""
    name = checksum_element(checksum[0])
    return f"<{name}>{_esc(checksum[1])}</{name}>"


def _party(element: str, owner: str) -> str:
    return f"<{element}><ID>{_esc(owner)}</ID><DisplayName>{_esc(owner)}</DisplayName></{element}>"


def initiate_multipart_upload_document(bucket: str, key: str, upload_id: str) -> bytes:
    return _doc(
        f'<InitiateMultipartUploadResult xmlns="{S3_NS}"><Bucket>{_esc(bucket)}</Bucket>'
        f"<Key>{_esc(key)}</Key><UploadId>{_esc(upload_id)}</UploadId>"
        "</InitiateMultipartUploadResult>"
    )


def complete_multipart_upload_document(
    *,
    location: str,
    bucket: str,
    key: str,
    etag: str,
    checksum: tuple[str, str] | None = None,
    checksum_type: str | None = None,
) -> bytes:
    """``checksum``: (algorithm, base64 value) of the completed object."""
    kind = f"<ChecksumType>{_esc(checksum_type)}</ChecksumType>" if checksum_type else ""
    return _doc(
        f'<CompleteMultipartUploadResult xmlns="{S3_NS}"><Location>{_esc(location)}</Location>'
        f"<Bucket>{_esc(bucket)}</Bucket><Key>{_esc(key)}</Key>"
        f"<ETag>&quot;{_esc(etag)}&quot;</ETag>{_checksum_xml(checksum)}{kind}"
        "</CompleteMultipartUploadResult>"
    )


def copy_part_result_document(
    etag: str, last_modified: datetime, checksum: tuple[str, str] | None = None
) -> bytes:
    return _doc(
        f'<CopyPartResult xmlns="{S3_NS}"><LastModified>{iso8601(last_modified)}</LastModified>'
        f"<ETag>&quot;{_esc(etag)}&quot;</ETag>{_checksum_xml(checksum)}</CopyPartResult>"
    )


def list_parts_document(
    *,
    bucket: str,
    key: str,
    upload_id: str,
    owner: str,
    initiator: str,
    part_number_marker: int,
    next_part_number_marker: int | None,
    max_parts: int,
    is_truncated: bool,
    checksum_algorithm: str | None,
    parts: Sequence[tuple[int, datetime, str, int, str | None]],
) -> bytes:
    """``parts``: (part number, last modified, ETag, size, checksum value) in order."""
    out = [
        f'<ListPartsResult xmlns="{S3_NS}"><Bucket>{_esc(bucket)}</Bucket>'
        f"<Key>{_esc(key)}</Key><UploadId>{_esc(upload_id)}</UploadId>",
        _party("Initiator", initiator),
        _party("Owner", owner),
        "<StorageClass>STANDARD</StorageClass>",
        f"<PartNumberMarker>{part_number_marker}</PartNumberMarker>",
    ]
    if next_part_number_marker is not None:
        out.append(f"<NextPartNumberMarker>{next_part_number_marker}</NextPartNumberMarker>")
    out.append(f"<MaxParts>{max_parts}</MaxParts>")
    out.append(f"<IsTruncated>{'true' if is_truncated else 'false'}</IsTruncated>")
    if checksum_algorithm:
        out.append(f"<ChecksumAlgorithm>{_esc(checksum_algorithm.upper())}</ChecksumAlgorithm>")
    for number, modified, etag, size, checksum in parts:
        value = (checksum_algorithm, checksum) if checksum_algorithm and checksum else None
        out.append(
            f"<Part><PartNumber>{number}</PartNumber>"
            f"<LastModified>{iso8601(modified)}</LastModified>"
            f"<ETag>&quot;{_esc(etag)}&quot;</ETag><Size>{size}</Size>"
            f"{_checksum_xml(value)}</Part>"
        )
    out.append("</ListPartsResult>")
    return _doc("".join(out))


def list_multipart_uploads_document(
    *,
    bucket: str,
    owner: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_id_marker: str,
    next_key_marker: str | None,
    next_upload_id_marker: str | None,
    max_uploads: int,
    is_truncated: bool,
    encoding_type: str | None,
    uploads: Sequence[tuple[str, str, str, datetime, str | None]],
    common_prefixes: Sequence[str],
) -> bytes:
    """``uploads``: (key, upload id, initiator, initiated, checksum algorithm) in order."""
    from urllib.parse import quote

    def enc(value: str) -> str:
        return _esc(quote(value, safe="/") if encoding_type == "url" else value)

    out = [
        f'<ListMultipartUploadsResult xmlns="{S3_NS}"><Bucket>{_esc(bucket)}</Bucket>',
        f"<KeyMarker>{enc(key_marker)}</KeyMarker>",
        f"<UploadIdMarker>{_esc(upload_id_marker)}</UploadIdMarker>",
    ]
    if next_key_marker is not None:
        out.append(f"<NextKeyMarker>{enc(next_key_marker)}</NextKeyMarker>")
    if next_upload_id_marker is not None:
        out.append(f"<NextUploadIdMarker>{_esc(next_upload_id_marker)}</NextUploadIdMarker>")
    out.append(f"<Prefix>{enc(prefix)}</Prefix>")
    if delimiter:
        out.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
    out.append(f"<MaxUploads>{max_uploads}</MaxUploads>")
    if encoding_type:
        out.append(f"<EncodingType>{_esc(encoding_type)}</EncodingType>")
    out.append(f"<IsTruncated>{'true' if is_truncated else 'false'}</IsTruncated>")
    for key, upload_id, initiator, initiated, algorithm in uploads:
        checksum = (
            f"<ChecksumAlgorithm>{_esc(algorithm.upper())}</ChecksumAlgorithm>" if algorithm else ""
        )
        out.append(
            f"<Upload><Key>{enc(key)}</Key><UploadId>{_esc(upload_id)}</UploadId>"
            f"{_party('Initiator', initiator)}{_party('Owner', owner)}"
            f"<StorageClass>STANDARD</StorageClass><Initiated>{iso8601(initiated)}</Initiated>"
            f"{checksum}</Upload>"
        )
    for cp in common_prefixes:
        out.append(f"<CommonPrefixes><Prefix>{enc(cp)}</Prefix></CommonPrefixes>")
    out.append("</ListMultipartUploadsResult>")
    return _doc("".join(out))


def _checksum_algorithm_of(element_name: str) -> str | None:
    """``ChecksumCRC32`` -> ``crc32``; None for other elements (``ChecksumType`` too)."""
    if element_name.startswith("Checksum") and element_name != "ChecksumType":
        return element_name.removeprefix("Checksum").lower() or None
    return None


def parse_complete_document(body: bytes) -> list[ListedPart]:
    """The parts a CompleteMultipartUpload lists, in document order. MalformedXML for a
    document that is not one (oversized, DTD/entities, wrong root, no part, bad numbers);
    InvalidPartOrder unless the part numbers ascend strictly."""
    root = parse_xml(body)
    if local_name(root) != "CompleteMultipartUpload":
        raise MalformedXML()
    parts: list[ListedPart] = []
    for element in root:
        if local_name(element) != "Part":
            continue
        number: int | None = None
        etag: str | None = None
        checksums: list[tuple[str, str]] = []
        for field in element:
            name = local_name(field)
            text = (field.text or "").strip()
            if name == "PartNumber":
                number = parse_decimal(text, maximum=MAX_PARTS)
                if number is None or number < 1:
                    raise MalformedXML("PartNumber must be an integer between 1 and 10000")
            elif name == "ETag":
                etag = text.strip('"')
            elif (algorithm := _checksum_algorithm_of(name)) is not None:
                checksums.append((algorithm, text))
        if number is None or etag is None:
            raise MalformedXML("Each Part needs a PartNumber and an ETag")
        parts.append(ListedPart(number, etag, tuple(checksums)))
        if len(parts) > MAX_PARTS:
            raise MalformedXML(f"A multipart upload has at most {MAX_PARTS} parts")
    if not parts:
        raise MalformedXML("The XML you provided did not list any part.")
    for before, after in zip(parts, parts[1:], strict=False):
        if after.part_number <= before.part_number:
            raise InvalidPartOrder()
    return parts
