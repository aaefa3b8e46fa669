"""docs/security.md stays true: its rules are the code's, its tests exist."""

from __future__ import annotations

import pathlib
import re

from notifyq import access

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "security.md").read_text()


def test_the_documented_rules_are_the_rules() -> None:
    """Each role's rules appear, on a line of their own, as ``access.rules`` writes them."""
    lines = DOC.splitlines()
    for role in access.ROLES:
        assert access.rules(role) in lines, role


def test_every_test_the_security_table_names_exists() -> None:
    table = DOC.split("## Security tests", 1)[1]
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", table)
    assert len(named) > 30
    for path, name in named:
        source = (ROOT / path).read_text()
        assert re.search(rf"^(async )?def {name}\(", source, re.MULTILINE), f"{path}::{name}"
