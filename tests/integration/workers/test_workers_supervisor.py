"""supervisor_worker_limits against a real supervisord with queue:work-like workers."""

from __future__ import annotations

import configparser
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ansible
import pytest

from ansible_collections.mutuapix.ops.plugins.module_utils import _memmon
from tests.integration.workers.conftest import Supervisord, Workers, read_rss_mb, wait_for
from tests.support.mariadb import refused_port
from tests.support.runner import MODULE_PYTHON, module_env, run_module, run_playbook


def test_add_then_second_run_is_unchanged(workers: Workers, supervisord: Supervisord):
    first = workers.run("alpha", numprocs=2, environment={"WORKER_TAG": "v1"})
    assert not first.failed, first
    assert first["changed"] is True
    assert first["applied"] == {"added": ["alpha"], "removed": [], "restarted": []}
    assert [p["name"] for p in first["processes"]] == ["alpha:alpha_00", "alpha:alpha_01"]
    for proc in first["processes"]:
        assert proc["state"] == "RUNNING" and proc["pid"] > 0
        assert proc["rss_mb"] > 1 and proc["uptime_s"] >= 0
    config = Path(first["config_path"])
    assert config == supervisord.conf_d / "alpha.conf"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    parser = configparser.RawConfigParser()
    parser.read_string(config.read_text())
    program = parser["program:alpha"]
    assert program["stopwaitsecs"] == "35"  # timeout_s + 30
    assert program["stopsignal"] == "TERM" and program["numprocs"] == "2"
    assert program["environment"] == 'WORKER_TAG="v1"'
    assert not list(supervisord.conf_d.glob(".*"))  # no temporary file left behind
    pids = supervisord.pids("alpha")

    second = workers.run("alpha", numprocs=2, environment={"WORKER_TAG": "v1"})
    assert second["changed"] is False, second
    assert second["applied"] == {"added": [], "removed": [], "restarted": []}
    assert supervisord.pids("alpha") == pids
    assert all(e[0] == "start" for e in workers.events("alpha"))  # nobody was stopped


def test_change_restarts_only_the_changed_group_gracefully(workers: Workers, supervisord: Supervisord):
    assert workers.run("alpha")["changed"]
    assert workers.run("beta")["changed"]
    alpha_pids, beta_pids = supervisord.pids("alpha"), supervisord.pids("beta")

    changed = workers.run("alpha", diff=True, environment={"WORKER_TAG": "v2"})
    assert changed["changed"] is True
    assert changed["applied"] == {"added": [], "removed": [], "restarted": ["alpha"]}
    assert 'WORKER_TAG="v2"' in changed["diff"]["after"] and "WORKER_TAG" not in changed["diff"]["before"]
    assert supervisord.pids("beta") == beta_pids  # untouched
    new_alpha = supervisord.pids("alpha")
    assert new_alpha and set(new_alpha.values()).isdisjoint(alpha_pids.values())
    old_pid = str(next(iter(alpha_pids.values())))
    events = workers.events("alpha")
    assert ["graceful-stop", old_pid] == events[1][:2]  # SIGTERM, the job finished, then exit
    assert events[-1][0] == "start" and events[-1][3] == "v2"
    assert [e[0] for e in workers.events("beta")] == ["start"]


def test_remove_program(workers: Workers, supervisord: Supervisord):
    workers.run("alpha")
    workers.run("beta")
    removed = workers.run("alpha", state="absent")
    assert removed["changed"] is True
    assert removed["applied"] == {"added": [], "removed": ["alpha"], "restarted": []}
    assert not (supervisord.conf_d / "alpha.conf").exists()
    assert supervisord.groups() == {"beta"}
    assert workers.events("alpha")[-1][0] == "graceful-stop"
    again = workers.run("alpha", state="absent")
    assert again["changed"] is False and again["applied"]["removed"] == []


