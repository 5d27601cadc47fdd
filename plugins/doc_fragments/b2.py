# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Endpoint and credential options shared by the B2 modules of mutuapix.ops."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  bucket:
    description:
      - Name of the B2 bucket.
    type: str
    required: true
  region:
    description:
      - B2 region of the bucket, for example C(us-west-004) or C(eu-central-003), as shown
        by the bucket's S3 endpoint C(s3.<region>.backblazeb2.com).
      - Required unless O(endpoint_url) is set.
    type: str
  endpoint_url:
    description:
      - S3-compatible endpoint URL. Defaults to C(https://s3.<region>.backblazeb2.com).
      - Set it to use another S3-compatible server, for example a local test endpoint.
      - A host without a scheme (C(s3.us-west-004.backblazeb2.com), as the bucket's page shows it) is
        reached over C(https://).
    type: str
  key_id:
    description:
      - B2 application key ID (the S3 access key ID).
      - Falls back to the environment variables E(B2_APPLICATION_KEY_ID), then E(AWS_ACCESS_KEY_ID).
    type: str
    aliases: [application_key_id]
  application_key:
    description:
      - B2 application key (the S3 secret access key). Never logged or returned.
      - Falls back to the environment variables E(B2_APPLICATION_KEY), then E(AWS_SECRET_ACCESS_KEY).
    type: str
  validate_certs:
    description:
      - Verify the endpoint's TLS certificate.
    type: bool
    default: true
  ca_bundle:
    description:
      - CA bundle to verify the endpoint's certificate with, instead of the system one.
    type: path
  max_attempts:
    description:
      - Attempts per request, including the first. Failed requests (HTTP 500 and 503,
        C(SlowDown), throttling, connection errors) are retried with exponential backoff and
        jitter; upload bodies are re-sent from the start of the part. A download whose
        connection breaks half way is resumed from the first byte not yet received, as often.
      - At least V(1), which retries nothing; V(0) or less is refused (it cannot mean anything).
    type: int
    default: 6
  connect_timeout:
    description:
      - Seconds to wait for a connection to the endpoint. At least V(1); V(0) or less is refused.
    type: int
    default: 10
  read_timeout:
    description:
      - Seconds to wait for the endpoint to answer a request. At least V(1); V(0) or less is refused.
    type: int
    default: 120
requirements:
  - boto3 >= 1.20.34 and botocore >= 1.23.34 on the host that runs the module (the C(python3-boto3) of Debian 12 or
    Ubuntu 22.04 is enough).
notes:
  - Requests are signed with signature version 4 and never carry C(x-amz-checksum-*),
    C(x-amz-sdk-checksum-algorithm), storage class or ACL headers, which B2 rejects;
    uploads and multi-object deletes carry C(Content-MD5) instead.
  - Set the options once for a play with C(module_defaults) and the action group C(group/mutuapix.ops.b2).
"""
