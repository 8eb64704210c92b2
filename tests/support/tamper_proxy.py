"""A backend that lies: an HTTP proxy process in front of a real moto server that flips the
first byte of every object body it returns (GET of a key), and passes everything else through.

``mode="proof"``: a gateway that lies instead, in front of the real gateway: in every
placement proof it returns, each piece held in the US is restated as held in the EU (same
length, so only the signature can tell).

Run as its own process (``TamperProxy().start()``, stopped by PID like the other services), so
the onboarding probe's read-after-write check meets a real server over a real socket.
"""

from __future__ import annotations

import http.client
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.processes import _Process

__all__ = ["TamperProxy"]

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class TamperProxy(_Process):
    target: str = ""
    mode: str = "flip"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        root = Path(__file__).resolve().parents[2]
        return [
            "env",
            f"PYTHONPATH={root}",
            sys.executable,
            "-m",
            "tests.support.tamper_proxy",
            str(self.port),
            self.target,
            self.mode,
        ]


def _handler(target: str, mode: str) -> type[BaseHTTPRequestHandler]:
    where = urlsplit(target)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            return

        def _forward(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)
            try:
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                response = conn.getresponse()
                data = response.read()
            finally:
                conn.close()
            key = urlsplit(self.path).path.strip("/").count("/") >= 1
            if mode == "proof":
                if "placement-proof" in urlsplit(self.path).query:
                    data = data.replace(b'"jurisdiction":"US"', b'"jurisdiction":"EU"')
            elif self.command == "GET" and key and response.status == 200 and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP:
                    self.send_header(name, value)
            length = response.getheader("content-length") if self.command == "HEAD" else None
            self.send_header("Content-Length", length or str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward  # noqa: N815

    return Handler


def main() -> None:
    port, target = int(sys.argv[1]), sys.argv[2]
    mode = sys.argv[3] if len(sys.argv) > 3 else "flip"
    ThreadingHTTPServer(("127.0.0.1", port), _handler(target, mode)).serve_forever()


if __name__ == "__main__":
    main()
