"""A tiny HTTP proxy in front of moto that behaves like B2 where moto is lenient.

It answers what B2 answers for requests B2 rejects (checksum headers, storage class, ACLs,
missing or wrong Content-MD5, unknown key IDs), records every request it sees on
the wire, and injects faults (503 SlowDown, a dropped connection, a body cut in half) on demand.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils._s3 import classify_request

NEEDS_MD5 = {"PutObject", "UploadPart", "DeleteObjects"}
FORBIDDEN = ("x-amz-checksum-", "x-amz-sdk-checksum-algorithm", "x-amz-storage-class", "x-amz-acl")
_CREDENTIAL_RE = re.compile(r"Credential=([^/]+)/")
_DELETE_OBJECT_RE = re.compile(rb"<Object><Key>(.*?)</Key>(?:<VersionId>(.*?)</VersionId>)?</Object>")


@dataclass
class Seen:
    operation: str
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class Fault:
    operation: str | None  # None: any request
    count: int
    status: int = 503
    code: str = "SlowDown"
    drop: bool = False  # close the connection without answering
    truncate: bool = False  # forward the request, send half of the answer's body, close
    delete_error: str | None = None  # DeleteObjects: refuse every object with this code (HTTP 200)


@dataclass
class ProxyState:
    upstream: tuple[str, int]
    key_ids: set[str]
    seen: list[Seen] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    rejected: list[Seen] = field(default_factory=list)
    hook: Callable[[Seen], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, operation: str | None = None, method: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for s in self.seen
                if (operation is None or s.operation == operation) and (method is None or s.method == method)
            )

    def clear(self) -> None:
        with self.lock:
            self.seen.clear()
            self.rejected.clear()
            self.faults.clear()

    def take_fault(self, operation: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.count > 0 and fault.operation in (None, operation):
                    fault.count -= 1
                    return fault
        return None


def _error_xml(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message></Error>'
    ).encode()


def _refuse_all(delete_body: bytes, code: str) -> bytes:
    """A DeleteObjects answer refusing each object of the request with ``code``."""
    errors = "".join(
        f"<Error><Key>{key.decode()}</Key>"
        + (f"<VersionId>{vid.decode()}</VersionId>" if vid else "")
        + f"<Code>{code}</Code><Message>Access Denied</Message></Error>"
        for key, vid in _DELETE_OBJECT_RE.findall(delete_body)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{errors}</DeleteResult>'
    ).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: ProxyState

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self, status: int, body: bytes, head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _b2_rejection(self, seen: Seen, body: bytes) -> tuple[int, str, str] | None:
        for name in seen.headers:
            if name.startswith(FORBIDDEN):
                return 400, "InvalidArgument", f"Unsupported header '{name}' received for this API call."
        if seen.operation in NEEDS_MD5 and "content-md5" not in seen.headers:
            return 400, "InvalidRequest", "Missing required header for this request: Content-MD5"
        if "content-md5" in seen.headers:
            digest = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
            if seen.headers["content-md5"] != digest:
                return 400, "BadDigest", "The Content-MD5 you specified did not match what was received."
        auth = seen.headers.get("authorization", "")
        match = _CREDENTIAL_RE.search(auth)
        if not auth.startswith("AWS4-HMAC-SHA256") or not match:
            return 400, "InvalidRequest", "Signature version 4 is required"
        if match.group(1) not in self.state.key_ids:
            return 403, "InvalidAccessKeyId", "Malformed Access Key Id"
        return None

    def _handle(self) -> None:
        state = self.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = Seen(classify_request(self.command, f"http://x{self.path}"), self.command, self.path, headers)
        with state.lock:
            state.seen.append(seen)
        if state.hook:
            state.hook(seen)
        head = self.command == "HEAD"
        rejection = self._b2_rejection(seen, body)
        if rejection:
            seen.status = rejection[0]
            if rejection[1] != "InvalidAccessKeyId":  # a dialect error, not a test of bad keys
                with state.lock:
                    state.rejected.append(seen)
            self._answer(rejection[0], _error_xml(rejection[1], rejection[2]), head)
            return
        fault = state.take_fault(seen.operation)
        if fault and fault.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault and fault.delete_error:
            # B2's answer when the key may not delete versions: 200, every object in Errors.
            seen.status = 200
            self._answer(200, _refuse_all(body, fault.delete_error))
            return
        if fault and not fault.truncate:
            seen.status = fault.status
            self._answer(fault.status, _error_xml(fault.code, "Please reduce your request rate."), head)
            return
        try:
            conn = http.client.HTTPConnection(*state.upstream, timeout=60)
            forward = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "keep-alive")}
            conn.request(self.command, self.path, body=body, headers=forward)
            response = conn.getresponse()
            data = response.read()
        except OSError:
            # The upstream server is down: a connection reset, as B2 would look when unreachable.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        seen.status = response.status
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                self.send_header(name, value)
        # HEAD answers carry the object's length with no body.
        self.send_header("Content-Length", response.getheader("Content-Length", "0") if head else str(len(data)))
        self.end_headers()
        if fault and fault.truncate:
            # The connection breaks mid-body: the client has the headers and part of the data.
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif not head:
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


class B2Proxy:
    def __init__(self, upstream: tuple[str, int], key_ids: set[str]) -> None:
        self.state = ProxyState(upstream, key_ids)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> B2Proxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
