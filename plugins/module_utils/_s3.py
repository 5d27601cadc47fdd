# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backblaze B2 through its S3-compatible API: one client, one error path (private API).

B2 rejects requests that recent boto3 sends by default (``x-amz-checksum-*`` and
``x-amz-sdk-checksum-algorithm``), and needs ``Content-MD5`` on uploads to Object Lock
buckets. :func:`create_client` builds a client that never sends the former and always sends
the latter on PutObject, UploadPart and DeleteObjects. Every request passes through
botocore's event system, so a :class:`RequestRecorder` can watch the wire in tests.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

try:
    import boto3
    import botocore.config
    import botocore.exceptions

    HAS_BOTO3 = True
    BOTO3_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by ansible-test's import sanity test
    HAS_BOTO3 = False
    BOTO3_IMPORT_ERROR = traceback.format_exc()

# Headers B2 answers with 400 (or that make no sense on B2): removed before signing.
FORBIDDEN_HEADER_PREFIXES = ("x-amz-checksum-", "x-amz-sdk-checksum-algorithm", "x-amz-storage-class", "x-amz-acl")
READ_CHUNK = 1024 * 1024
OBJECT_OPERATIONS = ("HeadObject", "GetObject")


def b2_argument_spec() -> dict[str, Any]:
    """Endpoint and credential options every B2 module of the collection accepts."""
    return {
        "bucket": {"type": "str", "required": True},
        "region": {"type": "str"},
        "endpoint_url": {"type": "str"},
        "key_id": {
            "type": "str",
            "no_log": False,
            "aliases": ["application_key_id"],
            "fallback": (env_fallback, ["B2_APPLICATION_KEY_ID", "AWS_ACCESS_KEY_ID"]),
        },
        "application_key": {
            "type": "str",
            "no_log": True,
            "fallback": (env_fallback, ["B2_APPLICATION_KEY", "AWS_SECRET_ACCESS_KEY"]),
        },
        "validate_certs": {"type": "bool", "default": True},
        "ca_bundle": {"type": "path"},
        "max_attempts": {"type": "int", "default": 6},
        "connect_timeout": {"type": "int", "default": 10},
        "read_timeout": {"type": "int", "default": 120},
    }


class B2Error(Exception):
    """An error with a message a person can act on."""


def _checked_endpoint(endpoint_url: str) -> str:
    """``endpoint_url`` without a trailing ``/``; ``https://`` added to a bare host (as B2's web UI shows it).

    B2Error for anything botocore would refuse with a traceback (no host, a space, another scheme).
    """
    endpoint = endpoint_url.strip()
    if "://" not in endpoint:
        endpoint = "https://" + endpoint  # B2 speaks https only
    endpoint = endpoint.rstrip("/")
    parts = urlsplit(endpoint)
    try:
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a port that is no number
        valid = False
    if not valid or any(c.isspace() for c in endpoint):
        raise B2Error(
            f"endpoint_url {endpoint_url!r} is not an http(s) URL of a host: use for example "
            "https://s3.us-west-004.backblazeb2.com (shown on the bucket's page), or set region instead"
        )
    return endpoint


def resolve_endpoint(region: str | None, endpoint_url: str | None) -> tuple[str, str]:
    """(endpoint_url, region): B2's endpoint is ``https://s3.<region>.backblazeb2.com``."""
    if endpoint_url:
        endpoint = _checked_endpoint(endpoint_url)
        if not region:
            host = urlsplit(endpoint).hostname or ""
            parts = host.split(".")
            region = parts[1] if len(parts) > 3 and parts[0] == "s3" and "backblazeb2" in host else "us-east-1"
        return endpoint, region
    if not region:
        raise B2Error("set region (e.g. us-west-004, shown on the bucket's page in the B2 web UI) or endpoint_url")
    return f"https://s3.{region}.backblazeb2.com", region


def _md5(data: bytes = b"") -> Any:
    """MD5 as a checksum the S3 API asks for (Content-MD5), not for security: allowed under FIPS."""
    try:
        return hashlib.md5(data, usedforsecurity=False)  # novm (3.9+; 3.8 takes the TypeError below)
    except TypeError:  # Python 3.8 managed hosts: no usedforsecurity argument
        return hashlib.md5(data)  # noqa: S324 - a checksum the protocol requires


def content_md5(data: bytes) -> str:
    return base64.b64encode(_md5(data).digest()).decode("ascii")


