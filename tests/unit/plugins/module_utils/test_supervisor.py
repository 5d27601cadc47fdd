"""Rendering, validation and planning of _supervisor, and the _memmon listener protocol."""

from __future__ import annotations

import io
import os
import shlex
import stat
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _memmon, _supervisor
from ansible_collections.mutuapix.ops.plugins.module_utils._supervisor import WorkerConfigError, WorkerSpec


def limits(**overrides: Any) -> None:
    args = {
        "timeout_s": 60,
        "retry_after_s": 90,
        "stopwaitsecs": 90,
        "memory_mb": 256,
        "hard_memory_mb": 384,
        "numprocs": 2,
    }
    args.update(overrides)
    _supervisor.validate_limits(**args)


def test_consistent_limits_pass():
    limits()
    limits(memory_mb=None, hard_memory_mb=64)  # command form: no soft limit to compare with
    limits(hard_memory_mb=None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"timeout_s": 90}, "must be below retry_after_s (90): otherwise a job still running"),
        ({"timeout_s": 120}, "timeout_s (120) must be below retry_after_s"),
        ({"stopwaitsecs": 60}, "stopwaitsecs (60) must be above timeout_s (60)"),
        ({"hard_memory_mb": 200}, "hard_memory_mb (200) must be above memory_mb (256)"),
        ({"timeout_s": 0}, "timeout_s must be positive"),
        ({"numprocs": 0}, "numprocs must be at least 1"),
        ({"memory_mb": -1}, "memory_mb must be positive"),
        ({"hard_memory_grace_s": 0}, "hard_memory_grace_s must be between 1 and 50"),
        ({"hard_memory_grace_s": 55}, "must be back within a minute"),
        ({"hard_memory_mb": -5, "memory_mb": None}, "hard_memory_mb must be positive"),
    ],
)
def test_inconsistent_limits_are_refused(overrides: dict[str, Any], message: str):
    with pytest.raises(WorkerConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        limits(**overrides)


@pytest.mark.parametrize("name", ["queue-default", "q.payments_2", "A"])
def test_valid_names(name: str):
    assert _supervisor.validate_name(name) == name


@pytest.mark.parametrize("name", ["", "has space", "-lead", "a:b", "x" * 64, "w_memlimit", "../etc"])
def test_invalid_names(name: str):
    with pytest.raises(WorkerConfigError):
        _supervisor.validate_name(name)


def test_laravel_command():
    args = _supervisor.laravel_command(
        php="/usr/bin/php8.2",
        app_path="/srv/app",
        connection="redis",
        queues=["high", "default"],
        sleep=1,
        tries=5,
        max_time_s=0,
        max_jobs=0,
        timeout_s=30,
        memory_mb=200,
    )
    assert args == [
        "/usr/bin/php8.2",
        "/srv/app/artisan",
        "queue:work",
        "redis",
        "--queue=high,default",
        "--sleep=1",
        "--tries=5",
        "--timeout=30",
        "--memory=200",
    ]


def spec(**overrides: Any) -> WorkerSpec:
    base: dict[str, Any] = {
        "name": "w",
        "command": ["/usr/bin/php", "/srv/my app/artisan", "queue:work", "--queue=a,b"],
        "numprocs": 2,
        "environment": {"APP_ENV": "production", "DSN": "a=b;c", "PCT": "100%"},
        "stopwaitsecs": 90,
        "log_file": "/var/log/supervisor/w.log",
        "hard_memory_mb": 300,
        "listener_command": ["/usr/bin/python3", "/usr/local/lib/mutuapix-ops/memlimit.py", "--group", "w"],
        "listener_environment": {"SUPERVISOR_USERNAME": "u", "SUPERVISOR_PASSWORD": "p w"},
    }
    base.update(overrides)
    return WorkerSpec(**base)


def test_render_parses_back_and_escapes_percent_and_spaces():
    worker = spec()
    text = _supervisor.render_config(worker)
    _supervisor.check_round_trip(worker, text)
    parsed = _supervisor.parse_config(text)
    assert list(parsed) == ["program:w", "eventlistener:w_memlimit"]
    program = parsed["program:w"]
    assert program["process_name"] == "%(program_name)s_%(process_num)02d"
    assert shlex.split(program["command"]) == worker.command
    assert 'PCT="100%%"' in program["environment"]  # supervisor expands %(x)s: a literal % is doubled
    assert program["stopwaitsecs"] == "90" and program["stopasgroup"] == "true"
    listener = parsed["eventlistener:w_memlimit"]
    assert listener["events"] == "TICK_5"
    assert listener["stderr_logfile"] == "/var/log/supervisor/w.log.memlimit.log"
    assert worker.groups == ["w", "w_memlimit"]
    assert text.startswith("; Managed by mutuapix.ops")


def test_diff_masks_the_listener_password_in_every_form():
    """'%' is written doubled, so the masking of the option's value alone would miss it."""
    old_text = _supervisor.render_config(spec(listener_environment={"SUPERVISOR_PASSWORD": "old%pw"}))
    new_text = _supervisor.render_config(spec(listener_environment={"SUPERVISOR_PASSWORD": "n%w,pw"}))
    assert 'SUPERVISOR_PASSWORD="n%%w,pw"' in new_text  # what supervisor must read
    before, after = _supervisor.redact_diff(old_text, new_text)
    for secret in ("old%pw", "old%%pw", "n%w,pw", "n%%w,pw"):
        assert secret not in before + after
    assert 'SUPERVISOR_PASSWORD="********"' in before
    assert 'SUPERVISOR_PASSWORD="******** (changed)"' in after
    assert 'PCT="100%%"' in after  # other values are shown as written
    same = _supervisor.redact_diff(new_text, new_text)
    assert same[0] == same[1] and "(changed)" not in same[1]
    hand_edited = _supervisor.redact_diff("environment=SUPERVISOR_PASSWORD=bare-secret,X=1\n", None)
    assert hand_edited == ('environment=SUPERVISOR_PASSWORD="********",X=1\n', "")


def test_diff_masks_secret_environment_and_secret_looking_names():
    old_text = _supervisor.render_config(
        spec(environment={"APP_ENV": "production", "PIX_CERT": "cert-old"}, secret_keys=("PIX_CERT",))
    )
    assert "; secret environment, masked in diffs: PIX_CERT\n" in old_text
    assert _supervisor.parse_config(old_text) == _supervisor.render_sections(
        spec(environment={"APP_ENV": "production", "PIX_CERT": "cert-old"})
    )
    new_text = _supervisor.render_config(spec(environment={"APP_ENV": "staging", "DB_PASSWORD": "pw,1"}))
    before, after = _supervisor.redact_diff(old_text, new_text)
    assert 'PIX_CERT="********"' in before and "cert-old" not in before  # listed by the old file
    assert 'DB_PASSWORD="********"' in after and "pw,1" not in after  # named like a secret
    assert 'APP_ENV="staging"' in after
    named = _supervisor.redact_diff(None, 'environment=OPAQUE="x1",PLAIN="y"\n', secret_keys={"OPAQUE"})
    assert named == ("", 'environment=OPAQUE="********",PLAIN="y"\n')
    # a line that does not parse to its end is masked from where parsing stopped
    broken = _supervisor.redact_diff('environment=A="1",B=un"parsed,C_TOKEN=t0k\nuser=x\n', None)
    assert broken == ('environment=A="1",********\nuser=x\n', "")


def test_render_without_hard_limit_has_no_listener():
    worker = spec(hard_memory_mb=None, listener_command=None)
    assert list(_supervisor.parse_config(_supervisor.render_config(worker))) == ["program:w"]
    assert worker.groups == ["w"]


def test_round_trip_catches_an_inline_comment():
    """supervisor's parser cuts a value at ' ;' - the parse-back check must notice before writing."""
    worker = spec(command=["/bin/sh", "-c", "echo a ;rm -rf /tmp/x"])
    with pytest.raises(WorkerConfigError, match=r"does not read back as written: \[program:w\] command \(supervisor"):
        _supervisor.check_round_trip(worker, _supervisor.render_config(worker))
    # a secret is named by its option, never shown
    secret = spec(environment={"DB_PASSWORD": "pa #ss"})
    with pytest.raises(WorkerConfigError, match=r"\[program:w\] environment \(") as caught:
        _supervisor.check_round_trip(secret, _supervisor.render_config(secret))
    assert "pa #ss" not in str(caught.value)


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"A": 'x"y'}, "double quote"),
        ({"A": "x\ny"}, "line breaks"),
        ({"1BAD": "x"}, "not valid"),
    ],
)
def test_environment_refusals(environment: dict[str, str], message: str):
    with pytest.raises(WorkerConfigError, match=message):
        _supervisor.render_config(spec(environment=environment))


