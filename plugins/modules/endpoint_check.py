#!/usr/bin/python
# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: endpoint_check
short_description: Probe an HTTP(S) endpoint and its TLS certificate, alerting on state changes only
version_added: 0.1.0
description:
  - Sends one request to O(url) and checks the status code and, for HTTPS, how many days the
    server's certificate has left.
  - The verdict is compared with the previous run's, kept in O(state_file), so a webhook
    notification goes out only on a transition - OK to failing (one alert), failing to OK (one
    recovery) - plus a reminder every O(realert_after_s) while a problem lasts.
  - A missing or corrupt state file is treated as unknown, with a warning; it never produces a
    recovery notification.
  - A check this run could not evaluate is not a recovery - when the server does not answer there is
    no status code, and when it refuses the connection no certificate to read, so a C(status) or
    C(tls_expiry) problem from before is kept as it was (see RV(not_evaluated)) until a run can
    evaluate it again.
  - Redirects are not followed; list a redirect status in O(expected_status) if it is the healthy answer.
  - The task reports C(changed) when it alerted or recovered.
options:
  url:
    description:
      - Absolute C(http://) or C(https://) URL to request.
    type: str
    required: true
  name:
    description:
      - Label of the endpoint in notifications and in the default O(state_file) name. Defaults to O(url)
        without its query string.
    type: str
  method:
    description:
      - HTTP method.
    type: str
    choices: [GET, HEAD]
    default: GET
  expected_status:
    description:
      - Status codes that mean healthy.
    type: list
    elements: int
    default: [200]
  timeout:
    description:
      - Seconds to wait for the connection and for each read.
    type: int
    default: 10
  tls_min_days:
    description:
      - Fewer days than this before the certificate expires is a problem. Set 0 to only flag
        expired certificates.
    type: int
    default: 14
  validate_certs:
    description:
      - Verify the server's certificate chain and host name. A failed verification is a problem
        (C(tls_invalid)); the certificate's expiry is still reported.
    type: bool
    default: true
  ca_path:
    description:
      - PEM bundle of CA certificates to verify the server with (for internal CAs).
    type: path
  headers:
    description:
      - Extra request headers, for example C(Host) when probing by IP address, or C(Authorization).
      - For C(https://), the name of a C(Host) header (without its port) is also the TLS server name - sent as
        SNI, so the server presents that site's certificate, and verified against it. Without one, the URL's
        host is used.
      - Treated as secret (not logged), since they often carry a token.
      - Spaces and line breaks around a value are dropped (HTTP ignores them; a vaulted block scalar ends in a
        line break). A value with a line break inside is refused, naming the header only.
    type: dict
    default: {}
  state_file:
    description:
      - JSON file holding the previous verdict, written atomically with mode 0600.
      - Defaults to C(<state_dir>/endpoint_check-<key>-<hash>.json), where C(<key>) is O(name) or the
        URL's scheme, host, port and path, and C(<hash>) a short hash of the whole O(url) and the C(Host) header
        (and of O(method) and O(expected_status) when they are not the defaults), so two probes never share a file
        (C(http://) and C(https://), URLs differing in their query string, or one URL probed for different statuses).
      - Earlier builds named it C(endpoint_check-<name>.json). After an upgrade the first run starts from an unknown
        state - a problem that persists is alerted once more, and nothing is reported as recovered.
      - Runs for the same file take turns - each holds an flock on C(<state_file>.lock) from reading
        the verdict to saving it, so overlapping runs announce a change once. A run waits up to
        O(notify_timeout) + 30 seconds for another, then fails without sending or writing anything.
    type: path
  fail_on_unhealthy:
    description:
      - Fail the task when the endpoint is unhealthy (after the state is saved and notifications are sent).
    type: bool
    default: false
extends_documentation_fragment:
  - mutuapix.ops.alerts
attributes:
  check_mode:
    support: full
    description: The request is made and the verdict returned, but the state file is not written and nothing is sent.
  diff_mode:
    support: none
    description: The only file written is the probe's own state file; there is no configuration to show a diff of.
author:
  - MutuaPix ops team (@mutuapix)
"""

EXAMPLES = r"""
- name: Check the API and its certificate, alert Slack on changes
  mutuapix.ops.endpoint_check:
    url: https://api.example.com/up
    tls_min_days: 21
    notify_url: "{{ vault_slack_webhook }}"

- name: A health route that redirects is healthy when it answers 302
  mutuapix.ops.endpoint_check:
    url: http://www.example.com/
    expected_status: [301, 302]
    state_file: /var/lib/mutuapix-ops/www.json

- name: Fail the job (for CI or AWX) when the app is down
  mutuapix.ops.endpoint_check:
    url: https://app.example.com/health
    fail_on_unhealthy: true
"""

RETURN = r"""
healthy:
  description: Whether the endpoint answered an expected status with a certificate valid for O(tls_min_days) more days.
  returned: always
  type: bool
  sample: true
status:
  description: HTTP status code, null when there was no answer.
  returned: always
  type: int
  sample: 200
latency_ms:
  description: Milliseconds from sending the request to the end of the response (body read up to 1 MiB).
  returned: always
  type: int
  sample: 42
tls_days_left:
  description: Whole days until the server certificate expires (negative once expired); null for plain HTTP.
  returned: always
  type: int
  sample: 60
tls_not_after:
  description: Expiry of the server certificate, UTC ISO 8601; null for plain HTTP.
  returned: always
  type: str
  sample: "2026-12-31T23:59:59Z"
error:
  description: Why the request failed (connection refused, timeout, TLS verification), null when it got an answer.
  returned: always
  type: str
  sample: "GET https://127.0.0.1:9/ failed: connection refused (nothing listens on that port)"
problems:
  description: Every problem seen now, by check (C(unreachable), C(status), C(tls_expiry), C(tls_invalid)).
  returned: always
  type: dict
  sample: {"status": "GET https://app.example.com/health answered HTTP 500, expected 200"}
alerts:
  description: Problems notified by this run - new ones, and reminders (C(repeat=true)) after O(realert_after_s).
  returned: always
  type: list
  elements: dict
  sample: [{"check": "status", "message": "... answered HTTP 500, expected 200", "since": "2026-11-28T15:00:00Z",
            "repeat": false}]
recoveries:
  description: Problems of the previous run that are gone now.
  returned: always
  type: list
  elements: dict
  sample: [{"check": "status", "message": "recovered: ...", "failing_since": "2026-11-28T15:00:00Z", "duration_s": 300}]
not_evaluated:
  description:
    - Problems of the previous run that this run could not evaluate, for example C(tls_expiry) while the server is
      unreachable. They stay failing in the state file, with no recovery and no reminder.
  returned: always
  type: list
  elements: str
  sample: ["tls_expiry"]
previous_state_known:
  description: False when the state file was missing or corrupt (then no recovery can be reported).
  returned: always
  type: bool
  sample: true
state_file:
  description: The state file used.
  returned: always
  type: str
  sample: /var/lib/mutuapix-ops/endpoint_check-app-9a4e0c5b1d2f.json
notified:
  description: Whether a webhook notification was delivered by this run.
  returned: always
  type: bool
  sample: false
notify_error:
  description:
    - Why the webhook failed; the notification is kept in the state file and retried by the next run.
    - A notification the webhook rejects for good (an HTTP 4xx other than 401, 403, 404, 408, 410 and 429, such as
      400 for a text too long) is dropped instead, and said here, so it cannot hold back the later ones.
  returned: always
  type: str
  sample: "webhook POST failed: HTTP 500 Internal Server Error"
"""

import urllib.parse

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mutuapix.ops.plugins.module_utils._alerts import (
    ALERT_ARGUMENT_SPEC,
    STATE_DIR_ARGUMENT_SPEC,
    StateError,
    alert_options,
    default_state_file,
    run_transitions,
)
from ansible_collections.mutuapix.ops.plugins.module_utils._probes import (
    ProbeError,
    check_endpoint,
    clean_headers,
    endpoint_identity,
    parse_url,
)


def default_state_file_for(
    name: str | None, parts: urllib.parse.SplitResult, identity: str, directory: str | None = None
) -> str:
    """The default state file: the label (or scheme, host, port and path) plus a hash of what is probed."""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    key = name or f"{parts.scheme}_{parts.hostname}_{port}{parts.path}"
    return default_state_file("endpoint_check", key, identity, directory)


def probe_identity(url: str, headers: dict[str, str], method: str, expected_status: list[int]) -> str:
    """What the default state file's hash covers: the endpoint, and what a probe of it counts as healthy.

    Two probes of one URL and ``Host`` that differ in O(method) or O(expected_status) reach different
    verdicts, and shared one file (each run read the other's verdict as its own, and alerted changes
    that were none). Those two are added only when not the defaults, so the files of probes that use
    the defaults keep their names across the upgrade.
    """
    identity = endpoint_identity(url, headers)
    if method != "GET":
        identity += f" method:{method}"
    statuses = sorted(set(expected_status))
    if statuses != [200]:
        identity += " status:" + ",".join(str(code) for code in statuses)
    return identity


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "name": {"type": "str"},
            "method": {"type": "str", "choices": ["GET", "HEAD"], "default": "GET"},
            "expected_status": {"type": "list", "elements": "int", "default": [200]},
            "timeout": {"type": "int", "default": 10},
            "tls_min_days": {"type": "int", "default": 14},
            "validate_certs": {"type": "bool", "default": True},
            "ca_path": {"type": "path"},
            "headers": {"type": "dict", "default": {}, "no_log": True},
            "state_file": {"type": "path"},
            **STATE_DIR_ARGUMENT_SPEC,
            **ALERT_ARGUMENT_SPEC,
            "fail_on_unhealthy": {"type": "bool", "default": False},
        },
        mutually_exclusive=[("state_file", "state_dir")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        parts = parse_url(p["url"])
        headers = clean_headers({str(k): str(v) for k, v in p["headers"].items()})
    except ProbeError as exc:
        module.fail_json(msg=str(exc))
    name = p["name"] or f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
    state_file = p["state_file"] or default_state_file_for(
        p["name"], parts, probe_identity(p["url"], headers, p["method"], p["expected_status"]), p["state_dir"]
    )
    try:
        probe = check_endpoint(
            p["url"],
            method=p["method"],
            expected_status=p["expected_status"],
            timeout=p["timeout"],
            tls_min_days=p["tls_min_days"],
            validate_certs=p["validate_certs"],
            ca_path=p["ca_path"],
            headers=headers,
        )
        outcome = run_transitions(
            probe="endpoint_check",
            target=name,
            problems=probe.problems,
            state_file=state_file,
            check_mode=module.check_mode,
            not_evaluated=probe.not_evaluated,
            **alert_options(p),
        )
    except (ProbeError, StateError) as exc:
        module.fail_json(msg=str(exc))
    for warning in probe.warnings + outcome.pop("warnings"):
        module.warn(warning)
    healthy = not probe.problems
    result = {
        "changed": bool(outcome["alerts"] or outcome["recoveries"]),
        "healthy": healthy,
        "status": probe.status,
        "latency_ms": probe.latency_ms,
        "tls_days_left": probe.tls_days_left,
        "tls_not_after": probe.tls_not_after,
        "error": probe.error,
        "problems": probe.problems,
        **outcome,
    }
    if not healthy and p["fail_on_unhealthy"]:
        module.fail_json(msg=f"{name} is unhealthy: " + "; ".join(probe.problems.values()), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
