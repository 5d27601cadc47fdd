"""supervisor_worker_limits: documentation, option validation and spec building (no supervisord needed)."""

from __future__ import annotations

import json
import re

import yaml

from ansible_collections.mutuapix.ops.plugins.module_utils import _memmon
from ansible_collections.mutuapix.ops.plugins.modules import supervisor_worker_limits as swl
from tests.support.runner import run_module


def accepted_options(name: str, required: dict) -> set[str]:
    result = run_module(name, {**required, "zzz_not_an_option": 1})
    return set(re.search(r"Supported parameters include: (.*)\.$", result["msg"]).group(1).split(", "))


def params(**overrides):
    base = {
        "name": "w",
        "state": "present",
        "command": None,
        "app_path": "/srv/app",
        "php": "php",
        "connection": None,
        "queues": ["default"],
        "sleep": 3,
        "tries": 3,
        "max_time_s": 3600,
        "max_jobs": 0,
        "timeout_s": 60,
        "memory_mb": None,
        "retry_after_s": 90,
        "stopwaitsecs": None,
        "numprocs": 1,
        "user": None,
        "directory": None,
        "environment": {},
        "secret_environment": {},
        "log_file": None,
        "log_max_mb": 50,
        "log_backups": 5,
        "hard_memory_mb": None,
        "hard_memory_grace_s": 30,
        "listener_path": "/usr/local/lib/mutuapix-ops/memlimit.py",
        "listener_python": "/usr/bin/python3",
        "supervisor_username": None,
        "supervisor_password": None,
    }
    base.update(overrides)
    return base


def test_documented_options_are_the_accepted_ones():
    doc = yaml.safe_load(swl.DOCUMENTATION)
    assert set(doc["options"]) == accepted_options("supervisor_worker_limits", {"name": "w", "command": ["x"]})
    assert doc["attributes"]["diff_mode"]["support"] == "full"


def test_return_and_examples():
    returned = yaml.safe_load(swl.RETURN)
    assert set(returned["applied"]["contains"]) == {"added", "removed", "restarted"}
    assert set(returned["processes"]["contains"]) == {"name", "state", "pid", "rss_mb", "uptime_s"}
    for task in yaml.safe_load(swl.EXAMPLES):
        assert "mutuapix.ops.supervisor_worker_limits" in task


def test_laravel_defaults():
    spec = swl.build_spec(params())
    assert spec.stopwaitsecs == 90  # timeout_s + 30
    assert "--memory=512" in spec.command
    assert spec.directory == "/srv/app"
    assert spec.log_file == "/var/log/supervisor/w.log"
    assert spec.groups == ["w"]


def test_hard_limit_adds_the_listener_with_credentials():
    spec = swl.build_spec(params(hard_memory_mb=768, supervisor_username="ops", supervisor_password="pw"))
    assert spec.groups == ["w", "w_memlimit"]
    assert spec.listener_command == [
        "/usr/bin/python3",
        "/usr/local/lib/mutuapix-ops/memlimit.py",
        "--group",
        "w",
        "--limit-mb",
        "768",
        "--grace-s",
        "30",
    ]
    assert spec.listener_environment == {"SUPERVISOR_USERNAME": "ops", "SUPERVISOR_PASSWORD": "pw"}


def test_command_form_has_no_soft_limit_to_compare():
    spec = swl.build_spec(params(app_path=None, command=["/usr/bin/node", "w.js"], hard_memory_mb=100))
    assert spec.command == ["/usr/bin/node", "w.js"] and spec.directory is None


def test_listener_source_is_the_shipped_file():
    with open(_memmon.__file__, encoding="utf-8") as handle:
        assert swl.listener_source() == handle.read()


