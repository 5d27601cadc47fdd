"""What goes over the wire: the request recorder (botocore event hooks) on every operation.

moto accepts requests B2 rejects, so these tests look at the requests themselves: no
flexible-checksum headers, no storage class or ACL, Content-MD5 where B2 needs it, SigV4.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from ansible_collections.mutuapix.ops.plugins.module_utils import _b2sync
from ansible_collections.mutuapix.ops.plugins.module_utils._s3 import (
    FORBIDDEN_HEADER_PREFIXES,
    ClientSettings,
    RequestRecorder,
    create_client,
)
from tests.integration.b2.b2helpers import APP_KEY, KEY_ID, REGION, MiB, write_backup
from tests.integration.b2.b2proxy import B2Proxy

NEEDS_MD5 = {"PutObject", "UploadPart", "DeleteObjects"}


@pytest.fixture
def recorded(proxy: B2Proxy) -> tuple[Any, RequestRecorder]:
    recorder = RequestRecorder()
    settings = ClientSettings(proxy.url, REGION, KEY_ID, APP_KEY, max_attempts=2)
    return create_client(settings, recorder), recorder


def test_every_request_is_one_b2_accepts(recorded, proxy, bucket, tmp_path: Path, s3):
    client, recorder = recorded
    src = tmp_path / "src"
    src.mkdir()
    now = dt.datetime.now(dt.timezone.utc)
    for day in range(3):
        write_backup(src, "app", now - dt.timedelta(days=day), 6 * MiB if day == 0 else 2000)
    config = _b2sync.SyncConfig(bucket=bucket, prefix="h/", part_size=5 * MiB, verify="download")
    cache = _b2sync.HashCache(None, "test")
    pushed = _b2sync.push(client, config, str(src), cache, now)
    assert len(pushed["uploaded"]) == 6
    config.retention = {"keep_last": 1}
    pruned = _b2sync.push(client, config, str(src), cache, now)
    assert len(pruned["deleted"]) == 4
    dest = tmp_path / "dest"
    dest.mkdir()
    _b2sync.pull(client, config, str(dest), None, "app")

    operations = {r.operation for r in recorder.requests}
    assert {"PutObject", "UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload", "DeleteObjects"} <= (
        operations
    )
    assert {"GetObject", "HeadObject", "ListObjects", "ListObjectVersions"} <= operations
    for request in recorder.requests:
        forbidden = [h for h in request.headers if h.startswith(FORBIDDEN_HEADER_PREFIXES)]
        assert not forbidden, (request.operation, forbidden)
        assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=" + KEY_ID)
        if request.operation in NEEDS_MD5:
            assert len(base64.b64decode(request.headers["content-md5"])) == 16, request.operation
    # And the proxy, which answers like B2, refused nothing.
    assert proxy.state.rejected == []
    assert proxy.state.count() == len(recorder.requests)


def test_content_md5_matches_the_body(recorded, bucket):
    client, recorder = recorded
    body = b"payload " * 1000
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    client.put_object(Bucket=bucket, Key="k", Body=body, ContentMD5=md5)
    version = client.head_object(Bucket=bucket, Key="k")["VersionId"]
    client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k", "VersionId": version}], "Quiet": False})
    delete = next(r for r in recorder.requests if r.operation == "DeleteObjects")
    assert "content-md5" in delete.headers
    assert not any(h.startswith("x-amz-checksum") for h in delete.headers)


def test_a_default_boto3_client_is_rejected_like_b2_rejects_it(proxy, bucket):
    """The control: stock boto3 sends CRC32 checksum headers, and the proxy refuses them as B2 does."""
    stock = boto3.client(
        "s3",
        endpoint_url=proxy.url,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=APP_KEY,
        region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        stock.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert raised.value.response["Error"]["Code"] == "InvalidArgument"
    with pytest.raises(botocore.exceptions.ClientError):
        stock.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k"}]})
    assert len(proxy.state.rejected) == 2
    proxy.state.rejected.clear()  # expected here; the autouse check is for the module's requests


@pytest.fixture(autouse=True)
def _no_rejections(proxy: B2Proxy) -> Any:
    yield
    assert proxy.state.rejected == []


def test_a_wrong_content_md5_is_refused(recorded, proxy, bucket):
    client, _recorder = recorded
    wrong = base64.b64encode(hashlib.md5(b"other", usedforsecurity=False).digest()).decode()
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        client.put_object(Bucket=bucket, Key="k", Body=b"payload", ContentMD5=wrong)
    assert raised.value.response["Error"]["Code"] == "BadDigest"
    proxy.state.rejected.clear()  # expected here