def test_inconsistent_timeouts_are_refused_with_the_reason(workers: Workers, supervisord: Supervisord):
    cases = [
        ({"timeout_s": 90, "retry_after_s": 90}, "timeout_s (90) must be below retry_after_s (90)"),
        ({"timeout_s": 60, "retry_after_s": 90, "stopwaitsecs": 60}, "stopwaitsecs (60) must be above timeout_s (60)"),
        ({"memory_mb": 256, "hard_memory_mb": 256}, "hard_memory_mb (256) must be above memory_mb (256)"),
        ({"name": "bad name"}, "is not a valid supervisor program name"),
        ({"environment": {"A": 'say "hi"'}}, "contains a double quote"),
        ({"command": ["/bin/echo", "a\nb"]}, "must not contain line breaks"),
    ]
    for overrides, message in cases:
        name = overrides.pop("name", "gamma")
        result = workers.run(name, **overrides)
        assert result.failed, (overrides, result)
        assert message in result["msg"], result["msg"]
        assert "Traceback" not in result.stderr
    assert list(supervisord.conf_d.iterdir()) == []
    assert supervisord.groups() == set()


def test_check_and_diff_mode_change_nothing(workers: Workers, supervisord: Supervisord):
    planned = workers.run("alpha", check=True, diff=True, hard_memory_mb=500)
    assert not planned.failed, planned
    assert planned["changed"] is True
    assert planned["applied"]["added"] == ["alpha", "alpha_memlimit"]
    assert planned["diff"]["before"] == "" and "[eventlistener:alpha_memlimit]" in planned["diff"]["after"]
    assert list(supervisord.conf_d.iterdir()) == []
    assert not Path(workers.args("alpha")["listener_path"]).exists()
    assert supervisord.groups() == set()

    workers.run("alpha")
    change = workers.run("alpha", check=True, numprocs=3)
    assert change["applied"] == {"added": [], "removed": [], "restarted": ["alpha"]}
    assert "numprocs=1" in (supervisord.conf_d / "alpha.conf").read_text()
    removal = workers.run("alpha", check=True, state="absent")
    assert removal["changed"] is True and removal["applied"]["removed"] == ["alpha"]
    assert (supervisord.conf_d / "alpha.conf").exists() and supervisord.groups() == {"alpha"}
    assert workers.run("alpha", check=True)["changed"] is False


def test_laravel_form_runs_queue_work_with_the_limits(supervisord: Supervisord, fake_laravel: Path, tmp_path: Path):
    php = shutil.which("php")
    if php is None:
        pytest.skip("php-cli is not installed")
    artisan_log = tmp_path / "artisan.log"
    args = {
        "name": "queue-default",
        "app_path": str(fake_laravel),
        "php": php,
        "connection": "database",
        "queues": ["payments", "default"],
        "timeout_s": 60,
        "retry_after_s": 90,
        "memory_mb": 128,
        "max_jobs": 500,
        "environment": {"ARTISAN_LOG": str(artisan_log)},
        "config_dir": str(supervisord.conf_d),
        "supervisor_url": supervisord.url,
        "log_file": str(supervisord.logs / "queue-default.log"),
    }
    result = run_module("supervisor_worker_limits", args)
    assert not result.failed, result
    expected = [
        php,
        f"{fake_laravel}/artisan",
        "queue:work",
        "database",
        "--queue=payments,default",
        "--sleep=3",
        "--tries=3",
        "--timeout=60",
        "--memory=128",
        "--max-time=3600",
        "--max-jobs=500",
    ]
    assert result["command"] == expected
    line = wait_for(lambda: artisan_log.exists() and artisan_log.read_text().strip())
    assert line == " ".join(expected[1:])
    assert result["processes"][0]["state"] == "RUNNING"
    assert "stopwaitsecs=90" in Path(result["config_path"]).read_text()
    missing_form = run_module("supervisor_worker_limits", {"name": "x", "config_dir": str(supervisord.conf_d)})
    assert missing_form.failed and "command, app_path" in missing_form["msg"]