def test_environment_values_with_commas_read_back():
    worker = spec(environment={"LIST": "a,b,c", "URL": "mysql://u@h:3306/db"})
    _supervisor.check_round_trip(worker, _supervisor.render_config(worker))
    assert _supervisor._split_environment('LIST="a,b,c",X="1"') == {"LIST": "a,b,c", "X": "1"}


def test_predict():
    loaded = {"w", "other"}
    plan = _supervisor.predict(loaded, ["w", "w_memlimit"], [], {"w", "w_memlimit"})
    assert plan.to_dict() == {"added": ["w_memlimit"], "removed": [], "restarted": ["w"]}
    assert _supervisor.predict(loaded, ["w"], [], set()).empty
    gone = _supervisor.predict({"w", "w_memlimit"}, [], ["w", "w_memlimit"], {"w", "w_memlimit"})
    assert gone.removed == ["w", "w_memlimit"]


def test_changed_groups_compares_each_section():
    """Only the program's section changes (numprocs): the listener, unchanged, is not predicted to restart."""
    base = {"name": "w", "command": ["/usr/bin/php", "artisan", "queue:work"], "hard_memory_mb": 300}
    base["listener_command"] = ["/usr/bin/python3", "/opt/memlimit.py", "--group", "w"]
    one = _supervisor.render_config(WorkerSpec(**base))
    two = _supervisor.render_config(WorkerSpec(**base, numprocs=2))
    assert _supervisor.changed_groups(one, two) == {"w"}
    assert _supervisor.changed_groups(one, one) == set()
    assert _supervisor.changed_groups(one, one.replace("; Managed", ";  Managed", 1)) == set()  # only a comment
    tighter = _supervisor.render_config(WorkerSpec(**{**base, "listener_command": [*base["listener_command"], "-x"]}))
    assert _supervisor.changed_groups(one, tighter) == {"w_memlimit"}
    assert _supervisor.changed_groups(None, one) == {"w", "w_memlimit"}
    assert _supervisor.changed_groups(one, None) == {"w", "w_memlimit"}
    loaded = {"w", "w_memlimit"}
    plan = _supervisor.predict(loaded, ["w", "w_memlimit"], [], _supervisor.changed_groups(one, two))
    assert plan.restarted == ["w"]


