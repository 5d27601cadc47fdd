"""mysql_restore_verify: documentation matches the argument spec; input errors are clear (no server needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.mutuapix.ops.plugins.doc_fragments.mysql import ModuleDocFragment
from ansible_collections.mutuapix.ops.plugins.modules import mysql_restore_verify
from tests.support.runner import run_module


@pytest.fixture(autouse=True)
def _empty_option_file(tmp_path: Path) -> None:
    NO_SERVER["config_file"] = str(tmp_path / "empty.cnf")
    (tmp_path / "empty.cnf").write_text("[client]\n")


# An option file of our own, so a ~/.my.cnf on the test machine cannot leak in.
NO_SERVER: dict[str, str] = {"login_unix_socket": "/nonexistent/mysqld.sock", "login_password": "pw-never-shown"}


def accepted_options(required: dict) -> set[str]:
    result = run_module("mysql_restore_verify", {**required, "zzz_not_an_option": 1})
    return set(re.search(r"Supported parameters include: (.*)\.$", result["msg"]).group(1).split(", "))


def test_documented_options_are_the_accepted_ones() -> None:
    doc = yaml.safe_load(mysql_restore_verify.DOCUMENTATION)
    fragment = yaml.safe_load(ModuleDocFragment.DOCUMENTATION.split("\nrequirements:", maxsplit=1)[0])
    assert "mutuapix.ops.mysql" in doc["extends_documentation_fragment"]
    documented = set(doc["options"]) | set(fragment["options"])
    assert documented == accepted_options({"src": "/x.sql.zst"})
    spec = mysql_restore_verify.argument_spec()
    for name, option in doc["options"].items():
        assert option["type"] == spec[name]["type"], name
        assert option.get("default") == spec[name].get("default"), name
        assert option.get("choices") == spec[name].get("choices"), name
    assert spec["identity"]["no_log"] is True
    assert doc["attributes"]["check_mode"]["support"] == "full"


def test_return_and_examples() -> None:
    returned = yaml.safe_load(mysql_restore_verify.RETURN)
    for key in ("verified", "mode", "database", "tables", "mismatches", "duration_s", "restore_s", "verify_s"):
        assert key in returned, key
    for key in ("cutover_ms", "bytes"):
        assert key in returned
    for key, value in returned.items():
        assert {"description", "returned", "type", "sample"} <= set(value), key
    for task in yaml.safe_load(mysql_restore_verify.EXAMPLES):
        assert "mutuapix.ops.mysql_restore_verify" in task


def test_src_or_backup_dir_is_required() -> None:
    result = run_module("mysql_restore_verify", dict(NO_SERVER))
    assert result.failed and "one of the following is required: src, backup_dir" in result["msg"]
    result = run_module("mysql_restore_verify", dict(NO_SERVER, backup_dir="/tmp"))
    assert result.failed and "database" in result["msg"]


def test_missing_file_fails_before_connecting(tmp_path: Path) -> None:
    result = run_module("mysql_restore_verify", dict(NO_SERVER, src=str(tmp_path / "app-20261128T031500Z.sql.zst")))
    assert result.failed and "backup file" in result["msg"] and "does not exist" in result["msg"]
    assert "pw-never-shown" not in json.dumps(result) and "Traceback" not in result.stderr


def test_identity_is_never_echoed(tmp_path: Path) -> None:
    secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
    result = run_module("mysql_restore_verify", dict(NO_SERVER, src=str(tmp_path / "x.sql.zst.age"), identity=secret))
    assert result.failed and "identity" in result["msg"]
    assert secret not in json.dumps(result) and secret not in result.stderr


def test_bad_numbers() -> None:
    result = run_module("mysql_restore_verify", dict(NO_SERVER, src="/x.sql.zst", keep_old=-1))
    assert result.failed and "keep_old" in result["msg"]
    result = run_module("mysql_restore_verify", dict(NO_SERVER, src="/x.sql.zst", workers=0))
    assert result.failed and "workers" in result["msg"]
    result = run_module("mysql_restore_verify", dict(NO_SERVER, src="/x.sql.zst", lock_wait_timeout=0))
    assert result.failed and "lock_wait_timeout must be 1 second or more" in result["msg"]