def test_hard_memory_limit_restarts_a_leaking_worker_within_a_minute(workers: Workers, supervisord: Supervisord):
    limit_mb = 80
    result = workers.run("leaky", leak=25, hard_memory_mb=limit_mb)
    assert not result.failed, result
    assert result["applied"]["added"] == ["leaky", "leaky_memlimit"]
    listener = Path(result["listener_path"])
    assert stat.S_IMODE(listener.stat().st_mode) == 0o755
    assert "def check_group" in listener.read_text()
    first_pid = next(iter(supervisord.pids("leaky").values()))

    crossed_at = wait_for(lambda: time.monotonic() if read_rss_mb(first_pid) > limit_mb else None, timeout=30)
    assert crossed_at, "the worker never grew past the limit"

    def restarted() -> float | None:
        pids = supervisord.pids("leaky")
        return time.monotonic() if pids and first_pid not in pids.values() else None

    restarted_at = wait_for(restarted, timeout=60, interval=0.2)
    assert restarted_at, "the worker was not restarted within 60 s of passing hard_memory_mb"
    elapsed = restarted_at - crossed_at
    print(f"\nhard memory limit: restarted {elapsed:.1f} s after RSS passed {limit_mb} MB")
    assert elapsed < 60
    events = workers.events("leaky")
    assert ["graceful-stop", str(first_pid)] in [e[:2] for e in events]  # a graceful SIGTERM, not SIGKILL
    listener_log = (supervisord.logs / "leaky.log.memlimit.log").read_text()
    assert "above the hard limit of 80 MB: restarting" in listener_log

    assert workers.run("leaky", leak=25, hard_memory_mb=limit_mb)["changed"] is False
    dropped = workers.run("leaky", leak=25)  # no hard limit any more: the listener goes away
    assert dropped["applied"]["removed"] == ["leaky_memlimit"]
    assert dropped["applied"]["restarted"] == []  # the program section did not change
    assert supervisord.groups() == {"leaky"}


def test_hard_memory_limit_kills_a_job_that_will_not_finish(workers: Workers, supervisord: Supervisord):
    """A leaking job that runs for minutes: SIGTERM is not enough, the grace period bounds the restart."""
    limit_mb, grace_s = 80, 3
    result = workers.run("stuck", leak=25, job_s=600, hard_memory_mb=limit_mb, hard_memory_grace_s=grace_s)
    assert not result.failed, result
    first_pid = next(iter(supervisord.pids("stuck").values()))
    crossed_at = wait_for(lambda: time.monotonic() if read_rss_mb(first_pid) > limit_mb else None, timeout=30)
    assert crossed_at, "the worker never grew past the limit"

    def restarted() -> float | None:
        pids = supervisord.pids("stuck")
        return time.monotonic() if pids and first_pid not in pids.values() else None

    restarted_at = wait_for(restarted, timeout=60, interval=0.2)
    assert restarted_at, "the stuck worker was not restarted within 60 s"
    elapsed = restarted_at - crossed_at
    print(f"\nhard memory limit, job that ignores SIGTERM: restarted {elapsed:.1f} s after RSS passed {limit_mb} MB")
    assert elapsed < 5 + grace_s + 10  # tick + grace + kill and start, with slack for a loaded machine
    assert str(first_pid) not in [e[1] for e in workers.events("stuck") if e[0] == "graceful-stop"]
    log = (supervisord.logs / "stuck.log.memlimit.log").read_text()
    assert f"still running {grace_s} s after the stop signal: killing its process group" in log


