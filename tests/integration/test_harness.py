"""The test harness's own servers: ports taken by someone else, and what a stop keeps."""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.support import mariadb as support
from tests.support import runner
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


def _run_payload(tmp_path: Path, run: str, source: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """Import pkg.mod from a fresh AnsiballZ-like payload zip (a new directory each run, as Ansible's)."""
    payload = tmp_path / run / "ansible_pkg.mod_payload.zip"
    payload.parent.mkdir()
    with zipfile.ZipFile(payload, "w") as archive:
        archive.writestr("pkg/__init__.py", "")
        archive.writestr("pkg/mod.py", source)
    script = (
        "import sys, traceback\n"
        f"sys.path.insert(0, {str(payload)!r})\n"
        "import pkg.mod\n"
        "print(type(pkg.mod.__loader__).__name__, pkg.mod.__file__)\n"
        "try:\n    pkg.mod.fail()\nexcept ValueError as exc:\n"
        "    frame = traceback.extract_tb(exc.__traceback__)[-1]\n"
        "    print(frame.filename, frame.lineno, frame.line)\n"
        "print(pkg.mod.VALUE)\n"
    )
    env = runner.module_env({"MUTUAPIX_TEST_BYTECODE_CACHE": str(cache)})
    return subprocess.run(
        [runner.MODULE_PYTHON, "-c", script], capture_output=True, text=True, env=env, check=True, timeout=60
    )


def test_the_payload_bytecode_cache_runs_the_payloads_own_source_from_its_own_path(tmp_path: Path) -> None:
    """The playbooks' modules are imported through tests/support/ansiballz_cache: same code, same paths."""
    cache = tmp_path / "cache"
    source = "VALUE = {}\n\n\ndef fail():\n    raise ValueError('from the payload')\n"
    first = _run_payload(tmp_path, "one", source.format(1), cache).stdout.splitlines()
    path = f"{tmp_path}/one/ansible_pkg.mod_payload.zip/pkg/mod.py"
    assert first == [f"CachingZipImporter {path}", f"{path} 5 raise ValueError('from the payload')", "1"]
    entries = sorted(cache.iterdir())
    assert len(entries) == 2  # pkg/__init__.py and pkg/mod.py, compiled once

    # the same source from another run's payload: read from the cache, with that run's file names
    second = _run_payload(tmp_path, "two", source.format(1), cache).stdout.splitlines()
    assert sorted(cache.iterdir()) == entries
    path = f"{tmp_path}/two/ansible_pkg.mod_payload.zip/pkg/mod.py"
    assert second == [f"CachingZipImporter {path}", f"{path} 5 raise ValueError('from the payload')", "1"]

    # a changed module is compiled again, never taken from the cache
    third = _run_payload(tmp_path, "three", source.format(2), cache).stdout.splitlines()
    assert third[-1] == "2"
    assert len(list(cache.iterdir())) == 3
