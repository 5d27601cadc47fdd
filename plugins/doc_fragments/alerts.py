# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Notification and state options shared by the probe modules of mutuapix.ops (endpoint_check, queue_health)."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  realert_after_s:
    description:
      - While a problem lasts, send a reminder after this many seconds. C(0) never reminds.
    type: int
    default: 3600
  notify_url:
    description:
      - Slack-compatible incoming webhook URL that receives alerts and recoveries as a JSON POST
        (see the payload in the collection's C(docs/monitoring.md)).
      - Treated as a secret because such URLs embed a token.
      - Without it, alerts and recoveries are only returned.
    type: str
  notify_timeout:
    description:
      - Seconds to wait for the webhook.
    type: int
    default: 10
  state_dir:
    description:
      - Directory of the default O(state_file), created with mode 0700 when missing. Defaults to
        C(/var/lib/mutuapix-ops).
      - Mutually exclusive with O(state_file).
    type: path
"""