def test_hard_memory_limit_restarts_several_leaking_workers_together(workers: Workers, supervisord: Supervisord):
    """Three workers above the limit at once: all are stopped, waited for and killed together, so the last one is
    back within one grace period - one after the other, the third waited three (about 30 s with a 10 s grace)."""
    limit_mb, grace_s = 80, 10
    result = workers.run(
        "trio", leak=60, max_mb=130, job_s=600, numprocs=3, hard_memory_mb=limit_mb, hard_memory_grace_s=grace_s
    )
    assert not result.failed, result
    first = wait_for(lambda: len(supervisord.pids("trio")) == 3 and supervisord.pids("trio"))
    assert first, "the three workers did not start"

    def all_crossed() -> float | None:
        return time.monotonic() if all(read_rss_mb(pid) > limit_mb for pid in first.values()) else None

    crossed_at = wait_for(all_crossed, timeout=30)
    assert crossed_at, "the workers never all grew past the limit"
    restarted_at: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(restarted_at) < 3 and time.monotonic() < deadline:
        now_pids = supervisord.pids("trio")
        for name, pid in first.items():
            if name not in restarted_at and now_pids.get(name) not in (None, pid):
                restarted_at[name] = time.monotonic()
        time.sleep(0.2)
    assert len(restarted_at) == 3, f"only {sorted(restarted_at)} restarted within 60 s"
    elapsed = sorted(t - crossed_at for t in restarted_at.values())
    print("\nhard memory limit, three leaking workers: restarted " + ", ".join(f"{e:.1f} s" for e in elapsed))
    assert elapsed[-1] - elapsed[0] < 5, f"restarted one after the other: {elapsed}"
    assert elapsed[-1] < 5 + grace_s + 8  # tick + one grace + kill and start, with slack for a loaded machine
    log = (supervisord.logs / "trio.log.memlimit.log").read_text()
    assert log.count(f"still running {grace_s} s after the stop signal: killing its process group") >= 3


def _replaced(supervisord: Supervisord, group: str, name: str, old_pid: int) -> int:
    """Wait until supervisord runs a new process for ``name`` (autorestart), return its pid."""
    pid = wait_for(lambda: supervisord.pids(group).get(name) not in (None, old_pid) and supervisord.pids(group)[name])
    assert pid, f"supervisord did not start a new {name} after pid {old_pid} exited"
    return int(pid)


def test_the_listener_leaves_alone_a_worker_replaced_after_its_measurement(
    workers: Workers, supervisord: Supervisord, monkeypatch: pytest.MonkeyPatch
):
    """The worker exits by itself (queue:work --memory) between the listener's reading of its memory and the
    restart, and supervisord starts a new one: the listener must not restart the new, small worker."""
    assert not workers.run("swap").failed
    name = "swap:swap_00"
    first_pid = wait_for(lambda: supervisord.pids("swap").get(name))
    assert first_pid, "the worker did not start"
    replacement: dict[str, int] = {}
    measure = _memmon.rss_mb

    def measure_then_exit(pid: int, tree: dict[int, list[int]] | None = None) -> float | None:
        used = measure(pid, tree)
        if pid == first_pid and not replacement:
            os.kill(pid, signal.SIGTERM)  # the worker finishes its job and exits, as at its soft limit
            replacement["pid"] = _replaced(supervisord, "swap", name, first_pid)
        return used

    monkeypatch.setattr(_memmon, "rss_mb", measure_then_exit)
    rpc = _memmon.server_proxy(supervisord.url, timeout=30)
    assert _memmon.check_group(rpc, "swap", limit_mb=1, grace_s=5) == []
    assert supervisord.pids("swap") == {name: replacement["pid"]}, "the replacement worker was restarted"
    assert [e[:2] for e in workers.events("swap") if e[0] == "graceful-stop"] == [["graceful-stop", str(first_pid)]]


def test_the_listener_kills_only_the_process_supervisord_is_stopping(
    workers: Workers, supervisord: Supervisord, tmp_path: Path
):
    """A worker that will not stop within the grace is killed by the pid supervisord reports for it, never by a
    pid measured earlier: that pid may belong to another process by then (here, a bystander given as stale)."""
    assert not workers.run("hang", job_s=600).failed
    name = "hang:hang_00"
    worker_pid = wait_for(lambda: supervisord.pids("hang").get(name))
    assert worker_pid, "the worker did not start"
    bystander = subprocess.Popen(["sleep", "120"], start_new_session=True)
    try:
        rpc = _memmon.server_proxy(supervisord.url, timeout=30)
        started = time.monotonic()
        restarted = _memmon.restart_processes(rpc, {name: bystander.pid}, grace_s=1)
        assert bystander.poll() is None, "the listener killed a process that is not the worker"
        assert restarted == [name]
        assert time.monotonic() - started < 15, "the worker was not killed after the grace period"
        assert _replaced(supervisord, "hang", name, worker_pid)
    finally:
        bystander.kill()
        bystander.wait()


