"""An S3-compatible server on 127.0.0.1 (moto) behind a proxy that rejects what B2 rejects."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto.server import ThreadedMotoServer

from tests.integration.b2.b2helpers import APP_KEY, KEY_ID, REGION
from tests.integration.b2.b2proxy import B2Proxy
from tests.support.mariadb import free_port


class MotoHandle:
    """moto's server in a thread; stop()/start() keep the stored objects (they live in-process)."""

    def __init__(self) -> None:
        self.server: ThreadedMotoServer | None = None
        self.address: tuple[str, int] = ("127.0.0.1", 0)

    def start(self) -> tuple[str, int]:
        self.address = ("127.0.0.1", free_port())
        self.server = ThreadedMotoServer(ip_address=self.address[0], port=self.address[1], verbose=False)
        self.server.start()
        return self.address

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            inner = getattr(self.server, "_server", None)
            if inner is not None:
                inner.server_close()  # ThreadedMotoServer.stop() leaves the socket open
            self.server = None


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoHandle]:
    os.environ.setdefault("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    handle = MotoHandle()
    handle.start()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def b2(moto_server: MotoHandle) -> Iterator[B2Proxy]:
    proxy = B2Proxy(moto_server.address, {KEY_ID}).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxy(b2: B2Proxy, moto_server: MotoHandle) -> Iterator[B2Proxy]:
    """The proxy with a clean record and no pending faults, pointing at the running moto."""
    if moto_server.server is None:  # a fault-injection test stopped it and failed early
        moto_server.start()
    b2.state.clear()
    b2.state.hook = None
    b2.state.upstream = moto_server.address
    yield b2
    b2.state.hook = None
    b2.state.faults.clear()


class Admin:
    """Test-side view of the bucket, through whatever moto address is current."""

    def __init__(self, handle: MotoHandle) -> None:
        self.handle = handle

    @property
    def client(self) -> Any:
        host, port = self.handle.address
        return boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id="admin",
            aws_secret_access_key="admin",
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )


@pytest.fixture
def s3(moto_server: MotoHandle) -> Any:
    return Admin(moto_server).client


def _new_bucket(s3: Any, lock: bool = False) -> str:
    name = "t-" + uuid.uuid4().hex[:16]
    if lock:
        s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    else:
        s3.create_bucket(Bucket=name)
    # B2 buckets keep every version of a file: test against the same behaviour.
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return name


@pytest.fixture
def bucket(s3: Any) -> str:
    return _new_bucket(s3)


@pytest.fixture
def locked_bucket(s3: Any) -> str:
    return _new_bucket(s3, lock=True)


@pytest.fixture
def args_for(proxy: B2Proxy, tmp_path: Path) -> Any:
    def make(bucket: str, **extra: Any) -> dict[str, Any]:
        args: dict[str, Any] = {
            "bucket": bucket,
            "endpoint_url": proxy.url,
            "region": REGION,
            "key_id": KEY_ID,
            "application_key": APP_KEY,
            "cache_file": str(tmp_path / "cache" / "b2_sync.json"),
            "max_attempts": 3,
        }
        args.update(extra)
        return args

    return make
