# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Supervisor programs for Laravel queue workers (private API).

Renders one config file per worker program (plus its hard-memory event listener), checks
the rendering by parsing it back, writes it atomically, and applies it through supervisord's
XML-RPC API the way ``supervisorctl reread`` + ``update`` would - limited to the groups this
file defines: new groups are added, deleted ones removed, changed ones stopped gracefully
(``stopsignal`` then ``stopwaitsecs``) and started again; untouched groups keep running.
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import http.client
import os
import re
import shlex
import socket
import tempfile
import time
import xmlrpc.client
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ansible_collections.mutuapix.ops.plugins.module_utils import _memmon

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LISTENER_SUFFIX = "_memlimit"
DEFAULT_URL = "unix:///var/run/supervisor.sock"
HEADER = "; Managed by mutuapix.ops.supervisor_worker_limits - local changes will be overwritten.\n"
# Seconds the hard-memory listener waits between checks (supervisor's TICK_5 event).
LISTENER_EVENT = "TICK_5"
# Environment variables whose values are secrets: in the 0600 file, masked in the diff. Besides
# these and the keys of secret_environment, any name that looks like a secret's is masked too.
SECRET_ENV_KEYS = ("SUPERVISOR_PASSWORD",)
SECRET_NAME_RE = re.compile(r"(?i)PASS|SECRET|TOKEN|KEY|CREDENTIAL|PRIVATE|AUTH|DSN")
SECRET_MASK = "********"  # noqa: S105 - the mask shown instead of a secret, not a secret
ENVIRONMENT_PREFIX = "environment="
MASKED_NAMES_COMMENT = "; secret environment, masked in diffs: "
# One KEY=value of an environment line (without its line break), as written (quoted, '%' doubled)
# or as an older or hand-edited file may hold it (bare), with the comma that ends it.
_ENV_ITEM_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|[^,"]*)(,|$)')


class WorkerConfigError(Exception):
    """The requested worker configuration is inconsistent or cannot be rendered safely."""


class SupervisorError(Exception):
    """supervisord cannot be reached or refused a request."""


# --------------------------------------------------------------------------- validation


def validate_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise WorkerConfigError(
            f"name {name!r} is not a valid supervisor program name: use 1-63 letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    if name.endswith(LISTENER_SUFFIX):
        raise WorkerConfigError(f"name {name!r} must not end with {LISTENER_SUFFIX}: that suffix names the listener")
    return name


def validate_suffix(suffix: str) -> str:
    if not re.match(r"^\.[A-Za-z0-9_-]{1,16}$", suffix or ""):
        raise WorkerConfigError(f"config_suffix {suffix!r} must look like .conf or .ini")
    return suffix


def validate_limits(
    *,
    timeout_s: int,
    retry_after_s: int,
    stopwaitsecs: int,
    memory_mb: int | None,
    hard_memory_mb: int | None,
    numprocs: int,
    hard_memory_grace_s: int = 30,
) -> None:
    """Refuse timeouts and limits that contradict each other, saying why."""
    if timeout_s <= 0:
        raise WorkerConfigError(f"timeout_s must be positive, got {timeout_s}")
    if timeout_s >= retry_after_s:
        raise WorkerConfigError(
            f"timeout_s ({timeout_s}) must be below retry_after_s ({retry_after_s}): otherwise a job still running "
            "is handed to a second worker when its reservation expires, and runs twice. Lower timeout_s or raise "
            "the queue connection's retry_after (config/queue.php) and pass it as retry_after_s"
        )
    if stopwaitsecs <= timeout_s:
        raise WorkerConfigError(
            f"stopwaitsecs ({stopwaitsecs}) must be above timeout_s ({timeout_s}): supervisor would SIGKILL a worker "
            "in the middle of a job it is allowed to finish on a graceful stop"
        )
    if memory_mb is not None and memory_mb <= 0:
        raise WorkerConfigError(f"memory_mb must be positive, got {memory_mb}")
    if hard_memory_mb is not None:
        if hard_memory_mb <= 0:
            raise WorkerConfigError(f"hard_memory_mb must be positive, got {hard_memory_mb}")
        if memory_mb is not None and hard_memory_mb <= memory_mb:
            raise WorkerConfigError(
                f"hard_memory_mb ({hard_memory_mb}) must be above memory_mb ({memory_mb}): the soft limit lets the "
                "worker exit cleanly between jobs; the hard limit is the safety net above it"
            )
    if numprocs < 1:
        raise WorkerConfigError(f"numprocs must be at least 1, got {numprocs}")
    if hard_memory_mb is not None and not 0 < hard_memory_grace_s <= 50:
        raise WorkerConfigError(
            f"hard_memory_grace_s must be between 1 and 50, got {hard_memory_grace_s}: a worker above the hard limit "
            "must be back within a minute"
        )


# --------------------------------------------------------------------------- rendering


@dataclass
class WorkerSpec:
    """Everything the config file says about one worker program."""

    name: str
    command: list[str]
    numprocs: int = 1
    directory: str | None = None
    user: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    stopwaitsecs: int = 90
    log_file: str | None = None
    log_max_mb: int = 50
    log_backups: int = 5
    hard_memory_mb: int | None = None
    listener_command: list[str] | None = None
    listener_environment: dict[str, str] = field(default_factory=dict)
    autostart: bool = True
    # Names in ``environment`` whose values are secrets (secret_environment): listed in the file, so a
    # later run masks them in the diff's "before" even when it no longer names them.
    secret_keys: tuple[str, ...] = ()

    @property
    def listener_group(self) -> str:
        return self.name + LISTENER_SUFFIX

    @property
    def groups(self) -> list[str]:
        """Supervisor process groups this spec defines (the program, and its listener if any)."""
        return [self.name] + ([self.listener_group] if self.hard_memory_mb else [])


def laravel_command(
    *,
    php: str,
    app_path: str,
    connection: str | None,
    queues: list[str],
    sleep: int,
    tries: int,
    max_time_s: int,
    max_jobs: int,
    timeout_s: int,
    memory_mb: int,
) -> list[str]:
    """``php artisan queue:work`` with the limits as options."""
    args = [php, os.path.join(app_path, "artisan"), "queue:work"]
    if connection:
        args.append(connection)
    if queues:
        args.append("--queue=" + ",".join(queues))
    args += [f"--sleep={sleep}", f"--tries={tries}", f"--timeout={timeout_s}", f"--memory={memory_mb}"]
    if max_time_s:
        args.append(f"--max-time={max_time_s}")
    if max_jobs:
        args.append(f"--max-jobs={max_jobs}")
    return args


def escape_value(value: str) -> str:
    """How a value is written into supervisor's INI: '%' doubled (supervisor expands %(name)s)."""
    return value.replace("%", "%%")


def _escape(value: str, what: str) -> str:
    """A value safe in supervisor's INI: one line, escaped by :func:`escape_value`."""
    if "\n" in value or "\r" in value or "\x00" in value:
        raise WorkerConfigError(f"{what} must not contain line breaks or NUL bytes")
    return escape_value(value)


def _command_line(args: list[str], what: str) -> str:
    if not args or not args[0]:
        raise WorkerConfigError(f"{what} is empty")
    return _escape(shlex.join(args), what)


def _environment_line(env: dict[str, str]) -> str:
    items = []
    for key, value in sorted(env.items()):
        if not ENV_KEY_RE.match(key):
            raise WorkerConfigError(f"environment variable name {key!r} is not valid")
        if '"' in value:
            raise WorkerConfigError(
                f"environment value of {key} contains a double quote, which supervisor cannot represent"
            )
        items.append(f'{key}="{_escape(value, f"environment value of {key}")}"')
    return ",".join(items)


def render_sections(spec: WorkerSpec) -> dict[str, dict[str, str]]:
    """The INI sections and values (already escaped for supervisor) of the spec."""
    program: dict[str, str] = {
        "command": _command_line(spec.command, "command"),
        "process_name": "%(program_name)s_%(process_num)02d",
        "numprocs": str(spec.numprocs),
        "autostart": "true" if spec.autostart else "false",
        "autorestart": "true",
        "startsecs": "1",
        "startretries": "10",
        "stopsignal": "TERM",
        "stopwaitsecs": str(spec.stopwaitsecs),
        "stopasgroup": "true",
        "killasgroup": "true",
        "redirect_stderr": "true",
        "stdout_logfile": _escape(spec.log_file or "AUTO", "log_file"),
        "stdout_logfile_maxbytes": f"{spec.log_max_mb}MB",
        "stdout_logfile_backups": str(spec.log_backups),
    }
    if spec.directory:
        program["directory"] = _escape(spec.directory, "directory")
    if spec.user:
        program["user"] = _escape(spec.user, "user")
    if spec.environment:
        program["environment"] = _environment_line(spec.environment)
    sections = {f"program:{spec.name}": program}
    if spec.hard_memory_mb:
        if not spec.listener_command:
            raise WorkerConfigError("hard_memory_mb needs the listener command")
        listener = {
            "command": _command_line(spec.listener_command, "listener command"),
            "events": LISTENER_EVENT,
            "autostart": "true",
            "autorestart": "true",
            "startsecs": "1",
            "stopwaitsecs": "10",
            "stderr_logfile": _escape(
                (spec.log_file + ".memlimit.log") if spec.log_file else "AUTO", "listener log file"
            ),
            "stderr_logfile_maxbytes": "10MB",
            "stderr_logfile_backups": "2",
        }
        if spec.listener_environment:
            listener["environment"] = _environment_line(spec.listener_environment)
        sections[f"eventlistener:{spec.listener_group}"] = listener
    return sections


def render_config(spec: WorkerSpec) -> str:
    lines = [HEADER.rstrip("\n")]
    if spec.secret_keys:
        lines.append(MASKED_NAMES_COMMENT + ",".join(sorted(spec.secret_keys)))
    for section, values in render_sections(spec).items():
        lines.append("")
        lines.append(f"[{section}]")
        lines.extend(f"{key}={value}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def parse_config(text: str) -> dict[str, dict[str, str]]:
    """Read a rendered file back the way supervisor's parser does (INI, no interpolation)."""
    # supervisor's UnhosedConfigParser: RawConfigParser with inline comments after ';' or '#'.
    parser = configparser.RawConfigParser(strict=True, inline_comment_prefixes=(";", "#"))
    try:
        parser.read_string(text)
    except configparser.Error as exc:
        raise WorkerConfigError(f"the rendered configuration does not parse: {exc}") from exc
    return {section: dict(parser.items(section)) for section in parser.sections()}


def _split_environment(value: str) -> dict[str, str]:
    """supervisor's own ``KEY="v",KEY2="v2"`` parser (datatypes.dict_of_key_value_pairs)."""
    lexer = shlex.shlex(value)
    lexer.wordchars += "/.+-():"
    tokens = list(lexer)
    result = {}
    for i in range(0, len(tokens), 4):
        key, eq, val = [*tokens[i : i + 3], "", "", ""][:3]
        if eq != "=":
            raise WorkerConfigError(f"environment line {value!r} does not parse back")
        result[key] = val.strip("'\"")
    return result


def check_round_trip(spec: WorkerSpec, text: str) -> None:
    """Parse the rendered text back and compare it with the intent before it replaces anything."""
    parsed = parse_config(text)
    expected = render_sections(spec)
    if parsed != expected:
        # Named by option only: the values may be secrets (environment).
        differing = sorted(
            f"[{section}] {key}"
            for section in set(parsed) | set(expected)
            for key in set(parsed.get(section, {})) | set(expected.get(section, {}))
            if parsed.get(section, {}).get(key) != expected.get(section, {}).get(key)
        )
        raise WorkerConfigError(
            f"the rendered configuration does not read back as written: {', '.join(differing) or 'its sections'} "
            "(supervisor reads ' ;' or ' #' in a value as the start of a comment, which cannot be escaped: "
            "remove the space before ';' or '#', or the character)"
        )
    program = parsed[f"program:{spec.name}"]
    if shlex.split(program["command"].replace("%%", "%")) != spec.command:
        raise WorkerConfigError("the command line does not read back as the same arguments")
    if spec.environment:
        back = _split_environment(program["environment"])
        if {k: v.replace("%%", "%") for k, v in back.items()} != spec.environment:
            raise WorkerConfigError(
                "environment values do not read back unchanged (avoid commas, quotes and spaces mixed with '=')"
            )


def is_secret_key(key: str, secret_keys: Collection[str] = ()) -> bool:
    """Whether an environment variable's value is masked in the diff."""
    return key in SECRET_ENV_KEYS or key in secret_keys or bool(SECRET_NAME_RE.search(key))


def _environment_items(line: str) -> tuple[list[re.Match[str]], int]:
    """The KEY=value items of an environment line's value (no line break), and where parsing stopped."""
    items: list[re.Match[str]] = []
    pos = 0
    while pos < len(line):
        match = _ENV_ITEM_RE.match(line, pos)
        if not match:
            break
        items.append(match)
        pos = match.end()
        if not match.group(3):
            break
    return items, pos


def _listed_secret_keys(text: str) -> set[str]:
    """The secret names a file written by this module lists in its comment."""
    for line in text.splitlines():
        if line.startswith(MASKED_NAMES_COMMENT):
            return set(line[len(MASKED_NAMES_COMMENT) :].split(","))
    return set()


def _secret_values(text: str, secret_keys: Collection[str]) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        if line.startswith(ENVIRONMENT_PREFIX):
            items, _end = _environment_items(line[len(ENVIRONMENT_PREFIX) :].rstrip("\r"))
            found.update({m.group(1): m.group(2) for m in items if is_secret_key(m.group(1), secret_keys)})
    return found


def redact_diff(before: str | None, after: str | None, secret_keys: Collection[str] = ()) -> tuple[str, str]:
    """The config before and after for diff mode, secret values masked.

    The value written is escaped for supervisor (``%`` doubled), so masking the option's own
    value (``no_log``) would miss it; and ``before`` holds the previous values, which no
    option names. A secret that changes reads ``******** (changed)`` after, so the diff
    still shows why the file changes. An environment line that does not parse to its end is
    masked from where parsing stopped.
    """
    secret_keys = {*secret_keys, *_listed_secret_keys(before or ""), *_listed_secret_keys(after or "")}
    old = _secret_values(before or "", secret_keys)
    new = _secret_values(after or "", secret_keys)

    def mask_line(line: str, mark_changed: bool) -> str:
        if not line.startswith(ENVIRONMENT_PREFIX):
            return line
        value = line[len(ENVIRONMENT_PREFIX) :].rstrip("\r\n")
        items, end = _environment_items(value)
        parts = []
        for match in items:
            key = match.group(1)
            if is_secret_key(key, secret_keys):
                changed = mark_changed and key in old and old[key] != new.get(key)
                parts.append(f'{key}="{SECRET_MASK}{" (changed)" if changed else ""}"{match.group(3)}')
            else:
                parts.append(match.group(0))
        rest = SECRET_MASK if value[end:] else ""
        return ENVIRONMENT_PREFIX + "".join(parts) + rest + line[len(line.rstrip("\r\n")) :]

    def mask(text: str, mark_changed: bool) -> str:
        return "".join(mask_line(line, mark_changed) for line in text.splitlines(keepends=True))

    return mask(before or "", False), mask(after or "", True)


# --------------------------------------------------------------------------- files


def read_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WorkerConfigError(f"cannot read {path}: {exc}") from exc


def write_atomic(path: str, text: str, mode: int = 0o600) -> None:
    """Write ``text`` to a temporary file beside ``path`` (not matching ``*.conf``), fsync, rename."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise WorkerConfigError(f"config_dir {directory} does not exist: is supervisor installed?")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mutuapix-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise WorkerConfigError(f"cannot write in {directory}: {exc}") from exc
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise WorkerConfigError(f"cannot write {path}: {exc}") from exc


def remove_file(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise WorkerConfigError(f"cannot remove {path}: {exc}") from exc
    return True


def file_mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return None


# --------------------------------------------------------------------------- XML-RPC


class Supervisor:
    """supervisord's XML-RPC API with errors turned into messages a person can act on."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None, timeout: float = 30) -> None:
        self.url = url
        self.timeout = timeout
        self._username = username
        self._password = password
        self._proxy = _memmon.server_proxy(url, username, password, timeout)

    def _socket_path(self) -> str | None:
        if self.url.startswith("unix://"):
            return self.url[len("unix://") :]
        return self.url if self.url.startswith("/") else None

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        proxy = self._proxy
        if timeout is not None:
            proxy = _memmon.server_proxy(self.url, self._username, self._password, timeout)
        try:
            return getattr(proxy.supervisor, method)(*args)
        except xmlrpc.client.Fault as exc:
            raise SupervisorError(
                f"supervisord refused {method}({', '.join(map(repr, args))}): {exc.faultString}"
            ) from exc
        except xmlrpc.client.ProtocolError as exc:
            if exc.errcode == 401:
                raise SupervisorError(
                    f"supervisord at {self.url} refused the credentials: set supervisor_username and "
                    "supervisor_password to the [unix_http_server]/[inet_http_server] username and password"
                ) from exc
            raise SupervisorError(f"supervisord at {self.url} answered HTTP {exc.errcode} {exc.errmsg}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise SupervisorError(self._explain(exc)) from exc

    def _explain(self, exc: BaseException) -> str:
        path = self._socket_path()
        err = getattr(exc, "errno", None)
        if path and err == errno.ENOENT:
            return (
                f"supervisord is not running: its socket {path} does not exist. Start it (systemctl start "
                "supervisor) or set supervisor_url to the socket in [unix_http_server]"
            )
        if err == errno.ECONNREFUSED:
            return (
                f"supervisord is not running: nothing accepts connections at {self.url} (a stale socket after a "
                "crash?). Start it (systemctl start supervisor)"
            )
        if err in (errno.EACCES, errno.EPERM):
            return (
                f"permission denied on supervisord's socket {path or self.url}: run the task with become: true, "
                "or give this user access with chown/chmod in [unix_http_server]"
            )
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return f"supervisord at {self.url} did not answer within {self.timeout} s"
        return f"cannot talk to supervisord at {self.url}: {exc}"

    def reread(self) -> tuple[list[str], list[str], list[str]]:
        """``supervisorctl reread``: (added, changed, removed) group names."""
        added, changed, removed = self.call("reloadConfig")[0]
        return list(added), list(changed), list(removed)

    def processes(self) -> list[dict[str, Any]]:
        return list(self.call("getAllProcessInfo"))

    def loaded_groups(self) -> set[str]:
        return {info["group"] for info in self.processes()}

    def stop_group(self, group: str, stop_timeout: float) -> None:
        """Stop gracefully: stopsignal, then supervisor waits up to stopwaitsecs before SIGKILL."""
        self.call("stopProcessGroup", group, True, timeout=stop_timeout)

    def remove_group(self, group: str) -> None:
        self.call("removeProcessGroup", group)

    def add_group(self, group: str) -> None:
        self.call("addProcessGroup", group)


# --------------------------------------------------------------------------- apply


@dataclass
class Plan:
    """Which groups are added, removed and restarted."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "restarted": self.restarted}

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.restarted)


def predict(loaded: set[str], groups: list[str], stale_groups: list[str], changed_groups: Collection[str]) -> Plan:
    """Check mode: what apply would do, from the loaded groups and the groups whose section changes."""
    plan = Plan()
    for group in groups:
        if group not in loaded:
            plan.added.append(group)
        elif group in changed_groups:
            plan.restarted.append(group)
    plan.removed = [g for g in stale_groups if g in loaded]
    return plan


def changed_groups(before: str | None, after: str | None) -> set[str]:
    """Groups whose section differs between two versions of the file, as supervisor's ``reread`` sees them.

    A change to the ``[program]`` section restarts the program only, not its listener (and a
    change of the file's mode or comments restarts nothing). A file that does not parse counts
    as every group changed.
    """
    try:
        old, new = _group_sections(before), _group_sections(after)
    except WorkerConfigError:
        return set(_group_sections_lenient(before)) | set(_group_sections_lenient(after))
    return {group for group in set(old) | set(new) if old.get(group) != new.get(group)}


def _group_sections(text: str | None) -> dict[str, dict[str, str]]:
    """``[program:x]`` and ``[eventlistener:x]`` sections by group name."""
    groups = {}
    for section, values in parse_config(text or "").items():
        kind, _sep, name = section.partition(":")
        if kind in ("program", "eventlistener") and name:
            groups[name] = values
    return groups


def _group_sections_lenient(text: str | None) -> list[str]:
    """Group names from section headers, for a file that does not parse."""
    return re.findall(r"^\[(?:program|eventlistener):([^\]]+)\]", text or "", flags=re.MULTILINE)


def apply(client: Supervisor, ours: set[str], present: list[str], stop_timeout: float) -> Plan:
    """``reread`` then ``update``, limited to our groups; changes elsewhere are left for their owners."""
    added, changed, removed = client.reread()
    plan = Plan(
        added=sorted(g for g in added if g in ours),
        removed=sorted(g for g in removed if g in ours),
        restarted=sorted(g for g in changed if g in ours),
    )
    for group in plan.removed:
        client.stop_group(group, stop_timeout)
        client.remove_group(group)
    for group in plan.restarted:
        client.stop_group(group, stop_timeout)
        client.remove_group(group)
        client.add_group(group)
    for group in plan.added:
        client.add_group(group)
    missing = [g for g in present if g not in plan.added and g not in client.loaded_groups()]
    if missing:
        raise SupervisorError(
            f"supervisord does not load {', '.join(missing)} after rereading its configuration: does its [include] "
            "files= cover config_dir? (Debian: files = /etc/supervisor/conf.d/*.conf)"
        )
    return plan


def process_report(client: Supervisor, group: str) -> list[dict[str, Any]]:
    """name, state, pid, rss_mb and uptime_s of each process of the group."""
    report = []
    for info in client.processes():
        if info.get("group") != group:
            continue
        running = info.get("statename") == "RUNNING"
        pid = int(info.get("pid") or 0)
        report.append(
            {
                "name": f"{group}:{info['name']}",
                "state": info.get("statename"),
                "pid": pid or None,
                "rss_mb": _memmon.rss_mb(pid) if running and pid else None,
                "uptime_s": int(info["now"] - info["start"]) if running and info.get("start") else None,
            }
        )
    return sorted(report, key=lambda p: p["name"])


def wait_until_running(client: Supervisor, group: str, numprocs: int, timeout: float = 15) -> list[dict[str, Any]]:
    """The group's processes once they have left STARTING (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    report = process_report(client, group)
    while time.monotonic() < deadline:
        if len(report) >= numprocs and all(p["state"] != "STARTING" for p in report):
            break
        time.sleep(0.3)
        report = process_report(client, group)
    return report


# --------------------------------------------------------------------------- converge

CONFIG_MODE = 0o600
LISTENER_MODE = 0o755


@dataclass
class Target:
    """Where the program's files live and how to reach supervisord."""

    name: str
    config_path: str
    listener_path: str
    listener_source: str | None
    apply: bool
    stop_timeout: float
    call_timeout: float
    secret_env_keys: frozenset[str] = frozenset()


def converge(client: Supervisor, spec: WorkerSpec | None, target: Target, check_mode: bool) -> dict[str, Any]:
    """Bring the config file, the listener script and supervisord to ``spec`` (None: absent).

    supervisord is queried before anything is written, so an unreachable one leaves no
    half-applied change. Check mode only reads and predicts.
    """
    after = render_config(spec) if spec else None
    if spec is not None and after is not None:
        check_round_trip(spec, after)
    before = read_file(target.config_path)
    file_changed = before != after or (after is not None and file_mode(target.config_path) != CONFIG_MODE)
    listener_changed = bool(
        spec
        and spec.hard_memory_mb
        and (
            read_file(target.listener_path) != target.listener_source
            or file_mode(target.listener_path) != LISTENER_MODE
        )
    )
    listener_group = target.name + LISTENER_SUFFIX
    ours = {target.name, listener_group}
    present = spec.groups if spec else []
    loaded = client.loaded_groups() if target.apply else set()
    plan = Plan()
    if check_mode:
        if target.apply:
            plan = predict(loaded, present, sorted(ours - set(present)), changed_groups(before, after))
            if (
                listener_group in present
                and listener_group in loaded
                and listener_group not in plan.restarted
                and (listener_changed or listener_outdated(client, listener_group, target.listener_path))
            ):
                plan.restarted.append(listener_group)
    else:
        _write_files(target, after, file_changed, listener_changed)
        if target.apply:
            plan = apply(client, ours, present, target.stop_timeout)
            if (
                listener_group in present
                and listener_group not in plan.added + plan.restarted
                and (listener_changed or listener_outdated(client, listener_group, target.listener_path))
            ):
                # the listener runs an older script than the one installed: restart it to load the new code
                client.stop_group(listener_group, target.call_timeout)
                client.remove_group(listener_group)
                client.add_group(listener_group)
                plan.restarted.append(listener_group)
    processes: list[dict[str, Any]] = []
    if spec is not None and target.apply and not check_mode:
        processes = wait_until_running(client, spec.name, spec.numprocs, timeout=0 if plan.empty else 15)
    diff_before, diff_after = redact_diff(before, after, target.secret_env_keys)
    return {
        "changed": file_changed or listener_changed or not plan.empty,
        "diff": {
            "before": diff_before,
            "after": diff_after,
            "before_header": target.config_path,
            "after_header": target.config_path,
        },
        "applied": plan.to_dict(),
        "processes": processes,
    }


def listener_outdated(client: Supervisor, group: str, script: str) -> bool:
    """Whether the listener of ``group`` runs an older script than ``script``: it started before the file was written.

    Programs share one listener script (the default ``listener_path``): the run that installs a
    new version restarts its own listener, and finds the file changed; the other programs' runs
    find it current, while their listeners still run the code they loaded when they started.
    """
    try:
        written = int(os.stat(script).st_mtime)  # supervisor reports whole seconds
    except OSError:
        return False
    if written > time.time():
        return False  # written while the clock was ahead: every start would look older, every run restart it
    return any(
        info.get("group") == group and info.get("statename") == "RUNNING" and 0 < int(info.get("start") or 0) < written
        for info in client.processes()
    )


def _write_files(target: Target, after: str | None, file_changed: bool, listener_changed: bool) -> None:
    if listener_changed and target.listener_source is not None:
        try:
            os.makedirs(os.path.dirname(target.listener_path), mode=0o755, exist_ok=True)
        except OSError as exc:
            raise WorkerConfigError(f"cannot create the directory of {target.listener_path}: {exc}") from exc
        write_atomic(target.listener_path, target.listener_source, LISTENER_MODE)
    if after is not None and file_changed:
        write_atomic(target.config_path, after, CONFIG_MODE)
    elif after is None:
        remove_file(target.config_path)