def test_check_mode_predicts_the_restarts_the_real_run_makes(workers: Workers, supervisord: Supervisord):
    """numprocs 1 -> 2 with a hard limit: only [program:qa] changes, so the listener is not restarted."""
    assert not workers.run("qa", hard_memory_mb=300).failed
    listener_pid = wait_for(lambda: supervisord.pids("qa_memlimit"))
    planned = workers.run("qa", check=True, hard_memory_mb=300, numprocs=2)
    applied = workers.run("qa", hard_memory_mb=300, numprocs=2)
    assert applied["applied"] == {"added": [], "removed": [], "restarted": ["qa"]}, applied
    assert planned["applied"] == applied["applied"]
    assert supervisord.pids("qa_memlimit") == listener_pid  # the listener kept running
    tighter = workers.run("qa", check=True, hard_memory_mb=200, numprocs=2)
    assert tighter["applied"]["restarted"] == ["qa_memlimit"]  # only the listener's command changes
    assert workers.run("qa", hard_memory_mb=200, numprocs=2)["applied"] == tighter["applied"]


def test_a_new_listener_script_restarts_the_listener_of_every_program(workers: Workers, supervisord: Supervisord):
    """Programs share listener_path: after an upgrade, each program's run restarts its own listener.

    The first run installs the new script and restarts its listener; the second program's run
    finds the script already current, but its listener still runs the old code loaded at start.
    """
    for name in ("alpha", "beta"):
        assert not workers.run(name, hard_memory_mb=300).failed
    listener = Path(workers.args("alpha")["listener_path"])
    listener.write_text(listener.read_text() + "\n# an older release of the listener\n")
    rpc = supervisord.rpc()
    for group in ("alpha_memlimit", "beta_memlimit"):  # both listeners now run the older script
        rpc.stopProcessGroup(group, True)
        rpc.startProcessGroup(group, True)
    old_beta = wait_for(lambda: supervisord.pids("beta_memlimit"))
    time.sleep(1.1)  # the upgrade comes later than the listeners' start

    upgraded = workers.run("alpha", hard_memory_mb=300)
    assert upgraded["applied"]["restarted"] == ["alpha_memlimit"], upgraded
    planned = workers.run("beta", check=True, hard_memory_mb=300)
    assert planned["applied"]["restarted"] == ["beta_memlimit"], planned
    other = workers.run("beta", hard_memory_mb=300)
    assert other["changed"] is True and other["applied"]["restarted"] == ["beta_memlimit"], other
    new_beta = wait_for(lambda: supervisord.pids("beta_memlimit"))
    assert set(new_beta.values()).isdisjoint(old_beta.values())
    for name in ("alpha", "beta"):  # and nothing more after that
        again = workers.run(name, hard_memory_mb=300)
        assert again["changed"] is False and again["applied"]["restarted"] == [], again


def test_supervisor_not_running_is_a_clear_error(workers: Workers, supervisord: Supervisord, tmp_path: Path):
    missing = workers.run("alpha", supervisor_url=f"unix://{tmp_path}/nope.sock")
    assert missing.failed
    assert "supervisord is not running: its socket" in missing["msg"] and "does not exist" in missing["msg"]

    stale = Path(tempfile.mkdtemp(prefix="mpx-st-")) / "stale.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()  # the file stays, nobody listens: what a crashed supervisord leaves behind
    try:
        refused = workers.run("alpha", supervisor_url=f"unix://{stale}")
        assert refused.failed and "nothing accepts connections" in refused["msg"]
    finally:
        shutil.rmtree(stale.parent, ignore_errors=True)
    http_down = workers.run("alpha", supervisor_url="http://127.0.0.1:9")
    assert http_down.failed and "supervisord is not running" in http_down["msg"]
    for result in (missing, refused, http_down):
        assert "Traceback" not in result.stderr


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]


