"""The B2 client (_s3.py): endpoint, request dialect, recorder, streaming bodies, error messages.

Requests are intercepted at botocore's ``before-send`` event, after signing, so these tests
see the exact headers that would go over the wire without needing a server.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from botocore.awsrequest import AWSResponse

from ansible_collections.mutuapix.ops.plugins.module_utils._s3 import (
    OPTIONAL_CLIENT_OPTIONS,
    B2Error,
    ClientSettings,
    FileRange,
    RequestRecorder,
    b2_argument_spec,
    classify_request,
    client_config,
    create_client,
    describe_error,
    file_sha256,
    is_not_found,
    resolve_endpoint,
)

SETTINGS = ClientSettings("http://127.0.0.1:9", "us-west-004", "keyid", "secret", max_attempts=1)


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def fake_server(sent: list[Any], status: int = 200, body: bytes = b"") -> Any:
    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, status, {"ETag": '"abc"'}, _Raw(body))

    return answer


@pytest.fixture
def client_and_sent() -> tuple[Any, list[Any]]:
    sent: list[Any] = []
    client = create_client(SETTINGS)
    client.meta.events.register_last("before-send.s3", fake_server(sent))
    return client, sent


def headers_of(request: Any) -> dict[str, str]:
    return {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}


def test_resolve_endpoint():
    assert resolve_endpoint("us-west-004", None) == ("https://s3.us-west-004.backblazeb2.com", "us-west-004")
    assert resolve_endpoint(None, "https://s3.eu-central-003.backblazeb2.com/") == (
        "https://s3.eu-central-003.backblazeb2.com",
        "eu-central-003",
    )
    assert resolve_endpoint(None, "http://127.0.0.1:9000") == ("http://127.0.0.1:9000", "us-east-1")
    with pytest.raises(B2Error, match="set region"):
        resolve_endpoint(None, None)


def test_resolve_endpoint_takes_the_host_the_b2_web_ui_shows():
    """The bucket page shows ``s3.<region>.backblazeb2.com`` without a scheme; B2 speaks https only."""
    assert resolve_endpoint(None, "s3.us-west-004.backblazeb2.com") == (
        "https://s3.us-west-004.backblazeb2.com",
        "us-west-004",
    )
    assert resolve_endpoint("eu-central-003", "s3.eu-central-003.backblazeb2.com/")[0] == (
        "https://s3.eu-central-003.backblazeb2.com"
    )


@pytest.mark.parametrize("endpoint", ["https://bad host", "https://", "ftp://s3.example.com", "http://:9000"])
def test_resolve_endpoint_refuses_what_is_no_http_url(endpoint):
    with pytest.raises(B2Error, match="endpoint_url"):
        resolve_endpoint(None, endpoint)


def test_argument_spec_secrets_and_fallbacks():
    spec = b2_argument_spec()
    assert spec["application_key"]["no_log"] is True
    assert spec["key_id"]["no_log"] is False
    assert spec["key_id"]["fallback"][1] == ["B2_APPLICATION_KEY_ID", "AWS_ACCESS_KEY_ID"]
    assert spec["application_key"]["fallback"][1] == ["B2_APPLICATION_KEY", "AWS_SECRET_ACCESS_KEY"]


@pytest.mark.parametrize("name", ["max_attempts", "connect_timeout", "read_timeout"])
def test_settings_refuse_zero_and_negative_counts(name):
    """``value or default`` turned max_attempts: 0 into 6; null (unset) still takes the default."""
    base = {"endpoint_url": "http://127.0.0.1:9"}
    default = getattr(ClientSettings.from_params(base), name)
    assert getattr(ClientSettings.from_params({**base, name: None}), name) == default
    assert getattr(ClientSettings.from_params({**base, name: 1}), name) == 1
    for bad in (0, -1):
        with pytest.raises(B2Error, match=f"{name} must be 1 or more .*got {bad}"):
            ClientSettings.from_params({**base, name: bad})


def test_no_credentials_is_a_clear_error():
    with pytest.raises(B2Error, match="no B2 credentials"):
        create_client(ClientSettings("http://x", "r", None, None))


def test_put_object_sends_md5_and_no_checksum_headers(client_and_sent):
    client, sent = client_and_sent
    body = b"hello" * 100
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    client.put_object(Bucket="b", Key="k", Body=body, ContentMD5=md5, Metadata={"sha256": "x"})
    headers = headers_of(sent[0])
    assert headers["content-md5"] == md5
    assert not [h for h in headers if h.startswith(("x-amz-checksum", "x-amz-sdk-checksum"))]
    assert headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert sent[0].url == "http://127.0.0.1:9/b/k"  # path-style


def test_delete_objects_gets_md5_instead_of_crc32(client_and_sent):
    client, sent = client_and_sent
    client.delete_objects(Bucket="b", Delete={"Objects": [{"Key": "a&b", "VersionId": "v1"}], "Quiet": False})
    request = sent[0]
    headers = headers_of(request)
    assert not [h for h in headers if h.startswith(("x-amz-checksum", "x-amz-sdk-checksum"))]
    body = request.body if isinstance(request.body, bytes) else request.body.encode()
    assert headers["content-md5"] == base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()


def test_forbidden_headers_are_stripped_even_when_asked_for(client_and_sent):
    client, sent = client_and_sent
    client.put_object(
        Bucket="b", Key="k", Body=b"x", StorageClass="STANDARD_IA", ACL="public-read", ChecksumAlgorithm="SHA256"
    )
    headers = headers_of(sent[0])
    assert not [h for h in headers if h.startswith(("x-amz-checksum", "x-amz-sdk", "x-amz-storage", "x-amz-acl"))]


def test_recorder_sees_every_request():
    recorder = RequestRecorder()
    client = create_client(SETTINGS, recorder)
    sent: list[Any] = []
    client.meta.events.register_last("before-send.s3", fake_server(sent))
    client.put_object(Bucket="b", Key="k", Body=b"x")
    client.head_object(Bucket="b", Key="k")
    assert [r.operation for r in recorder.requests] == ["PutObject", "HeadObject"]
    assert recorder.count("PutObject") == 1 and recorder.count() == 2
    recorder.clear()
    assert recorder.count() == 0


@pytest.mark.parametrize(
    ("method", "url", "operation"),
    [
        ("PUT", "http://h/b/k?partNumber=1&uploadId=u", "UploadPart"),
        ("PUT", "http://h/b/k", "PutObject"),
        ("PUT", "http://h/b", "CreateBucket"),
        ("PUT", "http://h/b?versioning", "PutBucketVersioning"),
        ("POST", "http://h/b/k?uploads", "CreateMultipartUpload"),
        ("POST", "http://h/b/k?uploadId=u", "CompleteMultipartUpload"),
        ("POST", "http://h/b?delete", "DeleteObjects"),
        ("DELETE", "http://h/b/k?uploadId=u", "AbortMultipartUpload"),
        ("DELETE", "http://h/b/k?versionId=v", "DeleteObject"),
        ("HEAD", "http://h/b/k", "HeadObject"),
        ("HEAD", "http://h/b", "HeadBucket"),
        ("GET", "http://h/b?list-type=2&prefix=p/", "ListObjects"),
        ("GET", "http://h/b?versions&prefix=p/", "ListObjectVersions"),
        ("GET", "http://h/b?uploads", "ListMultipartUploads"),
        ("GET", "http://h/b/k", "GetObject"),
    ],
)
def test_classify_request(method, url, operation):
    assert classify_request(method, url) == operation


def test_file_range_reads_seeks_and_hashes(tmp_path: Path):
    path = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024 + 17)
    path.write_bytes(data)
    with FileRange(str(path), 1000, 2 * 1024 * 1024) as part:
        window = data[1000 : 1000 + 2 * 1024 * 1024]
        assert len(part) == len(window)
        expected = base64.b64encode(hashlib.md5(window, usedforsecurity=False).digest()).decode()
        assert part.md5_base64() == expected
        assert part.tell() == 0
        assert part.read(10) == window[:10]
        part.seek(5, os.SEEK_CUR)
        assert part.read(5) == window[15:20]
        part.seek(-3, os.SEEK_END)
        assert part.read() == window[-3:]
        assert part.read() == b""
        part.seek(0)
        assert part.read() == window
    assert file_sha256(str(path)) == hashlib.sha256(data).hexdigest()


def client_error(code: str, status: int, operation: str = "Op") -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "msg"}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
    )


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (client_error("InvalidAccessKeyId", 403), ["key ID or application key"]),
        (client_error("SignatureDoesNotMatch", 403), ["key ID or application key"]),
        (client_error("NoSuchBucket", 404), ["bucket does not exist"]),
        (client_error("NoSuchBucket", 404, "GetObject"), ["bucket does not exist"]),
        (client_error("404", 404, "HeadBucket"), ["bucket does not exist"]),
        (client_error("404", 404, "HeadObject"), ["object does not exist"]),
        (client_error("NoSuchKey", 404, "GetObject"), ["object does not exist"]),
        (client_error("AccessDenied", 403), ["lacks a capability"]),
        (client_error("SlowDown", 503), ["max_attempts"]),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), ["cannot reach", "endpoint_url"]),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), ["read_timeout"]),
        (botocore.exceptions.IncompleteReadError(actual_bytes=1, expected_bytes=2), ["connection broke", "run again"]),
        (botocore.exceptions.ResponseStreamingError(error="reset"), ["connection broke", "max_attempts"]),
        (OSError(28, "No space left on device"), ["No space left"]),
    ],
)
def test_describe_error_says_what_and_what_to_do(exc, words):
    text = describe_error(exc, SETTINGS, "bkt", "uploading x")
    assert text.startswith("uploading x failed")
    for word in words:
        assert word in text


def test_is_not_found():
    assert is_not_found(client_error("NoSuchKey", 404))
    assert is_not_found(client_error("404", 404))
    assert not is_not_found(client_error("AccessDenied", 403))
    assert not is_not_found(client_error("NoSuchBucket", 404))
    assert not is_not_found(ValueError("x"))


def test_client_config_is_b2_safe():
    client = create_client(SETTINGS)
    config = client.meta.config
    assert config.signature_version == "s3v4"
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert config.s3["addressing_style"] == "path"


def test_client_config_leaves_out_options_an_older_botocore_does_not_know(monkeypatch):
    """Ubuntu 22.04's botocore 1.23 knows neither tcp_keepalive nor the checksum options."""
    import botocore.config

    old = {k: v for k, v in botocore.config.Config.OPTION_DEFAULTS.items() if k not in OPTIONAL_CLIENT_OPTIONS}
    monkeypatch.setattr(botocore.config.Config, "OPTION_DEFAULTS", old)
    config = client_config(SETTINGS)  # the real Config refuses any keyword not in OPTION_DEFAULTS
    assert config.signature_version == "s3v4" and config.s3 == {"addressing_style": "path"}
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}


def test_lock_retain_until_is_sent_as_a_date(client_and_sent):
    client, sent = client_and_sent
    until = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    client.put_object(Bucket="b", Key="k", Body=b"x", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until)
    headers = headers_of(sent[0])
    assert headers["x-amz-object-lock-mode"] == "GOVERNANCE"
    assert headers["x-amz-object-lock-retain-until-date"].startswith("2026-01-01T00:00:00")