def _strip_forbidden_headers(request: Any, **_: Any) -> None:
    """before-sign hook: never let a checksum, storage class or ACL header reach B2."""
    for name in list(request.headers.keys()):
        if name.lower().startswith(FORBIDDEN_HEADER_PREFIXES):
            del request.headers[name]


def _md5_instead_of_crc(params: dict[str, Any], **_: Any) -> None:
    """before-call hook for DeleteObjects: Content-MD5 where botocore would compute CRC32.

    DeleteObjects requires a checksum; botocore >= 1.36 picks CRC32 even with
    ``when_required``, which B2 rejects. The body is the final XML at this point.
    """
    body = params.get("body") or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    params["headers"]["Content-MD5"] = content_md5(body)
    checksum = params.get("context", {}).get("checksum", {})
    checksum.pop("request_algorithm", None)
    checksum.pop("request_algorithm_header", None)


@dataclass
class ClientSettings:
    endpoint_url: str
    region: str
    key_id: str | None
    application_key: str | None
    validate_certs: bool = True
    ca_bundle: str | None = None
    max_attempts: int = 6
    connect_timeout: int = 10
    read_timeout: int = 120
    pool_size: int = 10

    @classmethod
    def from_params(cls, params: dict[str, Any], pool_size: int = 10) -> ClientSettings:
        endpoint, region = resolve_endpoint(params.get("region"), params.get("endpoint_url"))
        return cls(
            endpoint_url=endpoint,
            region=region,
            key_id=params.get("key_id"),
            application_key=params.get("application_key"),
            validate_certs=params.get("validate_certs", True),
            ca_bundle=params.get("ca_bundle"),
            max_attempts=_at_least_one(params, "max_attempts", 6, "attempts per request with the first; 1: no retry"),
            connect_timeout=_at_least_one(params, "connect_timeout", 10, "seconds"),
            read_timeout=_at_least_one(params, "read_timeout", 120, "seconds"),
            pool_size=pool_size,
        )


def _at_least_one(params: dict[str, Any], name: str, default: int, unit: str) -> int:
    """``params[name]`` (``default`` when unset or null); B2Error for 0 or less.

    Never ``value or default``: that turned ``max_attempts: 0`` silently into 6.
    """
    value = params.get(name)
    if value is None:
        return default
    if int(value) < 1:
        raise B2Error(f"{name} must be 1 or more ({unit}), got {value}")
    return int(value)


# Config options newer than the oldest botocore the modules run with; left out where unknown.
OPTIONAL_CLIENT_OPTIONS = ("tcp_keepalive", "request_checksum_calculation", "response_checksum_validation")


def client_config(settings: ClientSettings) -> Any:
    """botocore Config: SigV4, path-style, standard retries with backoff, no flexible checksums."""
    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "region_name": settings.region,
        "s3": {"addressing_style": "path"},
        # 'standard' retries 500/502/503/504, SlowDown, throttling and connection errors
        # with exponential backoff and jitter, re-sending seekable bodies from the start.
        "retries": {"total_max_attempts": settings.max_attempts, "mode": "standard"},
        "max_pool_connections": max(10, settings.pool_size),
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        # Optional (the client works without them): botocore refuses an option it does not
        # know, and the backup role installs the distribution's botocore, e.g. 1.23 on Ubuntu
        # 22.04 (no tcp_keepalive, added in 1.27) or 1.29 on Debian 12.
        "tcp_keepalive": True,
        # botocore >= 1.36 adds CRC checksums to every upload unless told otherwise (B2 refuses
        # them); older releases never send them.
        "request_checksum_calculation": "when_required",
        "response_checksum_validation": "when_required",
    }
    known = getattr(botocore.config.Config, "OPTION_DEFAULTS", {})
    for name in OPTIONAL_CLIENT_OPTIONS:
        if name not in known:
            del options[name]
    return botocore.config.Config(**options)


def create_client(settings: ClientSettings, recorder: RequestRecorder | None = None) -> Any:
    """A boto3 S3 client that speaks the S3 dialect B2 accepts."""
    if not HAS_BOTO3:
        raise B2Error(missing_required_lib("boto3"))
    if not settings.key_id or not settings.application_key:
        raise B2Error(
            "no B2 credentials: set key_id and application_key, or B2_APPLICATION_KEY_ID and "
            "B2_APPLICATION_KEY (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY) in the environment"
        )
    session = boto3.session.Session(
        aws_access_key_id=settings.key_id,
        aws_secret_access_key=settings.application_key,
        region_name=settings.region,
    )
    verify: bool | str = settings.ca_bundle or settings.validate_certs
    try:
        client = session.client("s3", endpoint_url=settings.endpoint_url, config=client_config(settings), verify=verify)
    except ValueError as exc:  # botocore's "Invalid endpoint", a region it cannot use
        raise B2Error(f"cannot use endpoint_url {settings.endpoint_url} and region {settings.region}: {exc}") from exc
    events = client.meta.events
    events.register_last("before-call.s3.DeleteObjects", _md5_instead_of_crc)
    events.register_last("before-sign.s3", _strip_forbidden_headers)
    if recorder is not None:
        recorder.attach(client)
    return client


