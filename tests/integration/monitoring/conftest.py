"""Real peers for the probe modules: HTTPS servers with certificates made here, an HTTP 500
server, a refused port and a webhook receiver that records what it is sent. All on 127.0.0.1,
started and stopped by these fixtures."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import threading
import uuid
import zoneinfo
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.support import datagen
from tests.support import mariadb as support_mariadb
from tests.support.certs import CertFactory
from tests.support.mariadb import MariaDB


class Server:
    """A ThreadingHTTPServer whose answer can be changed while it runs."""

    def __init__(self, httpd: ThreadingHTTPServer, scheme: str) -> None:
        self.httpd = httpd
        self.scheme = scheme
        self.port = httpd.server_address[1]
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/health"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _handler(server_ref: dict[str, Server]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            server = server_ref["server"]
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.requests.append(
                {"method": self.command, "path": self.path, "body": body, "headers": dict(self.headers.items())}
            )
            payload = b'{"ok": true}' if server.status < 400 else b"boom"
            self.send_response(server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def start_server(status: int = 200, tls: ssl.SSLContext | None = None) -> Server:
    ref: dict[str, Server] = {}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    server = Server(httpd, "https" if tls else "http")
    server.status = status
    ref["server"] = server
    server.thread.start()
    return server


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertFactory:
    return CertFactory(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def https_server(certs: CertFactory) -> Iterator[Callable[..., Server]]:
    """Factory: an HTTPS server whose certificate expires in ``days`` (plus an hour) from now."""
    started: list[Server] = []

    def make(days: float, status: int = 200) -> Server:
        not_after = dt.datetime.now(dt.UTC) + dt.timedelta(days=days, hours=1)
        server = start_server(status, certs.server_context(not_after, f"srv{len(started)}"))
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def named_server_context(certs: CertFactory, name: str, not_after: dt.datetime, label: str) -> ssl.SSLContext:
    """A server context whose certificate, from the test CA, is for the DNS name ``name`` only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(certs.ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime.now(dt.UTC) - dt.timedelta(days=30))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(certs.ca_key, hashes.SHA256())
    )
    cert_path, key_path = certs.directory / f"{label}.pem", certs.directory / f"{label}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.fixture
def sni_server(certs: CertFactory) -> Iterator[Callable[..., Server]]:
    """Factory: an HTTPS server on 127.0.0.1 that, like a web server with virtual hosts, presents the certificate
    of the name asked for by SNI (``sites``: name -> days left), and otherwise its default one for 127.0.0.1."""
    started: list[Server] = []

    def make(default_days: float, sites: dict[str, float]) -> Server:
        label = f"sni{len(started)}"
        now = dt.datetime.now(dt.UTC)
        default = certs.server_context(now + dt.timedelta(days=default_days, hours=1), label)
        contexts = {
            name: named_server_context(certs, name, now + dt.timedelta(days=days, hours=1), f"{label}-{name}")
            for name, days in sites.items()
        }

        def select(sock: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext) -> None:
            if server_name in contexts:
                sock.context = contexts[server_name]

        default.sni_callback = select
        server = start_server(200, default)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def http_server() -> Iterator[Server]:
    server = start_server(200)
    yield server
    server.stop()


@pytest.fixture
def webhook() -> Iterator[Server]:
    """A webhook receiver: ``webhook.posts`` are the JSON bodies it received."""
    server = start_server(200)
    yield server
    server.stop()


def posts(server: Server) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in server.requests if r["method"] == "POST"]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections (kept bound, not listening, during the test)."""
    with support_mariadb.refused_port() as port:
        yield port


# --------------------------------------------------------------------------- Laravel queues

JOBS_DDL = next(s for s in datagen.SCHEMA if s.startswith("CREATE TABLE jobs"))
FAILED_DDL = next(s for s in datagen.SCHEMA if s.startswith("CREATE TABLE failed_jobs"))


class Queues:
    """Puts jobs in the state a test needs, relative to the server's clock."""

    def __init__(self, server: MariaDB, database: str) -> None:
        self.server = server
        self.database = database

    def now(self) -> int:
        return int(self.server.execute("SELECT UNIX_TIMESTAMP()")[0][0])

    def job(self, queue: str = "default", age_s: int = 0, reserved_age_s: int | None = None, count: int = 1) -> None:
        now = self.now()
        reserved = None if reserved_age_s is None else now - reserved_age_s
        row = (
            queue,
            '{"job":"App\\\\Jobs\\\\Settle"}',
            0 if reserved is None else 1,
            reserved,
            now - age_s,
            now - age_s,
        )
        self.server.execute(
            "INSERT INTO jobs (queue, payload, attempts, reserved_at, available_at, created_at) VALUES "
            + ", ".join(["(%s, %s, %s, %s, %s, %s)"] * count),
            row * count,
            database=self.database,
        )

    def failed(self, count: int, age_s: int = 0, app_timezone: str = "UTC") -> None:
        """As Laravel logs a failure: ``failed_at`` is the wall-clock time of the app's time zone."""
        when = dt.datetime.fromtimestamp(self.now() - age_s, tz=zoneinfo.ZoneInfo(app_timezone))
        values = ", ".join(["(%s, 'database', 'default', '{}', 'RuntimeException: boom', %s)"] * count)
        args: list[object] = []
        for _job in range(count):
            args += [str(uuid.uuid4()), when.strftime("%Y-%m-%d %H:%M:%S")]
        self.server.execute(
            f"INSERT INTO failed_jobs (uuid, connection, queue, payload, exception, failed_at) VALUES {values}",
            args,
            database=self.database,
        )

    def clear(self) -> None:
        self.server.execute("DELETE FROM jobs", database=self.database)
        self.server.execute("DELETE FROM failed_jobs", database=self.database)


@pytest.fixture
def queues(mariadb: MariaDB, request: pytest.FixtureRequest) -> Iterator[Queues]:
    name = "q_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:40]
    mariadb.execute(f"DROP DATABASE IF EXISTS `{name}`")
    mariadb.execute(f"CREATE DATABASE `{name}`")
    mariadb.execute(JOBS_DDL, database=name)
    mariadb.execute(FAILED_DDL, database=name)
    yield Queues(mariadb, name)
    mariadb.execute(f"DROP DATABASE IF EXISTS `{name}`")
