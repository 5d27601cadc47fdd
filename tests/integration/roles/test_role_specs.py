"""Every role validates its input: meta/argument_specs.yml has exactly the keys of defaults/main.yml."""

from __future__ import annotations

import pytest
import yaml

from tests.support.runner import ROOT

ROLES = ["backup", "rollback", "monitoring", "hardening"]


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_match_defaults(role: str) -> None:
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    for entry_point, spec in specs.items():
        options = spec["options"]
        assert set(defaults) <= set(options), (entry_point, set(defaults) - set(options))
        # Keys only in the spec are inputs without defaults: required ones, or optional secrets
        # (no placeholder passwords in defaults/main.yml).
        for name in set(options) - set(defaults):
            assert "default" not in options[name], (entry_point, name)
            assert options[name].get("required") or options[name].get("no_log"), (entry_point, name)
        for name, value in defaults.items():
            assert options[name].get("default") == value, (entry_point, name)
            assert name.startswith(role + "_"), name
            assert options[name].get("description"), name
            secret_words = ("password", "application_key", "identity", "key_id")
            if any(word in name for word in secret_words) and not name.endswith(("_min_length", "_file", "_path")):
                assert options[name].get("no_log") is True, f"{name} is a secret: no_log"