# ---------------------------------------------------------------------------------------
# The request recorder: what actually went over the wire, for tests and debugging.


def classify_request(method: str, url: str) -> str:
    """The S3 operation a request performs, from its method and URL (path-style)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    path = parts.path.lstrip("/")
    has_key = len(path.split("/", 1)) == 2 and path.split("/", 1)[1] != ""
    method = method.upper()
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPart"
        if "object-lock" in query:
            return "PutObjectLockConfiguration"
        if "versioning" in query:
            return "PutBucketVersioning"
        return "PutObject" if has_key else "CreateBucket"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if "uploadId" in query:
            return "CompleteMultipartUpload"
        if "delete" in query:
            return "DeleteObjects"
        return "Post"
    if method == "DELETE":
        if "uploadId" in query:
            return "AbortMultipartUpload"
        return "DeleteObject" if has_key else "DeleteBucket"
    if method == "HEAD":
        return "HeadObject" if has_key else "HeadBucket"
    if method == "GET":
        if "versions" in query:
            return "ListObjectVersions"
        if "uploads" in query:
            return "ListMultipartUploads"
        if "uploadId" in query:
            return "ListParts"
        if "list-type" in query or not has_key:
            return "ListObjects"
        return "GetObject"
    return method


@dataclass
class RecordedRequest:
    operation: str
    method: str
    url: str
    headers: dict[str, str]


@dataclass
class RequestRecorder:
    """Records every request a client sends (after signing), thread-safe."""

    requests: list[RecordedRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def attach(self, client: Any) -> None:
        client.meta.events.register_last("before-send.s3", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        headers = {str(k).lower(): (v.decode() if isinstance(v, bytes) else str(v)) for k, v in request.headers.items()}
        entry = RecordedRequest(classify_request(request.method, request.url), request.method, request.url, headers)
        with self._lock:
            self.requests.append(entry)

    def count(self, operation: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if operation is None or r.operation == operation)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()


# ---------------------------------------------------------------------------------------
# Errors


def describe_error(exc: BaseException, settings: ClientSettings, bucket: str, action: str) -> str:
    """One sentence saying what failed, where, and what to do."""
    where = f"bucket {bucket!r} at {settings.endpoint_url}"
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = error.get("Message") or code
        # A HEAD answer has no body, so a missing object and a missing bucket both come as a bare 404.
        on_object = getattr(exc, "operation_name", "") in OBJECT_OPERATIONS
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken") or status == 401:
            hint = "the key ID or application key is wrong or revoked: check key_id/application_key"
        elif code == "NoSuchBucket" or (status == 404 and code in ("404", "NotFound") and not on_object):
            hint = "the bucket does not exist (or the key is restricted to another bucket): check bucket and region"
        elif status == 404:
            hint = "the object does not exist (deleted, or never uploaded): check prefix and name"
        elif code == "AccessDenied" or status == 403:
            hint = (
                "the application key lacks a capability for this (needs listBuckets, listFiles, readFiles, "
                "writeFiles, deleteFiles; bypassGovernance only to delete governance-locked files) or is "
                "restricted to another bucket or prefix"
            )
        elif code in ("SlowDown", "ServiceUnavailable", "InternalError") or (status or 0) >= 500:
            hint = "the service kept failing after retries: try again later or raise max_attempts"
        else:
            hint = "see the service's message"
        return f"{action} failed on {where}: {code or status} {text}; {hint}"
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.NoCredentialsError):
        return f"{action} failed on {where}: no credentials; set key_id and application_key"
    if HAS_BOTO3 and isinstance(
        exc,
        (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectTimeoutError,
            botocore.exceptions.ConnectionClosedError,
        ),
    ):
        return (
            f"{action} failed: cannot reach {settings.endpoint_url} ({exc}); check endpoint_url/region, DNS, "
            "firewall and proxy settings"
        )
    if HAS_BOTO3 and isinstance(
        exc, (botocore.exceptions.IncompleteReadError, botocore.exceptions.ResponseStreamingError)
    ):
        return (
            f"{action} failed on {where}: the connection broke during the transfer ({exc}); check the network "
            "and any proxy in between, then run again (raise max_attempts to retry more)"
        )
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return f"{action} failed on {where}: the endpoint stopped answering ({exc}); raise read_timeout or retry"
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.SSLError):
        return f"{action} failed: TLS error talking to {settings.endpoint_url} ({exc}); check ca_bundle"
    if isinstance(exc, OSError):
        return f"{action} failed: {exc}"
    return f"{action} failed on {where}: {type(exc).__name__}: {exc}"


def is_not_found(exc: BaseException) -> bool:
    if not (HAS_BOTO3 and isinstance(exc, botocore.exceptions.ClientError)):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":
        return False  # the bucket, not the object, is missing: a configuration error
    return code in ("NoSuchKey", "404", "NotFound", "NoSuchVersion") or status == 404


def is_access_denied(exc: BaseException) -> bool:
    """A refusal for want of a capability (B2: 403 AccessDenied, e.g. a key without readFiles)."""
    if not (HAS_BOTO3 and isinstance(exc, botocore.exceptions.ClientError)):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code == "AccessDenied" or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 403


def error_code(exc: BaseException) -> str:
    if HAS_BOTO3 and isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


CLIENT_ERRORS: tuple[type[BaseException], ...] = (
    (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) if HAS_BOTO3 else ()
)

# What a response body raises when its connection breaks half way; botocore retries
# requests, not the reading of a body.
TRANSFER_ERRORS: tuple[type[BaseException], ...] = (botocore.exceptions.BotoCoreError,) if HAS_BOTO3 else ()


# ---------------------------------------------------------------------------------------
# Streaming file ranges: upload parts straight from the file, never whole files in memory.


class FileRange:
    """A seekable, read-only window ``[offset, offset+length)`` of a file, for request bodies.

    botocore sends it in chunks and seeks back to the start when it retries a request.
    """

    def __init__(self, path: str, offset: int, length: int) -> None:
        self._handle = open(path, "rb")
        self._offset = offset
        self._length = length
        self._pos = 0
        self._handle.seek(offset)

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        remaining = self._length - self._pos
        if remaining <= 0:
            return b""
        if size is None or size < 0 or size > remaining:
            size = remaining
        data = self._handle.read(size)
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_CUR:
            pos += self._pos
        elif whence == os.SEEK_END:
            pos += self._length
        self._pos = min(max(0, pos), self._length)
        self._handle.seek(self._offset + self._pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def md5_base64(self) -> str:
        """Content-MD5 of the whole range (reads it once; the file is in the page cache after)."""
        digest = _md5()
        self.seek(0)
        while True:
            chunk = self.read(READ_CHUNK * 4)
            if not chunk:
                break
            digest.update(chunk)
        self.seek(0)
        return base64.b64encode(digest.digest()).decode("ascii")

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> FileRange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_sha256(path: str, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(READ_CHUNK * 4)
            if not chunk:
                break
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# The module wrapper


class B2Module(AnsibleModule):
    """AnsibleModule with the shared B2 options, client creation and one error path."""

    def __init__(self, argument_spec: dict[str, Any], **kwargs: Any) -> None:
        spec = b2_argument_spec()
        spec.update(argument_spec)
        super().__init__(argument_spec=spec, **kwargs)
        if not HAS_BOTO3:
            self.fail_json(msg=missing_required_lib("boto3 and botocore"), exception=BOTO3_IMPORT_ERROR)
        if self.params.get("application_key"):
            self.no_log_values.add(self.params["application_key"])
        try:
            self.b2_settings = ClientSettings.from_params(self.params, pool_size=self._pool_size())
        except B2Error as exc:
            self.fail_json(msg=str(exc))

    def _pool_size(self) -> int:
        return int(self.params.get("concurrency") or 4) * 2 + 2

    def client(self, recorder: RequestRecorder | None = None) -> Any:
        try:
            return create_client(self.b2_settings, recorder)
        except B2Error as exc:
            self.fail_json(msg=str(exc))
            raise  # unreachable: fail_json exits

    def fail_b2(self, exc: BaseException, action: str, **result: Any) -> None:
        self.fail_json(msg=describe_error(exc, self.b2_settings, self.params["bucket"], action), **result)
