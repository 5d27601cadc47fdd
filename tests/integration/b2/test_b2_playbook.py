"""b2_sync from a playbook, options set once through module_defaults and the b2 action group."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.integration.b2.b2helpers import APP_KEY, KEY_ID, REGION, write_backup
from tests.integration.b2.b2proxy import B2Proxy
from tests.support.runner import MODULE_PYTHON, run_playbook

PLAYBOOK = """
- name: Copy backups off-site, then check their freshness
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/mutuapix.ops.b2:
      bucket: "{{ bucket }}"
      endpoint_url: "{{ endpoint }}"
      region: "{{ region }}"
      prefix: "{{ prefix }}"
      cache_file: "{{ cache }}"
  tasks:
    - name: Push
      mutuapix.ops.b2_sync:
        src: "{{ src }}"
        keep_last: 1
    - name: Status
      mutuapix.ops.b2_sync:
        mode: status
        database: app
      register: offsite
    - name: Fail unless healthy
      ansible.builtin.assert:
        that:
          - offsite.healthy
          - offsite.backups.app.count == 1
"""


def test_playbook_with_module_defaults_group(bucket, proxy: B2Proxy, tmp_path: Path, s3):
    src = tmp_path / "src"
    src.mkdir()
    now = dt.datetime.now(dt.timezone.utc)
    write_backup(src, "app", now, 1000)
    write_backup(src, "app", now - dt.timedelta(days=1), 1000)
    playbook = tmp_path / "offsite.yml"
    playbook.write_text(PLAYBOOK)
    extra = {
        "bucket": bucket,
        "endpoint": proxy.url,
        "region": REGION,
        "prefix": "pb",
        "src": str(src),
        "cache": str(tmp_path / "cache.json"),
        "ansible_python_interpreter": MODULE_PYTHON,
    }
    env = {"B2_APPLICATION_KEY_ID": KEY_ID, "B2_APPLICATION_KEY": APP_KEY}
    first = run_playbook(playbook, inventory="localhost,", extra_vars=extra, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=1" in first.stdout
    assert APP_KEY not in first.stdout + first.stderr
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix="pb/")["Contents"]) == 2
    second = run_playbook(playbook, inventory="localhost,", extra_vars=extra, env=env)
    assert second.returncode == 0 and "changed=0" in second.stdout, second.stdout
