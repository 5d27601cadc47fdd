#!/usr/bin/python
# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: supervisor_worker_limits
short_description: Supervisor programs for Laravel queue workers with memory limits and consistent timeouts
version_added: 0.1.0
description:
  - Writes one supervisor config file per worker program, C(<config_dir>/<name><config_suffix>), and applies it through
    supervisord's XML-RPC API the way C(supervisorctl reread) and C(update) would, limited to the groups the file
    defines - a new group is added, a deleted one removed, a changed one stopped gracefully (SIGTERM, then up to
    O(stopwaitsecs)) and started again. Other programs keep running untouched.
  - Runs C(php artisan queue:work) with the soft memory limit O(memory_mb) (the worker exits cleanly between jobs
    once above it) or any O(command).
  - With O(hard_memory_mb), an event listener (group C(<name>_memlimit)) checks the resident memory of every
    worker process (and its children) every 5 seconds and restarts, gracefully, one that is above the limit. This
    catches a job that leaks inside one job, which the soft limit never sees. The listener is a small Python script
    the module installs at O(listener_path); it needs only Python's standard library.
  - Refuses inconsistent timeouts, saying why. O(timeout_s) must be below the queue connection's O(retry_after_s)
    (otherwise a slow job is handed to a second worker and runs twice), and O(stopwaitsecs) above O(timeout_s)
    (otherwise supervisor kills a worker in the middle of a job it was allowed to finish).
  - The file is rendered, parsed back and compared with the intent, then written to a temporary file, fsynced and
    renamed into place with mode 0600 (it may hold environment values).