def unprivileged_module_tree(root: Path) -> tuple[str, Path]:
    """An interpreter and an import path the user nobody can use, wherever the checkout lives.

    The checkout and its venv are often under /root (mode 0700): nobody cannot read them. So the
    module runs the way Ansible ships it to a host without become, from copies under ``root``: the
    ``ansible`` package's module side (what AnsiballZ packs) and the collection's plugins.
    """
    lib = root / "lib"
    package = Path(ansible.__file__).parent
    (lib / "ansible").mkdir(parents=True)
    for name in ("__init__.py", "release.py"):
        shutil.copy2(package / name, lib / "ansible" / name)
    ignore = shutil.ignore_patterns("__pycache__")
    for sub in ("module_utils", "_vendor"):
        if (package / sub).is_dir():
            shutil.copytree(package / sub, lib / "ansible" / sub, ignore=ignore)
    collection = lib / "ansible_collections" / "mutuapix" / "ops"
    shutil.copytree(Path(__file__).resolve().parents[3] / "plugins", collection / "plugins", ignore=ignore)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    # An interpreter nobody can start and import the standard library with.
    candidates = [
        sys.executable,
        os.path.realpath(sys.executable),
        getattr(sys, "_base_executable", ""),
        "/usr/bin/python3",
    ]
    for python in dict.fromkeys(c for c in candidates if c):
        probe = subprocess.run(
            [*AS_NOBODY, python, "-I", "-c", "import json, xmlrpc.client"],
            capture_output=True,
            cwd=str(root),
            check=False,
        )
        if probe.returncode == 0:
            return python, lib
    raise AssertionError(f"no Python interpreter the user nobody can run, among {candidates}")


