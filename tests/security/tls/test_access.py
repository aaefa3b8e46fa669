"""The ACL rules of each role (``notifyq.access``): complete, checked, and as documented.

A role's rules must hold every command it can send, its scripts' commands included (the
end-to-end tests in test_tls_acl.py run each role under exactly these rules); the check a
worker, listener or gateway makes at start must name any one of them that is missing.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from notifyq import access, scripts
from notifyq.connection import Backend
from notifyq.errors import AccessDenied, ValidationError
from notifyq.keys import QueueKeys

from .conftest import MakeUser

ROOT = pathlib.Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "notifyq"

CHECKED = [role for role in access.ROLES if access.ROLES[role].scripts]  # checked at start
EVERY_COMMAND = [(role, command) for role in CHECKED for command in access.commands(role)]


@pytest.mark.parametrize("role", list(access.ROLES))
def test_the_full_rules_of_a_role_pass_its_check(user: MakeUser, name: str, role: str) -> None:
    url = user(role)
    Backend(url).run(access.check([role], [QueueKeys(name)], url))


@pytest.mark.parametrize(("role", "command"), EVERY_COMMAND)
def test_the_check_names_any_one_command_missing(
    user: MakeUser, name: str, role: str, command: str
) -> None:
    url = user(role, drop=(command,))
    with pytest.raises(AccessDenied) as refused:
        Backend(url).run(access.check([role], [QueueKeys(name)], url))
    message = str(refused.value)
    # the check lists it; or, for the check's own EVALSHA (or EVAL, when the server has not
    # cached the script yet), the server's refusal names it
    listed, named = f"+{command} on nq:{{{name}}}:*", f"'{command}'"
    assert listed in message or (command in ("eval", "evalsha") and named in message), message


@pytest.mark.parametrize("role", CHECKED)
def test_rules_for_one_queue_are_refused_on_another(user: MakeUser, name: str, role: str) -> None:
    url = user(rules=access.rules(role, queue=name))
    backend = Backend(url)
    backend.run(access.check([role], [QueueKeys(name)], url))
    with pytest.raises(AccessDenied) as refused:
        backend.run(access.check([role], [QueueKeys(f"{name}-x")], url))
    keyless = {"ping", "time", "client|setname", "wait", "info", "config|get"}
    keyed = set(access.commands(role)) - keyless
    shown = set(re.findall(r"\+([a-z|]+) on ", str(refused.value)))
    # every command with a key or channel is refused, but UNSUBSCRIBE (no rule for it)
    assert shown == keyed - {"unsubscribe"}, shown ^ keyed


def test_rules_as_acl_setuser_takes_them() -> None:
    assert access.rules("listener") == (
        "resetkeys ~nq:* resetchannels -@all +client|setname +hget +ping +xread +xrevrange"
    )
    assert access.rules("worker", queue="orders").startswith(
        "resetkeys ~nq:{orders}:* resetchannels &nq:{orders}:* -@all +blpop "
    )
    with pytest.raises(ValidationError, match="unknown role"):
        access.rules("janitor")


# ---------------------------------------------------------------- nothing escapes the rules


def test_every_command_a_script_calls_is_seen() -> None:
    """``Script.commands`` reads commands from the Lua source: every call must name its
    command as a literal (or the prelude's ``PUBLISH``, ``SPUBLISH`` in the cluster
    flavour), or a role's rules could miss it."""
    named = r"(?:redis\.p?call\(|pcall\(redis\.call,)\s*(?:'\w+'|PUBLISH,)"
    for script in scripts.ALL:
        calls = re.findall(r"redis\.p?call\(|pcall\(redis\.call,", script.source)
        assert len(calls) == len(re.findall(named, script.source)), script.name
    assert "publish" in scripts.SETTLE.commands
    assert scripts.SETTLE.sharded is not None
    assert "spublish" in scripts.SETTLE.sharded.commands
    assert scripts.JOIN_GROUP.commands == {"xgroup|create", "xgroup|setid", "xinfo|stream"}
    assert "xadd" in scripts.SETTLE.commands  # through the prelude's finish() and emit()
    assert scripts.SNAPSHOT.commands == {"get", "hgetall", "xrevrange"}


def test_every_command_notifyq_sends_belongs_to_a_role() -> None:
    """Each ``Command("NAME", ...)`` in the package is in some role's rules."""
    allowed = set().union(*(access.commands(role) for role in access.ROLES))
    sent = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "id", getattr(node.func, "attr", "")) == "Command"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and node.args[0].value.isupper()
            ):
                words = [a.value for a in node.args[:2] if isinstance(a, ast.Constant)]
                name = words[0].lower()
                if name in ("xinfo", "xgroup", "client", "cluster", "config") and len(words) > 1:
                    name += f"|{str(words[1]).lower()}"
                sent.add(name)
    assert sent, "no Command(...) found"
    assert sent <= allowed, sorted(sent - allowed)