def test_write_atomic_and_remove(tmp_path: Path):
    path = tmp_path / "w.conf"
    _supervisor.write_atomic(str(path), "[program:w]\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["w.conf"]
    assert _supervisor.read_file(str(path)) == "[program:w]\n"
    assert _supervisor.remove_file(str(path)) is True
    assert _supervisor.remove_file(str(path)) is False
    assert _supervisor.read_file(str(path)) is None
    with pytest.raises(WorkerConfigError, match="does not exist: is supervisor installed"):
        _supervisor.write_atomic(str(tmp_path / "missing" / "w.conf"), "x")


def test_client_explains_a_missing_socket(tmp_path: Path):
    client = _supervisor.Supervisor(f"unix://{tmp_path}/none.sock", timeout=2)
    with pytest.raises(_supervisor.SupervisorError, match="supervisord is not running: its socket"):
        client.processes()


# --------------------------------------------------------------------------- _memmon


def test_rss_of_this_process():
    assert _memmon.rss_mb(os.getpid()) > 5
    assert _memmon.rss_mb(0) is None
    assert _memmon.rss_mb(2**22 + 12345) is None


def test_server_proxy_urls():
    unix = _memmon.server_proxy("unix:///run/supervisor.sock", "u", "p@ss", timeout=1)
    assert isinstance(unix._ServerProxy__transport, _memmon.UnixStreamTransport)  # type: ignore[attr-defined]
    assert unix._ServerProxy__host == "u:p%40ss@localhost"  # type: ignore[attr-defined]
    http = _memmon.server_proxy("http://127.0.0.1:9001", timeout=1)
    assert http._ServerProxy__host == "127.0.0.1:9001"  # type: ignore[attr-defined]
    assert http._ServerProxy__handler == "/RPC2"  # type: ignore[attr-defined]


class RecordingRPC:
    """Stands in for supervisord's XML-RPC namespace: answers getAllProcessInfo, records calls."""

    def __init__(self, infos: list[dict[str, Any]]) -> None:
        self.infos = infos
        self.calls: list[tuple[str, ...]] = []
        self.supervisor = self

    def getAllProcessInfo(self) -> list[dict[str, Any]]:
        return self.infos

    def stopProcess(self, name: str, wait: bool) -> bool:
        self.calls.append(("stop", name))
        return True

    def getProcessInfo(self, name: str) -> dict[str, Any]:
        if ("stop", name) in self.calls:
            return {"name": name, "statename": "STOPPED", "pid": 0}
        return next(i for i in self.infos if f"{i['group']}:{i['name']}" == name)

    def startProcess(self, name: str, wait: bool) -> bool:
        self.calls.append(("start", name))
        return True


def test_check_group_restarts_only_processes_above_the_limit(capsys: pytest.CaptureFixture[str]):
    me = os.getpid()
    rpc = RecordingRPC(
        [
            {"group": "w", "name": "w_00", "statename": "RUNNING", "pid": me},
            {"group": "w", "name": "w_01", "statename": "STARTING", "pid": me},
            {"group": "other", "name": "o_00", "statename": "RUNNING", "pid": me},
        ]
    )
    assert _memmon.check_group(rpc, "w", limit_mb=1) == ["w:w_00"]
    assert rpc.calls == [("stop", "w:w_00"), ("start", "w:w_00")]
    assert "above the hard limit of 1 MB: restarting" in capsys.readouterr().err
    rpc.calls.clear()
    assert _memmon.check_group(rpc, "w", limit_mb=100_000) == []
    assert rpc.calls == []


def test_check_group_stops_every_process_before_waiting_for_any():
    me = os.getpid()
    rpc = RecordingRPC([{"group": "w", "name": f"w_0{i}", "statename": "RUNNING", "pid": me} for i in range(3)])
    assert _memmon.check_group(rpc, "w", limit_mb=1) == ["w:w_00", "w:w_01", "w:w_02"]
    assert rpc.calls == [("stop", f"w:w_0{i}") for i in range(3)] + [("start", f"w:w_0{i}") for i in range(3)]


def test_check_group_leaves_a_process_replaced_since_its_measurement(capsys: pytest.CaptureFixture[str]):
    """supervisord reports another start time (or pid) after the measurement: a new process, left alone."""
    me = os.getpid()
    rpc = RecordingRPC([{"group": "w", "name": "w_00", "statename": "RUNNING", "pid": me, "start": 100}])
    measured = dict(rpc.infos[0])
    rpc.infos[0] = {**measured, "start": 160}  # what getProcessInfo answers after the measurement
    rpc.getAllProcessInfo = lambda: [measured]  # type: ignore[method-assign]
    assert _memmon.check_group(rpc, "w", limit_mb=1) == []
    assert rpc.calls == []
    assert "exited or was restarted since: left alone" in capsys.readouterr().err


def test_listener_protocol_survives_an_unreachable_supervisord(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SUPERVISOR_SERVER_URL", f"unix://{tmp_path}/gone.sock")
    payload = "when:1800000000"
    events = "".join(
        f"ver:3.0 server:supervisor serial:{i} pool:w_memlimit poolserial:{i} eventname:TICK_5 len:{len(payload)}\n"
        + payload
        for i in range(2)
    )
    stdout = io.StringIO()
    _memmon.listen("w", 100, 5, stdin=io.StringIO(events), stdout=stdout)
    assert stdout.getvalue() == "READY\nRESULT 2\nOK" * 2 + "READY\n"


@pytest.mark.parametrize(
    ("suffix", "ok"), [(".conf", True), (".ini", True), ("conf", False), ("/../x", False), ("", False)]
)
def test_config_suffix(suffix: str, ok: bool):
    if ok:
        assert _supervisor.validate_suffix(suffix) == suffix
    else:
        with pytest.raises(WorkerConfigError, match="must look like .conf or .ini"):
            _supervisor.validate_suffix(suffix)
