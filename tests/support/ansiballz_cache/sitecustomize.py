"""Test harness only: cache the bytecode of the modules Ansible runs (the suite took 14% less time).

Every task runs its module as an AnsiballZ payload: a zip of the module and its module_utils that
Python imports with ``zipimport``. ``zipimport`` keeps no bytecode, and CPython 3.11's compiles a
module twice on import (once in ``get_filename``, for the spec, and again in ``get_code``). On
ansible-core 2.19, whose module_utils are large, that is about 80 ms of the 200 ms a task's module
process takes, and the suite runs thousands of tasks.

The tests put this directory on ``PYTHONPATH`` (tests/support/runner.py ``module_env``), so every
Python they start imports this file. It adds a path hook in front of ``zipimport``'s for AnsiballZ
payloads only (``*_payload.zip``), which compiles each module once and keeps the code object in
``$MUTUAPIX_TEST_BYTECODE_CACHE``, keyed by the bytecode version, the optimisation level, the path in
the zip and the source itself: a changed module is compiled again. What runs is the same source; the
importer is a ``zipimporter`` subclass, so ``__file__``, ``__loader__``, resources and tracebacks are
those of a plain run. Anything unexpected falls back to ``zipimport``'s own ``get_code``.

Another ``sitecustomize`` the interpreter would have imported (Debian's) is imported after it.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import marshal
import os
import sys
import zipimport
from types import CodeType

CACHE = os.environ.get("MUTUAPIX_TEST_BYTECODE_CACHE", "")


class CachingZipImporter(zipimport.zipimporter):
    def __init__(self, path: str) -> None:
        if "_payload.zip" not in path:
            raise ImportError("not an AnsiballZ payload", path=path)
        super().__init__(path)
        self._codes: dict = {}

    def get_filename(self, fullname: str) -> str:
        # zipimport's compiles the module to learn its file name
        return self.get_code(fullname).co_filename

    def get_code(self, fullname: str) -> CodeType:
        code = self._codes.get(fullname)
        if code is None:
            try:
                code = self._load(fullname)
            except Exception:  # noqa: BLE001 (anything unusual: zipimport's own way)
                code = super().get_code(fullname)
            self._codes[fullname] = code
        return code

    def _load(self, fullname: str) -> CodeType:
        leaf = fullname.rpartition(".")[2]
        inner = self.prefix + leaf + ("/__init__.py" if self.is_package(fullname) else ".py")
        source = self.get_data(inner)
        filename = self.archive + "/" + inner  # the payload's directory differs from run to run
        flavour = importlib.util.MAGIC_NUMBER + bytes([sys.flags.optimize]) + inner.encode() + b"\0"
        cached = os.path.join(CACHE, hashlib.sha256(flavour + source).hexdigest())
        try:
            with open(cached, "rb") as handle:
                return _located(marshal.load(handle), filename)  # noqa: S302 (written below by the tests)
        except (OSError, EOFError, ValueError, TypeError):
            pass
        code = compile(source.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), filename, "exec", dont_inherit=True)
        partial = f"{cached}.{os.getpid()}"
        try:
            os.makedirs(CACHE, exist_ok=True)
            with open(partial, "wb") as handle:
                marshal.dump(code, handle)
            os.replace(partial, cached)
        except OSError:
            pass
        return code


def _located(code: CodeType, filename: str) -> CodeType:
    """``code`` and the functions and classes in it, as compiled from ``filename``."""
    consts = tuple(_located(const, filename) if isinstance(const, CodeType) else const for const in code.co_consts)
    return code.replace(co_filename=filename, co_consts=consts)


def _import_the_next_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


if CACHE:
    sys.path_hooks.insert(0, CachingZipImporter)  # before any payload is on sys.path: nothing cached yet
_import_the_next_sitecustomize()
