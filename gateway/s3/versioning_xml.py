"""S3 XML documents of versioning and batch delete: VersioningConfiguration (both ways),
ListVersionsResult, the Delete request and DeleteResult.

Request documents are untrusted: they go through defusedxml (no DTD, so no entity expansion)
with a size cap, and every problem is ``MalformedXML``. Rendering escapes every value, with the
helpers of ``gateway/s3/xml.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from gateway.s3 import errors as s3e
from gateway.s3.xml import S3_NS, _doc, _esc, iso8601, local_name, parse_xml
from schema.listing import ListedVersion

__all__ = [
    "MAX_DELETE_OBJECTS",
    "MAX_DELETE_XML_BYTES",
    "DeleteRequest",
    "DeletedEntry",
    "DeleteError",
    "delete_result_document",
    "list_versions_document",
    "parse_delete_request",
    "parse_versioning_configuration",
    "versioning_document",
]

MAX_DELETE_OBJECTS = 1000
#: 1000 keys of up to 1024 bytes each, with their markup and version ids.
MAX_DELETE_XML_BYTES = 2 * 1024 * 1024


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if local_name(child) == name]


def _text(element: Element, name: str) -> str | None:
    found = _children(element, name)
    if len(found) > 1:
        raise s3e.MalformedXML(f"<{name}> appears more than once")
    if not found:
        return None
    return found[0].text or ""


# -- PutBucketVersioning / GetBucketVersioning --------------------------------------------------
def parse_versioning_configuration(body: bytes) -> str:
    """The ``Status`` a PutBucketVersioning document asks for: ``Enabled`` or ``Suspended``
    (a bucket never goes back to unversioned); a missing or other Status is ``MalformedXML``.
    ``MfaDelete: Enabled`` is NotImplemented (no MFA here)."""
    root = parse_xml(body)
    if local_name(root) != "VersioningConfiguration":
        raise s3e.MalformedXML()
    status = _text(root, "Status")
    mfa = _text(root, "MfaDelete")
    if mfa is not None and mfa.strip() not in ("Enabled", "Disabled"):
        raise s3e.MalformedXML()
    if mfa is not None and mfa.strip() == "Enabled":
        raise s3e.NotImplemented("MFA delete is not supported by this gateway")
    if status is None:
        raise s3e.MalformedXML("The VersioningConfiguration names no Status")
    status = status.strip()
    if status not in ("Enabled", "Suspended"):
        raise s3e.MalformedXML("Status must be Enabled or Suspended")
    return status


def versioning_document(status: str) -> bytes:
    """GetBucketVersioning: no Status element while versioning was never turned on."""
    inner = "" if status == "Unversioned" else f"<Status>{_esc(status)}</Status>"
    return _doc(f'<VersioningConfiguration xmlns="{S3_NS}">{inner}</VersioningConfiguration>')


# -- ListObjectVersions ------------------------------------------------------------------------
def list_versions_document(
    *,
    bucket: str,
    prefix: str,
    delimiter: str,
    key_marker: str,
    version_id_marker: str,
    max_keys: int,
    is_truncated: bool,
    next_key_marker: str | None,
    next_version_id_marker: str | None,
    entries: Sequence[ListedVersion],
    common_prefixes: Sequence[str],
    encoding_type: str | None,
    owner: str,
) -> bytes:
    def enc(value: str) -> str:
        return _esc(quote(value, safe="/") if encoding_type == "url" else value)

    owner_xml = f"<Owner><ID>{_esc(owner)}</ID><DisplayName>{_esc(owner)}</DisplayName></Owner>"
    parts = [
        f'<ListVersionsResult xmlns="{S3_NS}"><Name>{_esc(bucket)}</Name>',
        f"<Prefix>{enc(prefix)}</Prefix>",
        f"<KeyMarker>{enc(key_marker)}</KeyMarker>",
        f"<VersionIdMarker>{_esc(version_id_marker)}</VersionIdMarker>",
    ]
    if next_key_marker is not None:
        parts.append(f"<NextKeyMarker>{enc(next_key_marker)}</NextKeyMarker>")
    if next_version_id_marker is not None:
        parts.append(f"<NextVersionIdMarker>{_esc(next_version_id_marker)}</NextVersionIdMarker>")
    parts.append(f"<MaxKeys>{max_keys}</MaxKeys>")
    if delimiter:
        parts.append(f"<Delimiter>{enc(delimiter)}</Delimiter>")
    if encoding_type:
        parts.append(f"<EncodingType>{_esc(encoding_type)}</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if is_truncated else 'false'}</IsTruncated>")
    for entry in entries:
        common = (
            f"<Key>{enc(entry.key)}</Key><VersionId>{_esc(entry.version_id)}</VersionId>"
            f"<IsLatest>{'true' if entry.is_latest else 'false'}</IsLatest>"
            f"<LastModified>{iso8601(entry.last_modified)}</LastModified>"
        )
        if entry.is_delete_marker:
            parts.append(f"<DeleteMarker>{common}{owner_xml}</DeleteMarker>")
        else:
            parts.append(
                f"<Version>{common}<ETag>&quot;{_esc(entry.etag)}&quot;</ETag>"
                f"<Size>{entry.size}</Size>{owner_xml}"
                "<StorageClass>STANDARD</StorageClass></Version>"
            )
    for cp in common_prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{enc(cp)}</Prefix></CommonPrefixes>")
    parts.append("</ListVersionsResult>")
    return _doc("".join(parts))


# -- DeleteObjects -----------------------------------------------------------------------------
@dataclass(frozen=True)
class DeleteRequest:
    quiet: bool
    objects: tuple[tuple[str, str | None], ...]  # (key, version id)


def _parse_limited(body: bytes, limit: int) -> Element:
    if len(body) > limit:
        raise s3e.MalformedXML("The XML you provided was too large.")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (SafeET.ParseError, DefusedXmlException, ValueError) as exc:
        raise s3e.MalformedXML() from exc
    return root  # type: ignore[no-any-return]


def parse_delete_request(body: bytes) -> DeleteRequest:
    """``<Delete><Quiet/><Object><Key/><VersionId/></Object>...</Delete>``: 1 to 1000 objects,
    each with exactly one non-empty Key; anything else is ``MalformedXML``."""
    root = _parse_limited(body, MAX_DELETE_XML_BYTES)
    if local_name(root) != "Delete":
        raise s3e.MalformedXML()
    quiet_text = _text(root, "Quiet")
    quiet = False
    if quiet_text is not None:
        value = quiet_text.strip().lower()
        if value not in ("true", "false"):
            raise s3e.MalformedXML("Quiet must be true or false")
        quiet = value == "true"
    elements = _children(root, "Object")
    if not elements or len(elements) > MAX_DELETE_OBJECTS:
        raise s3e.MalformedXML(
            f"A Delete request names 1 to {MAX_DELETE_OBJECTS} objects, not {len(elements)}"
        )
    objects: list[tuple[str, str | None]] = []
    for element in elements:
        key = _text(element, "Key")
        if not key:
            raise s3e.MalformedXML("Every Object needs a Key")
        version_id = _text(element, "VersionId")
        objects.append((key, version_id.strip() if version_id is not None else None))
    return DeleteRequest(quiet, tuple(objects))


@dataclass(frozen=True)
class DeletedEntry:
    key: str
    version_id: str | None = None
    delete_marker: bool = False
    delete_marker_version_id: str | None = None


@dataclass(frozen=True)
class DeleteError:
    key: str
    version_id: str | None
    code: str
    message: str


def delete_result_document(
    deleted: Sequence[DeletedEntry], errors: Sequence[DeleteError], *, quiet: bool
) -> bytes:
    """DeleteResult: what was deleted, then the errors; Quiet mode lists only the errors."""
    parts = [f'<DeleteResult xmlns="{S3_NS}">']
    if not quiet:
        for d in deleted:
            xml = f"<Deleted><Key>{_esc(d.key)}</Key>"
            if d.version_id is not None:
                xml += f"<VersionId>{_esc(d.version_id)}</VersionId>"
            if d.delete_marker:
                xml += "<DeleteMarker>true</DeleteMarker>"
                if d.delete_marker_version_id is not None:
                    xml += (
                        f"<DeleteMarkerVersionId>{_esc(d.delete_marker_version_id)}"
                        "</DeleteMarkerVersionId>"
                    )
            parts.append(xml + "</Deleted>")
    for e in errors:
        version = f"<VersionId>{_esc(e.version_id)}</VersionId>" if e.version_id is not None else ""
        parts.append(
            f"<Error><Key>{_esc(e.key)}</Key>{version}<Code>{_esc(e.code)}</Code>"
            f"<Message>{_esc(e.message)}</Message></Error>"
        )
    parts.append("</DeleteResult>")
    return _doc("".join(parts))
