"""An S3-compatible server on 127.0.0.1 (moto) behind a proxy that rejects what B2 rejects."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.integration.b2.b2helpers import APP_KEY, KEY_ID, REGION
from tests.integration.b2.b2proxy import B2Proxy
from tests.support.s3server import S3Server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[S3Server]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def b2(moto_server: S3Server) -> Iterator[B2Proxy]:
    proxy = B2Proxy(moto_server.address, {KEY_ID}).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxy(b2: B2Proxy, moto_server: S3Server) -> Iterator[B2Proxy]:
    """The proxy with a clean record and no pending faults, pointing at the running moto."""
    if not moto_server.running:  # a fault-injection test stopped it and failed early
        moto_server.start()
    b2.state.clear()
    b2.state.hook = None
    b2.state.upstream = moto_server.address
    yield b2
    b2.state.hook = None
    b2.state.faults.clear()


class Admin:
    """Test-side view of the bucket, through whatever moto address is current."""

    def __init__(self, handle: S3Server) -> None:
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
def s3(moto_server: S3Server) -> Any:
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