def test_option_errors_need_no_supervisord(tmp_path):
    both = run_module("supervisor_worker_limits", {"name": "w", "command": ["x"], "app_path": "/srv"})
    assert both.failed and "mutually exclusive" in both["msg"]
    neither = run_module("supervisor_worker_limits", {"name": "w"})
    assert neither.failed and "command, app_path" in neither["msg"]
    timeouts = run_module(
        "supervisor_worker_limits",
        {"name": "w", "app_path": "/srv", "timeout_s": 100, "config_dir": str(tmp_path)},
    )
    assert timeouts.failed and "must be below retry_after_s" in timeouts["msg"]
    assert list(tmp_path.iterdir()) == []
    secret = run_module(
        "supervisor_worker_limits",
        {
            "name": "w",
            "command": ["x"],
            "config_dir": str(tmp_path),
            "supervisor_url": f"unix://{tmp_path}/none.sock",
            "supervisor_username": "u",
            "supervisor_password": "never-printed",
        },
    )
    assert secret.failed and "supervisord is not running" in secret["msg"]
    assert "never-printed" not in str(secret)


def test_diff_never_shows_the_supervisor_password(tmp_path):
    """Written with '%' doubled, the password escaped the no_log masking in --diff; the old one on rotation too."""
    args = {
        "name": "w",
        "app_path": "/srv/app",
        "hard_memory_mb": 600,
        "supervisor_username": "ops",
        "apply": False,
        "config_dir": str(tmp_path),
        "listener_path": str(tmp_path / "memlimit.py"),
    }
    first = run_module("supervisor_worker_limits", {**args, "supervisor_password": "old%Passw0rd"}, diff=True)
    assert not first.failed, first
    assert 'SUPERVISOR_PASSWORD="old%%Passw0rd"' in (tmp_path / "w.conf").read_text()  # the file (0600) has it
    planned = run_module(
        "supervisor_worker_limits", {**args, "supervisor_password": "new%Passw0rd"}, check=True, diff=True
    )
    assert planned["changed"] is True
    text = json.dumps(first) + json.dumps(planned)
    for secret in ("old%Passw0rd", "old%%Passw0rd", "new%Passw0rd", "new%%Passw0rd"):
        assert secret not in text, secret
    assert 'SUPERVISOR_PASSWORD="******** (changed)"' in planned["diff"]["after"]


def test_secret_environment_reaches_the_file_and_nothing_else(tmp_path):
    """Secrets in secret_environment are in the 0600 file only; one in environment draws a warning."""
    args = {"name": "w", "app_path": "/srv/app", "apply": False, "config_dir": str(tmp_path)}
    first = run_module(
        "supervisor_worker_limits",
        {
            **args,
            "environment": {"APP_ENV": "production", "STRIPE_KEY": "pk_live_visible-in-results"},
            "secret_environment": {"DB_PASSWORD": "old%s3cret", "PIX_CERT": "pix-old-cert"},
        },
        diff=True,
    )
    assert not first.failed, first
    text = (tmp_path / "w.conf").read_text()
    assert 'DB_PASSWORD="old%%s3cret"' in text and 'PIX_CERT="pix-old-cert"' in text and 'APP_ENV="production"' in text
    assert "environment STRIPE_KEY looks like a secret" in json.dumps(first.get("warnings"))
    rotated = run_module(
        "supervisor_worker_limits",
        {**args, "environment": {"APP_ENV": "production"}, "secret_environment": {"DB_PASSWORD": "new%s3cret"}},
        check=True,
        diff=True,
    )
    assert rotated["changed"] is True and not rotated.get("warnings")
    shown = json.dumps(first) + json.dumps(rotated)
    for secret in ("old%s3cret", "old%%s3cret", "new%s3cret", "new%%s3cret", "pix-old-cert", "pk_live_visible"):
        assert secret not in json.dumps(rotated["diff"]), secret
    for secret in ("old%s3cret", "old%%s3cret", "new%s3cret", "new%%s3cret", "pix-old-cert"):
        assert secret not in shown, secret
    # the old PIX_CERT is masked too, though this run no longer names it: the file lists its secret names
    assert 'PIX_CERT="********"' in rotated["diff"]["before"] and "PIX_CERT" not in rotated["diff"]["after"]
    assert 'DB_PASSWORD="******** (changed)"' in rotated["diff"]["after"]
    assert 'APP_ENV="production"' in rotated["diff"]["after"]
    both = run_module(
        "supervisor_worker_limits",
        {**args, "environment": {"TOKEN": "shown"}, "secret_environment": {"TOKEN": "a-vaulted-token"}},
    )
    assert both.failed and "TOKEN given in both environment and secret_environment" in both["msg"]
