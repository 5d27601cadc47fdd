"""mysql_backup's interface: documented options match the argument spec; input refused before any connection."""

from __future__ import annotations

import yaml

from ansible_collections.mutuapix.ops.plugins.doc_fragments.mysql import ModuleDocFragment
from ansible_collections.mutuapix.ops.plugins.module_utils._mysql import mysql_common_argument_spec
from ansible_collections.mutuapix.ops.plugins.modules import mysql_backup
from tests.support.runner import run_module


def test_documented_options_match_argument_spec():
    doc = yaml.safe_load(mysql_backup.DOCUMENTATION)
    fragment = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)
    documented = set(doc["options"]) | set(fragment["options"])
    spec = mysql_backup.argument_spec()
    spec.update(mysql_common_argument_spec())
    assert documented == set(spec)
    for name, option in doc["options"].items():
        assert option.get("description"), name
        assert option.get("type") == spec[name].get("type", "str"), name
        if "default" in spec[name] and spec[name]["default"] is not None:
            assert option.get("default") == spec[name]["default"], name


def test_return_keys_documented():
    returned = yaml.safe_load(mysql_backup.RETURN)
    for key in (
        "path",
        "manifest_path",
        "size",
        "uncompressed_size",
        "sha256",
        "tables",
        "duration_s",
        "compression",
        "encrypted",
        "server_version",
        "binlog",
        "retention_deleted",
    ):
        assert key in returned, key
        assert returned[key].get("returned") and "sample" in returned[key], key


def test_examples_are_yaml_with_fqcn():
    examples = yaml.safe_load(mysql_backup.EXAMPLES)
    text = mysql_backup.EXAMPLES
    assert examples and "mutuapix.ops.mysql_backup:" in text


def test_invalid_input_refused_without_a_server(tmp_path):
    """No server is listening on this socket: each refusal must come before any connection attempt."""
    base = {"login_unix_socket": str(tmp_path / "none.sock"), "config_file": str(tmp_path / "c.cnf"), "database": "app"}
    (tmp_path / "c.cnf").write_text("[client]\n")
    cases = [
        ({"dest": "relative"}, "absolute path"),
        ({"dest": str(tmp_path), "label": "a b"}, "label"),
        ({"dest": str(tmp_path), "encrypt_recipients": ["age1xyz"]}, "invalid age recipient"),
        ({"dest": str(tmp_path), "extra_dump_args": ["--password=x"]}, "may not contain --password"),
        ({"dest": str(tmp_path), "keep_last": -1}, "keep_last must be 0 or more"),
        ({"dest": str(tmp_path), "chunk_size": "lots"}, "chunk_size"),
        ({"dest": str(tmp_path), "mode": "rw"}, "octal"),
        # zlib refused it only once the file was open: a traceback instead of a message
        ({"dest": str(tmp_path), "compression": "gzip", "compression_level": 19}, "no gzip level"),
        ({"dest": str(tmp_path), "database": "a\nb"}, "line break"),
    ]
    for extra, message in cases:
        result = run_module("mysql_backup", dict(base, **extra))
        assert result.failed, extra
        assert message in result["msg"], (extra, result["msg"])
        assert "cannot connect" not in result["msg"]
