"""``ViewBody``: the S3 client's PUT body read straight out of the part's buffer. botocore
asks its length, reads it to sign it, rewinds and reads it again to send it; every pass must
give exactly the part's bytes, and the part must not be copied whole."""

from __future__ import annotations

import io
import os

import numpy as np

from actors.backend_client import ViewBody


def _read_all(body: io.RawIOBase, block: int) -> bytes:
    out = bytearray()
    while chunk := body.read(block):
        out += chunk
    return bytes(out)


def test_reads_the_buffer_in_blocks_and_rewinds() -> None:
    data = os.urandom(3 * 8192 + 17)
    array = np.frombuffer(data, dtype=np.uint8)  # what the actor receives from the store
    body = ViewBody(array)
    assert len(body) == len(data) and body.seekable() and body.readable()
    assert _read_all(body, 8192) == data
    assert len(body) == 0 and body.read(10) == b""
    assert body.seek(0) == 0 and len(body) == len(data)
    assert _read_all(body, 1 << 20) == data
    body.seek(-17, io.SEEK_END)
    assert body.tell() == len(data) - 17 and body.read() == data[-17:]
    body.seek(5)
    body.seek(3, io.SEEK_CUR)
    assert body.read(4) == data[8:12]


def test_a_block_read_is_no_bigger_than_asked() -> None:
    data = bytes(range(256)) * 64
    body = ViewBody(memoryview(data))
    target = bytearray(100)
    assert body.readinto(target) == 100 and bytes(target) == data[:100]
    assert body.tell() == 100


def test_empty_body() -> None:
    body = ViewBody(b"")
    assert len(body) == 0 and body.read() == b""


def test_closing_lets_go_of_the_buffer() -> None:
    data = bytearray(b"part bytes")
    with ViewBody(data) as body:
        assert body.read(4) == b"part"
    data.extend(b"!")  # a bytearray cannot be resized while a view of it is alive
    assert body.closed
