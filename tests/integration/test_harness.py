"""The test harness's own servers: ports taken by someone else, and what a stop keeps."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import mariadb as support
from tests.support.mariadb import MariaDB, temporary_server
from tests.support.s3server import S3Server


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port another process is listening on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_mariadb_moves_to_another_port_when_its_choice_was_taken(
    taken_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port's answer can be taken before mariadbd binds it (another pytest worker): start again elsewhere."""
    answers = iter([taken_port])
    real = support.free_port
    monkeypatch.setattr(support, "free_port", lambda: next(answers, None) or real())
    server = MariaDB(tmp_path / "server")
    assert server.port == taken_port
    try:
        server.start()
        assert server.port != taken_port
        assert server.execute("SELECT @@port") == [(server.port,)]
        with socket.create_connection(("127.0.0.1", server.port), timeout=5):
            pass
        log = server.errlog.read_text(errors="replace")
        assert f"Do you already have another server running on port: {taken_port}" in log
    finally:
        server.stop()


def test_mariadb_keeps_a_port_it_was_given(taken_port: int, tmp_path: Path) -> None:
    server = MariaDB(tmp_path / "server", port=taken_port)
    try:
        with pytest.raises(RuntimeError, match="Address already in use"):
            server.start()
        assert server.port == taken_port
    finally:
        server.stop()


def test_refused_port_refuses_and_cannot_be_taken_meanwhile() -> None:
    with support.refused_port() as port:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError) as taken:
                other.bind(("127.0.0.1", port))
            assert taken.value.errno == errno.EADDRINUSE


def s3_client(server: S3Server) -> Any:
    return boto3.client(
        "s3", endpoint_url=server.url, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )


def test_s3_server_restart_keeps_objects_on_a_new_port() -> None:
    server = S3Server()
    try:
        first = server.start()
        assert first[1] != 0 and server.running
        client = s3_client(server)
        client.create_bucket(Bucket="harness")
        client.put_object(Bucket="harness", Key="k", Body=b"v")
        server.stop()
        assert not server.running
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(first, timeout=5)  # stop() closed the listening socket
        server.start()
        assert s3_client(server).get_object(Bucket="harness", Key="k")["Body"].read() == b"v"
    finally:
        server.stop()


def test_a_server_that_dies_by_itself_is_reported_with_its_crash_report() -> None:
    """A crash must not pass for 'connection refused' in the tests after it: the log says which query."""
    with pytest.raises(RuntimeError, match=r"died during the tests \(exit code") as died:
        with temporary_server("mutuapix-crash-") as server:
            assert server.proc is not None
            os.kill(server.proc.pid, signal.SIGSEGV)
            server.proc.wait(60)
    kept = Path(re.search(r"log kept in (\S+):", str(died.value)).group(1))
    try:
        assert "got signal 11" in str(died.value)
        assert "got signal 11" in kept.read_text(errors="replace")
    finally:
        kept.unlink()


def test_starting_a_server_leaves_a_running_servers_temporary_tables_alone() -> None:
    """mariadbd deletes every "#sql*" file in its tmpdir when it starts: each server has its own."""
    with temporary_server() as running:
        assert running.execute("SELECT @@tmpdir") == [(str(running.tmpdir),)]
        in_use = running.tmpdir / "#sql-temptable-probe.MAI"  # what an on-disk internal temporary table looks like
        in_use.touch()
        with temporary_server() as starting:
            assert starting.tmpdir != running.tmpdir
        assert in_use.exists()
        # what the separate tmpdir prevents: a server starting on the same tmpdir deletes the file
        same = MariaDB(Path(running.basedir.parent) / (running.basedir.name + "-same-tmpdir"))
        same.tmpdir = running.tmpdir
        try:
            same.start()
            assert not in_use.exists()
        finally:
            same.stop()
            shutil.rmtree(same.basedir, ignore_errors=True)
