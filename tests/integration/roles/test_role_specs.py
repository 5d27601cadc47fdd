"""Every role validates its input: meta/argument_specs.yml has exactly the keys of defaults/main.yml."""

from __future__ import annotations

import pytest
import yaml

from tests.support.runner import ROOT

ROLES = ["backup", "rollback"]


@pytest.mark.parametrize("role", ROLES)
def test_argument_specs_match_defaults(role: str) -> None:
    defaults = yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROOT / "roles" / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    for entry_point, spec in specs.items():
        options = spec["options"]
        assert set(options) == set(defaults), (entry_point, set(options) ^ set(defaults))
        for name, value in defaults.items():
            assert options[name].get("default") == value, (entry_point, name)
            assert name.startswith(role + "_"), name
            assert options[name].get("description"), name
            if any(word in name for word in ("password", "application_key", "identity", "key_id")):
                assert options[name].get("no_log") is True, f"{name} is a secret: no_log"