options:
  name:
    description:
      - Supervisor program name (also the process group name). Letters, digits, C(_), C(.) and C(-).
    type: str
    required: true
  state:
    description:
      - C(absent) stops the program gracefully, removes it from supervisord and deletes its config file.
    type: str
    choices: [present, absent]
    default: present
  command:
    description:
      - The worker command as a list of arguments, instead of the Laravel form (O(app_path) and friends).
    type: list
    elements: str
  app_path:
    description:
      - Laravel application directory (holding C(artisan)); runs C(php artisan queue:work) there.
    type: path
  php:
    description:
      - PHP binary for the Laravel form.
    type: str
    default: php
  connection:
    description:
      - Queue connection name passed to C(queue:work) (the default connection when omitted).
    type: str
  queues:
    description:
      - Queues to work, in priority order (C(--queue)).
    type: list
    elements: str
    default: [default]
  sleep:
    description:
      - Seconds to sleep when no job is available (C(--sleep)).
    type: int
    default: 3
  tries:
    description:
      - Attempts before a job is marked failed (C(--tries)).
    type: int
    default: 3
  max_time_s:
    description:
      - The worker exits after this many seconds, so supervisor restarts it fresh (C(--max-time)). C(0) disables.
    type: int
    default: 3600
  max_jobs:
    description:
      - The worker exits after this many jobs (C(--max-jobs)). C(0) disables.
    type: int
    default: 0
  timeout_s:
    description:
      - Longest a job may run (C(--timeout)). Must be below O(retry_after_s).
    type: int
    default: 60
  memory_mb:
    description:
      - Soft memory limit of the Laravel worker (C(--memory)); the worker exits between jobs above it.
      - Defaults to 512 in the Laravel form; not used with O(command).
    type: int
  retry_after_s:
    description:
      - The queue connection's C(retry_after) (C(config/queue.php)); O(timeout_s) must be below it.
    type: int
    default: 90
  stopwaitsecs:
    description:
      - Seconds supervisor waits after SIGTERM before SIGKILL. Must be above O(timeout_s) so a running job can
        finish. Defaults to O(timeout_s) + 30.
    type: int
  numprocs:
    description:
      - Number of worker processes.
    type: int
    default: 1
  user:
    description:
      - Unix user the workers run as (needs supervisord running as root).
    type: str
  directory:
    description:
      - Working directory of the workers. Defaults to O(app_path).
    type: path
  environment:
    description:
      - Extra environment variables of the workers. Values must not contain double quotes or line breaks.
      - These values appear in the task's results (C(invocation)) and logs. Give secrets in
        O(secret_environment); a name here that looks like a secret's (C(PASS), C(SECRET), C(TOKEN), C(KEY),
        C(CREDENTIAL), C(PRIVATE), C(AUTH), C(DSN)) draws a warning, and its value is masked in the diff.
    type: dict
    default: {}
  secret_environment:
    description:
      - Environment variables of the workers whose values are secrets (C(DB_PASSWORD), API tokens), for
        example from Ansible Vault. They are written to the 0600 config file like O(environment), and are
        never shown - not in results, logs or the diff (C(********), C(******** (changed)) when one changes).
      - A name may not be in both O(environment) and O(secret_environment).
    type: dict
    default: {}
  log_file:
    description:
      - Log file of the workers (stdout and stderr). Defaults to C(/var/log/supervisor/<name>.log).
    type: path
  log_max_mb:
    description:
      - Size at which the log file is rotated, in MB.
    type: int
    default: 50
  log_backups:
    description:
      - Rotated log files kept.
    type: int
    default: 5
  hard_memory_mb:
    description:
      - Hard memory limit per worker process, in MB of resident memory (process plus children). A worker above it
        is noticed within about 5 seconds, asked to stop (SIGTERM), killed if still running after
        O(hard_memory_grace_s), and started again. Must be above O(memory_mb).
      - Omit to run without the listener. See O(hard_memory_grace_s).
    type: int
  hard_memory_grace_s:
    description:
      - Seconds a worker above O(hard_memory_mb) gets, after SIGTERM, to finish its job before the listener kills
        its process group (SIGKILL) and starts it again. A leaking job keeps leaking while it finishes, so this is
        deliberately shorter than O(stopwaitsecs); the killed job is retried after O(retry_after_s), as after a
        crash. The worst case from crossing the limit to a new worker is about 5 s plus this value.
    type: int
    default: 30
  listener_path:
    description:
      - Where the hard memory limit listener script is installed (mode 0755).
      - Several programs may share it. A listener that started before the script was last written (a new
        release installed by another program's run) is restarted, so it loads the new code; its workers keep
        running.
    type: path
    default: /usr/local/lib/mutuapix-ops/memlimit.py
  listener_python:
    description:
      - Python interpreter that runs the listener. Defaults to the interpreter running this module.
    type: path
  config_dir:
    description:
      - Directory supervisord includes program files from.
    type: path
    default: /etc/supervisor/conf.d
  config_suffix:
    description:
      - Suffix of the program file, matching supervisord's C([include] files=) pattern. Debian and Ubuntu include
        C(/etc/supervisor/conf.d/*.conf); RHEL and its rebuilds include C(/etc/supervisord.d/*.ini).
    type: str
    default: .conf
  supervisor_url:
    description:
      - supervisord's XML-RPC endpoint, C(unix:///path/to.sock) or C(http://host:port).
      - Give the credentials in O(supervisor_username) and O(supervisor_password). A password written into
        the URL (C(http://user:pass@host:9001)) works too and is masked in results and errors like
        O(supervisor_password), but the memory listener does not get it.
    type: str
    default: unix:///var/run/supervisor.sock
  supervisor_username:
    description:
      - Username of supervisord's C([unix_http_server]) or C([inet_http_server]), when it sets one.
    type: str
  supervisor_password:
    description:
      - Password of O(supervisor_username). Also given to the listener through its environment.
    type: str
  supervisor_timeout:
    description:
      - Seconds to wait for supervisord on ordinary calls (graceful stops wait O(stopwaitsecs) more).
    type: int
    default: 30
  apply:
    description:
      - Apply the change to the running supervisord. With C(false) only the files are written.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    description:
      - Nothing is written and supervisord is only queried; RV(applied) says which groups would be added,
        removed or restarted.
  diff_mode:
    support: full
    description:
      - Shows the config file before and after, with the listener's C(SUPERVISOR_PASSWORD), the values of
        O(secret_environment) and of environment variables named like secrets masked on both sides; a secret
        that changes is marked as changed.
notes:
  - The module must run on the host of supervisord (it reads worker memory from C(/proc) and writes the config
    files there); use C(become) when the socket or C(config_dir) belong to root.
  - In check mode a group whose file is unchanged but whose running config is stale (an earlier run with
    O(apply=false)) is not detected; the real run applies it.
author:
  - MutuaPix ops team (@mutuapix)
"""

EXAMPLES = r"""
- name: Eight payment workers with a soft and a hard memory limit
  mutuapix.ops.supervisor_worker_limits:
    name: queue-payments
    app_path: /var/www/app/current
    php: /usr/bin/php8.2
    connection: database
    queues: [payments, default]
    numprocs: 8
    user: www-data
    timeout_s: 60
    retry_after_s: 90
    memory_mb: 256
    hard_memory_mb: 384
    max_time_s: 3600
    environment:
      APP_ENV: production
    secret_environment:
      PIX_CLIENT_SECRET: "{{ vault_pix_client_secret }}"
  become: true

- name: A non-Laravel worker
  mutuapix.ops.supervisor_worker_limits:
    name: pdf-renderer
    command: [/usr/bin/node, /srv/pdf/worker.js]
    timeout_s: 120
    retry_after_s: 180
    hard_memory_mb: 1024
  become: true

- name: Remove a worker
  mutuapix.ops.supervisor_worker_limits:
    name: queue-legacy
    state: absent
  become: true
"""

RETURN = r"""
config_path:
  description: The program's config file.
  returned: always
  type: str
  sample: /etc/supervisor/conf.d/queue-payments.conf
diff:
  description:
    - The config file before and after (empty strings for a file that does not exist).
    - The listener's C(SUPERVISOR_PASSWORD), the values of O(secret_environment) and of environment variables
      named like secrets are masked, the old ones as well as the new ones.
  returned: always
  type: dict
  sample: {"before": "", "after": "; Managed by mutuapix.ops ...\n[program:queue-payments]\n..."}
applied:
  description: Process groups added, removed and restarted in supervisord (what would be, in check mode).
  returned: always
  type: dict
  contains:
    added:
      description: Groups added (and started).
      type: list
      elements: str
    removed:
      description: Groups stopped gracefully and removed.
      type: list
      elements: str
    restarted:
      description: Groups whose config changed, stopped gracefully and started with the new config.
      type: list
      elements: str
  sample: {"added": ["queue-payments", "queue-payments_memlimit"], "removed": [], "restarted": []}
processes:
  description: The program's processes after the run (empty without O(apply) or with O(state=absent)).
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: C(group:process) name.
      type: str
    state:
      description: supervisor state (C(RUNNING), C(STARTING), C(BACKOFF), C(STOPPED), C(FATAL)...).
      type: str
    pid:
      description: Process id, null when not running.
      type: int
    rss_mb:
      description: Resident memory of the process and its children, MB; null when not running.
      type: float
    uptime_s:
      description: Seconds since the process started; null when not running.
      type: int
  sample: [{"name": "queue-payments:queue-payments_00", "state": "RUNNING", "pid": 4242, "rss_mb": 41.3,
            "uptime_s": 12}]
listener_path:
  description: The hard memory limit listener script (null without O(hard_memory_mb)).
  returned: always
  type: str
  sample: /usr/local/lib/mutuapix-ops/memlimit.py
command:
  description: The worker command line as written to the config file.
  returned: when O(state=present)
  type: list
  elements: str
  sample: [php, /var/www/app/current/artisan, queue:work, database, --queue=payments,default, --sleep=3]
"""

import os
import sys
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mutuapix.ops.plugins.module_utils import _memmon
from ansible_collections.mutuapix.ops.plugins.module_utils._supervisor import (
    Supervisor,
    SupervisorError,
    Target,
    WorkerConfigError,
    WorkerSpec,
    converge,
    escape_value,
    is_secret_key,
    laravel_command,
    parse_config,
    read_file,
    validate_limits,
    validate_name,
    validate_suffix,
)

DEFAULT_MEMORY_MB = 512


def build_spec(p: dict) -> WorkerSpec:
    """The worker program the options describe, after checking its limits agree."""
    name = validate_name(p["name"])
    memory_mb = p["memory_mb"]
    if p["app_path"]:
        memory_mb = memory_mb or DEFAULT_MEMORY_MB
        command = laravel_command(
            php=p["php"],
            app_path=p["app_path"],
            connection=p["connection"],
            queues=p["queues"],
            sleep=p["sleep"],
            tries=p["tries"],
            max_time_s=p["max_time_s"],
            max_jobs=p["max_jobs"],
            timeout_s=p["timeout_s"],
            memory_mb=memory_mb,
        )
    else:
        command = list(p["command"])
    stopwaitsecs = p["stopwaitsecs"] if p["stopwaitsecs"] is not None else p["timeout_s"] + 30
    validate_limits(
        timeout_s=p["timeout_s"],
        retry_after_s=p["retry_after_s"],
        stopwaitsecs=stopwaitsecs,
        memory_mb=memory_mb,
        hard_memory_mb=p["hard_memory_mb"],
        numprocs=p["numprocs"],
        hard_memory_grace_s=p["hard_memory_grace_s"],
    )
    listener_env = {}
    if p["supervisor_username"]:
        listener_env = {
            "SUPERVISOR_USERNAME": p["supervisor_username"],
            "SUPERVISOR_PASSWORD": p["supervisor_password"] or "",
        }
    return WorkerSpec(
        name=name,
        command=command,
        numprocs=p["numprocs"],
        directory=p["directory"] or p["app_path"],
        user=p["user"],
        environment=worker_environment(p),
        secret_keys=tuple(sorted(str(k) for k in p["secret_environment"] or {})),
        stopwaitsecs=stopwaitsecs,
        log_file=p["log_file"] or f"/var/log/supervisor/{name}.log",
        log_max_mb=p["log_max_mb"],
        log_backups=p["log_backups"],
        hard_memory_mb=p["hard_memory_mb"],
        listener_command=[
            p["listener_python"] or sys.executable,
            p["listener_path"],
            "--group",
            name,
            "--limit-mb",
            str(p["hard_memory_mb"]),
            "--grace-s",
            str(p["hard_memory_grace_s"]),
        ]
        if p["hard_memory_mb"]
        else None,
        listener_environment=listener_env,
    )


def worker_environment(p: dict) -> dict[str, str]:
    """O(environment) and O(secret_environment) together; a name in both is refused."""
    plain = {str(k): str(v) for k, v in (p["environment"] or {}).items()}
    secret = {str(k): str(v) for k, v in (p["secret_environment"] or {}).items()}
    both = sorted(set(plain) & set(secret))
    if both:
        raise WorkerConfigError(f"{', '.join(both)} given in both environment and secret_environment")
    return {**plain, **secret}


def listener_source() -> str:
    """This collection's listener script, from the module_utils it is shipped in (AnsiballZ zip or files)."""
    loader = getattr(_memmon, "__loader__", None)
    source = loader.get_source(_memmon.__name__) if loader is not None and hasattr(loader, "get_source") else None
    if not source:
        with open(_memmon.__file__, encoding="utf-8") as handle:
            source = handle.read()
    return source


def stop_timeout(p: dict, before: str | None, name: str) -> float:
    """How long a graceful group stop may take: the larger stopwaitsecs (old or new) plus a margin."""
    waits = [p["stopwaitsecs"] or p["timeout_s"] + 30]
    if before:
        try:
            waits.append(int(parse_config(before).get(f"program:{name}", {}).get("stopwaitsecs", 0)))
        except (WorkerConfigError, ValueError):
            waits.append(600)
    return max(waits) + p["supervisor_timeout"]


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "command": {"type": "list", "elements": "str"},
            "app_path": {"type": "path"},
            "php": {"type": "str", "default": "php"},
            "connection": {"type": "str"},
            "queues": {"type": "list", "elements": "str", "default": ["default"]},
            "sleep": {"type": "int", "default": 3},
            "tries": {"type": "int", "default": 3},
            "max_time_s": {"type": "int", "default": 3600},
            "max_jobs": {"type": "int", "default": 0},
            "timeout_s": {"type": "int", "default": 60},
            "memory_mb": {"type": "int"},
            "retry_after_s": {"type": "int", "default": 90},
            "stopwaitsecs": {"type": "int"},
            "numprocs": {"type": "int", "default": 1},
            "user": {"type": "str"},
            "directory": {"type": "path"},
            "environment": {"type": "dict", "default": {}},
            "secret_environment": {"type": "dict", "default": {}, "no_log": True},
            "log_file": {"type": "path"},
            "log_max_mb": {"type": "int", "default": 50},
            "log_backups": {"type": "int", "default": 5},
            "hard_memory_mb": {"type": "int"},
            "hard_memory_grace_s": {"type": "int", "default": 30},
            "listener_path": {"type": "path", "default": "/usr/local/lib/mutuapix-ops/memlimit.py"},
            "listener_python": {"type": "path"},
            "config_dir": {"type": "path", "default": "/etc/supervisor/conf.d"},
            "config_suffix": {"type": "str", "default": ".conf"},
            "supervisor_url": {"type": "str", "default": "unix:///var/run/supervisor.sock"},
            "supervisor_username": {"type": "str"},
            "supervisor_password": {"type": "str", "no_log": True},
            "supervisor_timeout": {"type": "int", "default": 30},
            "apply": {"type": "bool", "default": True},
        },
        mutually_exclusive=[("command", "app_path")],
        required_if=[("state", "present", ("command", "app_path"), True)],
        supports_check_mode=True,
    )
    p = module.params
    # A password written into the URL (http://user:pass@host:9001) would show in every error naming it
    # and in the task's recorded arguments: masked like supervisor_password.
    url_password = urlsplit(p["supervisor_url"]).password
    if url_password:
        module.no_log_values.add(url_password)
    # The config file holds secrets escaped for supervisor; mask that form in every result too.
    for secret in [p["supervisor_password"], *(p["secret_environment"] or {}).values()]:
        if secret:
            module.no_log_values.add(escape_value(str(secret)))
    for key in sorted(p["environment"] or {}):
        if is_secret_key(str(key)):
            module.warn(
                f"environment {key} looks like a secret: its value shows in the task's results and logs; "
                "give it in secret_environment instead"
            )
    path = os.path.join(p["config_dir"], p["name"] + p["config_suffix"])
    try:
        spec = build_spec(p) if p["state"] == "present" else None
        name = validate_name(p["name"])
        validate_suffix(p["config_suffix"])
        target = Target(
            name=name,
            config_path=path,
            listener_path=p["listener_path"],
            listener_source=listener_source() if spec and spec.hard_memory_mb else None,
            apply=p["apply"],
            stop_timeout=stop_timeout(p, read_file(path), name),
            call_timeout=p["supervisor_timeout"],
            secret_env_keys=frozenset(str(k) for k in p["secret_environment"] or {}),
        )
        client = Supervisor(
            p["supervisor_url"], p["supervisor_username"], p["supervisor_password"], p["supervisor_timeout"]
        )
        result = converge(client, spec, target, module.check_mode)
    except (WorkerConfigError, SupervisorError) as exc:
        module.fail_json(msg=str(exc), config_path=path)
    result["config_path"] = path
    result["listener_path"] = p["listener_path"] if spec and spec.hard_memory_mb else None
    if spec:
        result["command"] = spec.command
    module.exit_json(**result)


if __name__ == "__main__":
    main()