def test_socket_not_permitted_is_a_clear_error(workers: Workers, supervisord: Supervisord):
    """The socket is root's, mode 0700: an unprivileged user gets an actionable message."""
    work = Path(tempfile.mkdtemp(prefix="mpx-np-"))  # pytest's own tmp dirs are private to root
    try:
        python, lib = unprivileged_module_tree(work)
        (work / "confd").mkdir()
        args = workers.args("alpha", config_dir=str(work / "confd"))
        args_file = work / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_tmpdir": str(work)}}))
        os.chmod(work, 0o755)  # noqa: S103 - the unprivileged user must reach the arguments file
        args_file.chmod(0o644)
        module = "ansible_collections.mutuapix.ops.plugins.modules.supervisor_worker_limits"
        proc = subprocess.run(
            [*AS_NOBODY, python, "-m", module, str(args_file)],
            capture_output=True,
            text=True,
            env=module_env({"HOME": str(work), "PYTHONPATH": str(lib)}),
            cwd=str(work),
            timeout=60,
            check=False,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert "{" in proc.stdout, proc.stderr
    result = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert result.get("failed"), result
    assert "permission denied on supervisord's socket" in result["msg"], result["msg"]
    assert "become: true" in result["msg"]
    assert supervisord.groups() == set()


def test_wrong_credentials_and_uncovered_config_dir(tmp_path: Path, worker_script: Path):
    base = Path(tempfile.mkdtemp(prefix="mpx-sa-"))
    server = Supervisord(base, username="ops", password="s3cret-sv-pass").start()
    try:
        good = Workers(server, worker_script, tmp_path)
        added = good.run("alpha", hard_memory_mb=400, diff=True)
        assert not added.failed, added
        assert "s3cret-sv-pass" not in json.dumps(added)  # masked in the diff and everywhere else
        listener = (server.conf_d / "alpha.conf").read_text()
        assert 'SUPERVISOR_PASSWORD="s3cret-sv-pass"' in listener  # the listener must authenticate too
        assert wait_for(lambda: server.pids("alpha_memlimit"))  # ...and it runs
        wrong = good.run("alpha", supervisor_password="wrong-pass")
        assert wrong.failed and "refused the credentials" in wrong["msg"]
        assert "wrong-pass" not in json.dumps(wrong)
        elsewhere = tmp_path / "not-included"
        elsewhere.mkdir()
        uncovered = good.run("delta", config_dir=str(elsewhere))
        assert uncovered.failed and "does its [include]" in uncovered["msg"]
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_a_password_in_the_supervisor_url_never_shows(workers: Workers, supervisord: Supervisord):
    """http://user:pass@host:9001 is how XML-RPC URLs carry credentials; every error named the URL whole."""
    with refused_port() as port:
        failed = workers.run("alpha", supervisor_url=f"http://ops:url-s3cret-pass@127.0.0.1:{port}")
    assert failed.failed and "nothing accepts connections" in failed["msg"], failed
    assert "url-s3cret-pass" not in json.dumps(failed), failed


def test_a_password_with_percent_is_masked_and_still_authenticates(tmp_path: Path, worker_script: Path):
    """The listener's password is written with '%' doubled: masked in every result, read back as set."""
    base = Path(tempfile.mkdtemp(prefix="mpx-sp-"))
    server = Supervisord(base, username="ops", password="s3cret%sv-pass").start()
    try:
        workers = Workers(server, worker_script, tmp_path)
        planned = workers.run("alpha", check=True, diff=True, hard_memory_mb=400)
        added = workers.run("alpha", diff=True, hard_memory_mb=400)
        assert not added.failed, added
        for result in (planned, added):
            assert "s3cret%sv-pass" not in json.dumps(result) and "s3cret%%sv-pass" not in json.dumps(result)
        assert 'SUPERVISOR_PASSWORD="********"' in added["diff"]["after"]
        assert wait_for(lambda: server.pids("alpha_memlimit"))
        time.sleep(6)  # at least one TICK_5: the listener asks supervisord for the group's processes
        log = (server.logs / "alpha.log.memlimit.log").read_text()
        assert "watching group alpha" in log and "cannot check" not in log, log
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_through_ansible_playbook_installs_the_listener(workers: Workers, supervisord: Supervisord, tmp_path: Path):
    """AnsiballZ ships module_utils in a zip: the listener source must still be found and installed."""
    args = workers.args("viaplay", hard_memory_mb=300)
    playbook = tmp_path / "play.yml"
    playbook.write_text(
        json.dumps(
            [
                {
                    "hosts": "localhost",
                    "gather_facts": False,
                    "tasks": [
                        {"mutuapix.ops.supervisor_worker_limits": args, "register": "out"},
                        {"ansible.builtin.assert": {"that": ["out.applied.added | length == 2"]}},
                    ],
                }
            ]
        )
    )
    proc = run_playbook(
        playbook, inventory="localhost,", args=["-c", "local", "-e", f"ansible_python_interpreter={MODULE_PYTHON}"]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    listener = Path(args["listener_path"])
    assert listener.read_text() == Path(_memmon.__file__).read_text()
    assert wait_for(lambda: supervisord.pids("viaplay_memlimit"))


def test_apply_false_writes_only_and_a_later_run_applies(workers: Workers, supervisord: Supervisord):
    written = workers.run("alpha", apply=False)
    assert written["changed"] is True
    assert written["applied"] == {"added": [], "removed": [], "restarted": []} and written["processes"] == []
    assert (supervisord.conf_d / "alpha.conf").exists() and supervisord.groups() == set()
    applied = workers.run("alpha")  # same file, but supervisord has not loaded it yet
    assert applied["changed"] is True
    assert applied["applied"]["added"] == ["alpha"]
    assert workers.run("alpha")["changed"] is False
