"""Whoever can write to Redis must not be able to make notifyq run code.

Job payloads, results, events and tokens are JSON (``notifyq.codec``); no module of the
package may even import a serializer that can run code when it loads (pickle, marshal,
shelve, ...) or call the builtins that turn text into code (eval, exec, compile,
__import__); no Lua script may turn a string into code (loadstring, load, dofile,
require). The one import by name, ``importlib.import_module``, loads the handler named on
the ``notifyq worker`` command line, written by the operator, never read from Redis.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "notifyq"

#: Modules whose loading of data can run code.
UNSAFE_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "jsonpickle",
                  "marshal", "shelve", "copyreg"}  # fmt: skip
#: Builtins that turn text into code.
UNSAFE_BUILTINS = {"eval", "exec", "compile", "__import__", "breakpoint"}
#: Where ``importlib.import_module`` may be called: (file, function).
IMPORT_BY_NAME = {("cli.py", "_import_handler")}
#: Lua functions that turn a string into code.
UNSAFE_LUA = re.compile(r"\b(loadstring|load|dofile|loadfile|require)\s*\(")


def findings(source: str, filename: str) -> list[str]:
    """What in ``source`` could turn data into code, one line per finding."""
    found = []
    tree = ast.parse(source, filename)
    functions = {
        child: node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.walk(node)
    }
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where} imports {a.name}" for a in node.names
                      if a.name.split(".")[0] in UNSAFE_MODULES]  # fmt: skip
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in UNSAFE_MODULES:
                found.append(f"{where} imports from {node.module}")
            found += [f"{where} imports {a.name}" for a in node.names
                      if a.name in UNSAFE_BUILTINS]  # fmt: skip
        elif isinstance(node, ast.Name) and node.id in UNSAFE_BUILTINS:
            found.append(f"{where} uses {node.id}")
        elif isinstance(node, ast.Attribute) and node.attr in UNSAFE_BUILTINS | {"import_module"}:
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if node.attr == "import_module":
                if (pathlib.Path(filename).name, functions.get(node)) not in IMPORT_BY_NAME:
                    found.append(f"{where} imports a module by name")
            elif owner in ("builtins", "__builtins__"):
                found.append(f"{where} uses {owner}.{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", "") == "getattr"
            and any(isinstance(a, ast.Constant) and a.value in UNSAFE_BUILTINS for a in node.args)
        ):
            found.append(f"{where} looks up a builtin by name")
    return found


def test_no_module_of_the_package_can_turn_data_into_code() -> None:
    modules = sorted(PACKAGE.rglob("*.py"))
    assert len(modules) > 20  # the whole package, not an empty folder
    found = [f for path in modules for f in findings(path.read_text(), str(path))]
    assert found == []


def test_no_lua_script_turns_a_string_into_code() -> None:
    scripts = sorted((PACKAGE / "scripts").glob("*.lua"))
    assert len(scripts) > 10
    found = [f"{p.name}: {m.group(0)}" for p in scripts for m in UNSAFE_LUA.finditer(p.read_text())]
    assert found == []


@pytest.mark.parametrize(
    "source",
    [
        "import pickle",
        "import marshal as m",
        "from shelve import open",
        "from pickle import loads as safe_looking",
        "eval(data)",
        "exec(data)",
        "f = eval",
        "compile(data, 'x', 'exec')",
        "__import__(name)",
        "import builtins\nbuiltins.exec(data)",
        "getattr(__builtins__, 'eval')(data)",
        "import importlib\ndef load(name):\n    return importlib.import_module(name)",
    ],
)
def test_the_check_itself_finds_what_it_looks_for(source: str) -> None:
    assert findings(source, "somewhere.py")


def test_the_handler_import_of_the_cli_is_the_one_allowed() -> None:
    source = "import importlib\ndef _import_handler(spec):\n    importlib.import_module(spec)\n"
    assert findings(source, "cli.py") == []
    assert findings(source, "worker.py")
