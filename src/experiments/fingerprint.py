"""Short hashes that say what made a result: its settings (`settings_key`) and its code (`code_version`).

A cached model, a partial checkpoint and a finished job's results.json carry both, so that a change to
either makes the same command compute again instead of reusing what the old code made.

The code's granularity is the module: `code_version("experiments.models.autoencoder", ...)` hashes those
modules and every module of this package they import, followed to the end. A fix to the autoencoder, to
the conv arithmetic it imports or to the training loop changes it; a fix to a plot or to another model
does not. Comments, docstrings and formatting are left out (the hash is of the syntax tree), so editing
an explanation never throws away a week of sweeps.

Your own code counts as this package's does: a model of yours named by `model._target_=my_package.MyEncoder` is
hashed with the modules of yours it imports. What is installed as a library (site-packages) or comes with Python
is not: a library's version is not the code of this project.

This module imports nothing heavy: `python -m experiments --help` uses it through `resume.py`.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
import sysconfig
from functools import cache
from pathlib import Path
from typing import Any

PACKAGE = "experiments"
# Where Python's own modules and installed libraries live: modules there are not project code.
LIBRARY_ROOTS = tuple({Path(sysconfig.get_paths()[key]).resolve()
                       for key in ("stdlib", "platstdlib", "purelib", "platlib")})


def settings_key(parts: dict[str, Any]) -> str:
    """A short hash of plain config values (dicts, lists, numbers, strings), independent of key order."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def code_version(*modules: str) -> str:
    """A short hash of the code of `modules` (dotted names; names outside this package are ignored) and
    of every module of this package that they import, directly or not."""
    names = sorted(set().union(*(package_imports_closure(m) for m in modules if source_path(m) is not None)))
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + code_digest(name).encode() + b"\0")
    return digest.hexdigest()[:12]


def in_package(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def module_of_target(target: str) -> str:
    """The module that defines a Hydra `_target_` (`experiments.models.mlp.MLPClassifier` -> its module)."""
    parts = target.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        if source_path(name) is not None:
            return name
    return target


@cache
def source_path(module: str) -> Path | None:
    """The source file of a module of this project: of this package, or of the user's own code (not a library's,
    not Python's). Finding a submodule imports its parents, so a library's is ruled out by its top-level name."""
    if not module or (not in_package(module) and not is_project_code(module.split(".")[0])):
        return None
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec is not None and spec.origin and spec.origin.endswith(".py") else None


@cache
def is_project_code(top_level: str) -> bool:
    """Whether a top-level module or package is the user's own code: found, from a .py source, outside the
    library roots."""
    if top_level in sys.builtin_module_names:
        return False
    try:
        spec = importlib.util.find_spec(top_level)
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return False
    origin = Path(spec.origin).resolve()
    return not any(origin.is_relative_to(root) for root in LIBRARY_ROOTS)


@cache
def parsed(module: str) -> ast.Module:
    path = source_path(module)
    assert path is not None, f"{module} is not a module of {PACKAGE}"
    return ast.parse(path.read_text(), filename=str(path))


@cache
def code_digest(module: str) -> str:
    """The hash of one module's syntax tree, without its docstrings."""
    path = source_path(module)
    tree = ast.parse(path.read_text(), filename=str(path))  # a fresh tree: the docstrings are cut from it
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def package_imports(module: str) -> set[str]:
    """The modules of this package that `module` imports (at any depth of its code, lazily or not)."""
    found: set[str] = set()
    is_package = source_path(module) is not None and source_path(module).name == "__init__.py"
    here = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(parsed(module)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from .y import z
                parent = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from experiments import plots`
    return {name for name in found if source_path(name) is not None and name != module}


@cache
def package_imports_closure(module: str) -> frozenset[str]:
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen or source_path(name) is None:
            continue
        seen.add(name)
        todo += package_imports(name)
        parent = name.rpartition(".")[0]
        if parent:  # importing a.b runs a/__init__.py first
            todo.append(parent)
    return frozenset(seen)
