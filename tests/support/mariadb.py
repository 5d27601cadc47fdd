"""A private MariaDB server for tests, demo and bench: its own datadir, socket and port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql


def free_port() -> int:
    """A loopback port that was free a moment ago.

    Another process (a second pytest worker, or any outgoing connection's ephemeral port) may
    take it before the caller binds it: servers that can listen on port 0 should, and
    ``MariaDB.start`` picks another port when its choice was taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for as long as the block runs.

    The port stays bound (but not listening), so no other process can start listening on it
    meanwhile, as it could on a port that was merely released.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def _server_binary() -> str:
    for name in ("mariadbd", "mysqld"):
        for directory in ("/usr/sbin", "/usr/bin", "/usr/local/sbin"):
            path = os.path.join(directory, name)
            if os.access(path, os.X_OK):
                return path
    found = shutil.which("mariadbd") or shutil.which("mysqld")
    if not found:
        raise RuntimeError("mariadbd not found: apt install mariadb-server")
    return found


class MariaDB:
    """Start/stop a throwaway server under ``basedir``; root authenticates with a password."""

    ROOT_PASSWORD = "rootpw-Test-4-harness!"  # a test server's own root password, loopback only

    def __init__(
        self,
        basedir: str | os.PathLike[str],
        port: int | None = None,
        buffer_pool: str = "256M",
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        self.basedir = Path(basedir)
        self.tls = tls  # (CA, certificate, key) files: the server offers TLS
        self.datadir = self.basedir / "data"
        self.socket = str(self.basedir / "mysqld.sock")
        self.pidfile = self.basedir / "mysqld.pid"
        self.errlog = self.basedir / "error.log"
        # Its own tmpdir: a starting mariadbd deletes every "#sql*" file in its tmpdir, so with a
        # shared /tmp it would delete the internal temporary tables of a server that is running
        # a query (seen: a segfault in ha_maria::drop_table while another test started a server).
        self.tmpdir = self.basedir / "tmp"
        self.port = port or free_port()
        self.port_fixed = port is not None  # a caller's port is never swapped for another
        self.buffer_pool = buffer_pool
        self.proc: subprocess.Popen[bytes] | None = None

    # connection details as module options
    @property
    def login(self) -> dict[str, object]:
        return {
            "login_unix_socket": self.socket,
            "login_user": "root",
            "login_password": self.ROOT_PASSWORD,
            # an empty option file, so a ~/.my.cnf on the test machine cannot leak in
            "config_file": str(self.basedir / "empty-client.cnf"),
        }

    @property
    def login_tcp(self) -> dict[str, object]:
        return {
            "login_host": "127.0.0.1",
            "login_port": self.port,
            "login_user": "root",
            "login_password": self.ROOT_PASSWORD,
        }

    def _args(self) -> list[str]:
        return [
            _server_binary(),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--socket={self.socket}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={self.pidfile}",
            f"--tmpdir={self.tmpdir}",
            f"--log-error={self.errlog}",
            "--user=root",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
            f"--innodb-buffer-pool-size={self.buffer_pool}",
            "--innodb-log-file-size=256M",
            "--innodb-flush-log-at-trx-commit=2",
            "--skip-name-resolve",
            "--log-bin=mariadb-bin",
            "--server-id=1",
            "--max-allowed-packet=64M",
            *([f"--ssl-ca={self.tls[0]}", f"--ssl-cert={self.tls[1]}", f"--ssl-key={self.tls[2]}"] if self.tls else []),
        ]

    # mariadb-install-db options beyond the datadir and root's login: no test database by default
    INSTALL_OPTIONS: tuple[str, ...] = ("--skip-test-db",)

    def initialize(self) -> None:
        if (self.datadir / "mysql").is_dir():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                *self.INSTALL_OPTIONS,
            ],
            check=True,
            capture_output=True,
        )

    def _reuse_running(self) -> bool:
        """A server already running on this basedir (e.g. a bench server left up): use it.

        Starting a second mariadbd on the same datadir would spin on its file locks while
        the readiness check below connected to the first one.
        """
        try:
            pid = int(self.pidfile.read_text().strip())
            os.kill(pid, 0)
            conn = pymysql.connect(unix_socket=self.socket, user="root", password=self.ROOT_PASSWORD, connect_timeout=2)
        except (OSError, ValueError, pymysql.err.OperationalError):
            return False
        with conn.cursor() as cur:
            cur.execute("SELECT @@port")
            self.port = int(cur.fetchone()[0])
        conn.close()
        return True

    def start(self, timeout: float = 60, attempts: int = 5) -> MariaDB:
        """Start the server and wait until root can log in.

        When the port chosen by ``free_port`` was taken in the meantime (the server logs
        "Address already in use" and exits), start again on another one, up to ``attempts``
        times; a port the caller asked for is not swapped.
        """
        if self.proc is None and self._reuse_running():
            return self
        self.basedir.mkdir(parents=True, exist_ok=True)
        self.tmpdir.mkdir(mode=0o700, exist_ok=True)
        (self.basedir / "empty-client.cnf").write_text("[client]\n")
        fresh = not (self.datadir / "mysql").is_dir()
        self.initialize()
        for attempt in range(1, attempts + 1):
            log_offset = self.errlog.stat().st_size if self.errlog.exists() else 0
            try:
                return self._start_once(fresh, timeout)
            except RuntimeError:
                port_taken = False
                with contextlib.suppress(FileNotFoundError), self.errlog.open("rb") as log:
                    log.seek(log_offset)
                    port_taken = b"Address already in use" in log.read()
                if not port_taken or self.port_fixed or attempt == attempts:
                    raise
                self.port = free_port()
        raise ValueError(f"attempts must be at least 1, not {attempts}")

    def _start_once(self, fresh: bool, timeout: float) -> MariaDB:
        self.proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.errlog.read_text(errors="replace") if self.errlog.exists() else "(no error log)"
                raise RuntimeError(f"mariadbd exited early (exit code {self.proc.returncode}): {log[-2000:]}")
            try:
                pw = "" if fresh else self.ROOT_PASSWORD
                conn = pymysql.connect(unix_socket=self.socket, user="root", password=pw, connect_timeout=2)
            except pymysql.err.OperationalError:
                time.sleep(0.2)
                continue
            if fresh:
                with conn.cursor() as cur:
                    # mariadb-install-db makes root@localhost, @127.0.0.1, @::1 and @<host name>, all
                    # without a password: the loopback ones get the harness's (so login_tcp works and
                    # none is open). The host-name one is never loaded under skip-name-resolve (ALTER
                    # USER fails with 1396): no one can log in as it.
                    cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'")
                    for host in ("localhost", "127.0.0.1", "::1"):
                        cur.execute("ALTER USER IF EXISTS 'root'@%s IDENTIFIED BY %s", (host, self.ROOT_PASSWORD))
                    cur.execute("GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
            conn.close()
            return self
        raise RuntimeError(f"mariadbd did not come up within {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            pid = None
            with contextlib.suppress(OSError, ValueError):
                pid = int(self.pidfile.read_text().strip())
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
                for _attempt in range(300):
                    try:
                        os.kill(pid, 0)
                    except ProcessLookupError:
                        break
                    time.sleep(0.1)
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the server (crash simulation)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def connect(self, database: str | None = None, **kwargs: object) -> pymysql.connections.Connection:
        params: dict[str, object] = {
            "unix_socket": self.socket,
            "user": "root",
            "password": self.ROOT_PASSWORD,
            "charset": "utf8mb4",
            "autocommit": True,
        }
        params.update(kwargs)
        if database:
            params["database"] = database
        return pymysql.connect(**params)

    def execute(self, sql: str, args: object = None, database: str | None = None) -> list[tuple[object, ...]]:
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        finally:
            conn.close()

    def client_args(self, database: str | None = None, program: str = "mariadb") -> list[str]:
        """argv prefix for the mariadb CLI (or ``mariadb-dump``) in tests (test server root, loopback only)."""
        args = [program, "--no-defaults", f"--socket={self.socket}", "-uroot", f"-p{self.ROOT_PASSWORD}"]
        args.append("--default-character-set=utf8mb4")
        if database:
            args.append(database)
        return args


@contextlib.contextmanager
def temporary_server(
    prefix: str = "mutuapix-mariadb-", tls: tuple[Path, Path, Path] | None = None
) -> Iterator[MariaDB]:
    """A private server in a fresh temp dir; stopped and removed when the block ends.

    A server that died by itself meanwhile (not through ``kill()``) is an error at the end of
    the block, with its error log's tail (the crash report says which query), and the log is
    kept beside the temp dir.
    """
    base = tempfile.mkdtemp(prefix=prefix)
    server = MariaDB(base, tls=tls)
    died: int | None = None
    log = "(no error log)"
    try:
        server.start()
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is not None:
            died = server.proc.returncode
            with contextlib.suppress(OSError):
                log = server.errlog.read_text(errors="replace")
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    if died is not None:
        kept = Path(base + "-error.log")
        kept.write_text(log)
        raise RuntimeError(
            f"the private MariaDB died during the tests (exit code {died}); log kept in {kept}:\n{log[-4000:]}"
        )
