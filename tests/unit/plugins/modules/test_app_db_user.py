"""app_db_user as Ansible runs it, without a server: what must fail before any connection."""

from __future__ import annotations

import socket

import pytest
import yaml

from ansible_collections.mutuapix.ops.plugins.modules import app_db_user
from tests.support.runner import run_module


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Connection options to a loopback port nothing listens on: reaching connect() says so."""
    cnf = tmp_path_factory.mktemp("cnf") / "empty.cnf"
    cnf.write_text("[client]\n")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return {
        "login_host": "127.0.0.1",
        "login_port": port,
        "login_user": "root",
        "login_password": "irrelevant-Pw-1",
        "config_file": str(cnf),
        "connect_timeout": 2,
        "name": "mutuapix_app",
    }


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("CHANGE_THIS_SECURE_PASSWORD", "known placeholder or common password"),
        ("short-Pw-1", "at least 16 are required"),
        ("Xy7!Mutuapix-App-2024", "contains the account or database name"),
        # 24+ characters: no class rule, but still trivial
        (" " * 23 + "x", "only 2 different characters"),
        ("passwordpasswordpassword", "common password repeated"),
        ("Password123456789!", "only digits and symbols added"),
    ],
)
def test_weak_password_fails_before_connecting(base: dict[str, object], password: str, rule: str) -> None:
    result = run_module("app_db_user", {**base, "password": password})
    assert result.failed and rule in result["msg"], result
    assert "cannot connect" not in result["msg"]
    assert password not in result["msg"] and password not in result.stderr
    assert "Traceback" not in result.stderr


def test_min_length_below_16_needs_allow_weak(base: dict[str, object]) -> None:
    result = run_module("app_db_user", {**base, "password": "Xk7#pQ2v!Lm9@wZr", "password_min_length": 12})
    assert result.failed and "password_min_length=12 is below 16" in result["msg"], result


def test_host_and_hosts_are_exclusive(base: dict[str, object]) -> None:
    result = run_module("app_db_user", {**base, "host": "localhost", "hosts": ["%"]})
    assert result.failed and "mutually exclusive" in result["msg"], result


def test_strong_password_reaches_the_connection(base: dict[str, object]) -> None:
    result = run_module("app_db_user", {**base, "password": "Xk7#pQ2v!Lm9@wZr"})
    assert result.failed and "cannot connect to MySQL as root@127.0.0.1" in result["msg"], result
    assert "Xk7#pQ2v!Lm9@wZr" not in str(result) and "Traceback" not in result.stderr


def test_documentation_matches_argument_spec() -> None:
    doc = yaml.safe_load(app_db_user.DOCUMENTATION)
    spec = app_db_user.argument_spec()
    assert set(doc["options"]) == set(spec)
    for name, option in spec.items():
        documented = doc["options"][name]
        assert documented["type"] == option["type"], name
        assert documented.get("default") == option.get("default"), name
        assert documented.get("choices") == option.get("choices"), name
    returned = yaml.safe_load(app_db_user.RETURN)
    assert {"created", "removed", "password_changed", "privileges", "granted", "revoked", "statements"} <= set(returned)
    assert spec["password"]["no_log"] is True
    yaml.safe_load(app_db_user.EXAMPLES)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"name": "x'@'%' IDENTIFIED BY 'x"}, "contains characters other than"),
        ({"host": "localhost` IDENTIFIED BY `x"}, "is not a host name"),
    ],
)
def test_bad_names_refused_before_connecting(base: dict[str, object], args: dict[str, object], needle: str) -> None:
    result = run_module("app_db_user", {**base, **args})
    assert result.failed and needle in result["msg"] and "cannot connect" not in result["msg"], result
