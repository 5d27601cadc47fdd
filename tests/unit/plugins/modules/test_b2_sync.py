"""b2_sync's interface: documentation matches the argument spec, and bad input fails clearly
before any network access (the module runs as a real process, as Ansible runs it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.mutuapix.ops.plugins.doc_fragments.b2 import ModuleDocFragment
from ansible_collections.mutuapix.ops.plugins.module_utils._s3 import b2_argument_spec
from ansible_collections.mutuapix.ops.plugins.modules import b2_sync
from tests.support.runner import run_module

SECRET = "K004-unit-test-secret-value"


def documented_options() -> dict[str, dict]:
    own = yaml.safe_load(b2_sync.DOCUMENTATION)["options"]
    shared = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    return {**own, **shared}


def test_documentation_matches_argument_spec():
    spec = {**b2_argument_spec(), **b2_sync.argument_spec()}
    docs = documented_options()
    assert set(docs) == set(spec)
    for name, option in spec.items():
        doc = docs[name]
        assert doc.get("type", "str") == option.get("type", "str"), name
        assert doc.get("default") == option.get("default"), name
        assert doc.get("choices") == option.get("choices"), name
        assert bool(doc.get("required")) == bool(option.get("required")), name
        assert doc.get("description"), name
        assert sorted(doc.get("aliases", [])) == sorted(option.get("aliases", [])), name


def test_examples_and_return_are_valid_yaml():
    examples = yaml.safe_load(b2_sync.EXAMPLES)
    assert all("mutuapix.ops.b2_sync" in task for task in examples)
    returned = yaml.safe_load(b2_sync.RETURN)
    for key in ("uploaded", "skipped", "deleted", "retained_locked", "downloaded", "bytes_transferred"):
        assert key in returned and returned[key]["returned"], key
    for key in ("duration_s", "throughput_mb_s", "backups", "healthy"):
        assert key in returned


def base_args(tmp_path: Path, **extra) -> dict:
    args = {
        "bucket": "b",
        "endpoint_url": "http://127.0.0.1:9",
        "key_id": "id",
        "application_key": SECRET,
        "src": str(tmp_path),
        "max_attempts": 1,
    }
    args.update(extra)
    return args


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"part_size_mb": 4}, "part_size_mb must be between 5"),
        ({"concurrency": 0}, "concurrency must be between 1 and 64"),
        ({"object_lock_mode": "governance"}, "object_lock_days"),
        ({"object_lock_mode": "governance", "object_lock_days": 0}, "object_lock_days must be 1 or more"),
        ({"mode": "pull", "dest": "/nonexistent-dir-x", "name": "a"}, "dest /nonexistent-dir-x is not a directory"),
        ({"mode": "pull", "name": "a", "latest": True}, "mutually exclusive"),
        ({"mode": "pull", "latest": True}, "exactly one database"),
        ({"mode": "status", "keep_daily": 7}, "keep_* options apply to mode=push only"),
        ({"mode": "push", "src": "/nonexistent-dir-x"}, "src /nonexistent-dir-x is not a directory"),
        ({"endpoint_url": None}, "set region"),
        ({"mode": "bogus"}, "value of mode must be one of"),
        # 0 once became 6 (a falsy value took the default): refused, as the documentation says "at least 1"
        ({"max_attempts": 0}, "max_attempts must be 1 or more"),
        ({"max_attempts": -3}, "max_attempts must be 1 or more"),
        ({"connect_timeout": 0}, "connect_timeout must be 1 or more"),
        ({"read_timeout": -1}, "read_timeout must be 1 or more"),
    ],
)
def test_bad_input_fails_clearly(tmp_path: Path, extra, message):
    args = base_args(tmp_path, **extra)
    if extra.get("mode") == "pull" and "dest" not in extra:
        args["dest"] = str(tmp_path)
    args = {k: v for k, v in args.items() if v is not None}
    result = run_module("b2_sync", args)
    assert result.failed, result
    assert message in result["msg"], result["msg"]
    assert "Traceback" not in result.stderr
    assert SECRET not in json.dumps(result)


def test_application_key_is_never_returned(tmp_path: Path):
    result = run_module("b2_sync", base_args(tmp_path, connect_timeout=1))
    assert result.failed and "cannot reach" in result["msg"]
    assert SECRET not in json.dumps(result) and SECRET not in result.stderr
    assert result["invocation"]["module_args"]["application_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
