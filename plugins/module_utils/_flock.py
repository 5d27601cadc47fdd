# Copyright: (c) 2026, MutuaPix ops team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Waiting for an exclusive ``flock`` with a deadline (private API)."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Callable


def wait_for_flock(fd: int, timeout: float, interval: float = 0.05) -> bool:
    """Take an exclusive flock on ``fd``, trying until ``timeout`` seconds have passed.

    Returns False when another open file description still holds it then. The lock is
    released when ``fd`` is closed (also by a process that dies holding it).
    """
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)


def remove_if_unlocked(path: str) -> bool:
    """Remove the file ``path`` unless a live process holds an flock on it (its writer).

    For the temporary files of killed runs: a run holds its file's lock until it ends, and
    the kernel releases it when the run dies. Symbolic links are never followed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(path)
    except OSError:
        return False  # its run is alive, or the file went meanwhile
    finally:
        os.close(fd)
    return True


def remove_stale_files(directory: str, min_age_s: Callable[[str], float | None]) -> list[str]:
    """Remove the files of killed runs in ``directory``: the paths removed, in name order.

    ``min_age_s(name)`` is None for a name that is not such a file, else how long after its last
    change it may go. Only this account's regular files are considered, and only unlocked ones.
    """
    removed: list[str] = []
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return removed
    for entry in entries:
        min_age = min_age_s(entry.name)
        if min_age is None:
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or time.time() - info.st_mtime < min_age:
            continue
        if remove_if_unlocked(entry.path):
            removed.append(entry.path)
    return removed
