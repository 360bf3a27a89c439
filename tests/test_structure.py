"""The layout's promises: no import cycle, jobs below the dispatcher, a light entry point, and code versions
that follow the code a result depends on."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from experiments import fingerprint
from experiments.fingerprint import code_version, package_imports, package_imports_closure

SRC = Path(__file__).resolve().parents[1] / "src"
MODULES = sorted(
    ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__") for p in (SRC / "experiments").rglob("*.py")
)


def import_graph() -> dict[str, set[str]]:
    return {m: package_imports(m) for m in MODULES}


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    for start in MODULES:
        seen, todo = set(), list(graph[start])
        while todo:
            module = todo.pop()
            assert module != start, f"import cycle through {start}"
            if module not in seen:
                seen.add(module)
                todo += graph.get(module, ())


# Above the jobs: what dispatches them. Everything else lies below them, and the sweep's tables need no job at all.
DISPATCH = {"experiments.pipeline", "experiments.__main__", "experiments.callbacks"}


def kind_of(module: str) -> str | None:
    """The job kind a module belongs to (experiments.jobs.cluster.stages -> cluster), None outside the kinds."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["experiments", "jobs"] else None


def test_arrows_point_down_from_the_dispatcher_to_the_jobs_to_the_shared_pieces():
    for module, imports in import_graph().items():
        named_kinds = {m for m in imports if kind_of(m)}
        if kind_of(module):
            assert not imports & DISPATCH, f"{module} imports {imports & DISPATCH}"
            assert all(kind_of(m) == kind_of(module) for m in named_kinds), f"a job kind stands alone: {module}"
        else:  # the dispatcher knows the kinds by name only (experiments.jobs.load): no registry to edit
            assert not named_kinds, f"{module} names a kind's module: {named_kinds}"
            if module not in DISPATCH:
                assert "experiments.jobs" not in imports, f"{module} reaches up into the jobs"
                assert not imports & DISPATCH, f"{module} reaches up into the dispatcher: {imports & DISPATCH}"


def test_the_sweeps_tables_and_the_report_need_neither_the_jobs_nor_torch_nor_wandb():
    graph = import_graph()
    for module in ("experiments.summary", "experiments.report"):
        closure = package_imports_closure(module)
        assert not {m for m in closure if m.startswith("experiments.jobs")} and "experiments.tracking" not in closure
    code = ("import sys, experiments.report; "
            "print(sorted(m for m in ('torch', 'pytorch_lightning', 'wandb') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    assert graph["experiments.report"] == {"experiments.summary"}


def imported_names(module: str) -> set[str]:
    """Every module name an `import` or `from ... import` of `module` names, at any depth of its code."""
    names: set[str] = set()
    for node in ast.walk(fingerprint.parsed(module)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_only_the_tracking_module_imports_wandb():
    importers = {m for m in MODULES if any(n == "wandb" or n.startswith("wandb.") for n in imported_names(m))}
    assert importers == {"experiments.tracking"}


def test_no_private_name_of_scikit_learn_or_umap_learn_is_used():
    for module in MODULES:
        for name in imported_names(module):
            if name.split(".")[0] in ("sklearn", "umap"):
                assert not any(part.startswith("_") for part in name.split(".")), f"{module} imports {name}"
        source = fingerprint.source_path(module).read_text()
        for private in ("_validate_params", "_parameter_constraints", "_validate_parameters", "_raw_data",
                        "_initial_alpha", "_n_features_out"):
            assert private not in source, f"{module} uses {private}"


def test_no_function_is_longer_than_sixty_lines():
    files = [*(SRC / "experiments").rglob("*.py"), *(SRC.parent / "bench").rglob("*.py")]
    long = [f"{path.relative_to(SRC.parent)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in files for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60]
    assert not long, long


def test_the_entry_point_and_sweep_naming_import_no_torch():
    code = "import sys, experiments.__main__; print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_kind_is_one_module_and_one_config_file():
    from omegaconf import OmegaConf

    from experiments import jobs

    kinds = {p.stem if p.suffix else p.name for p in (SRC / "experiments" / "jobs").iterdir()
             if p.name != "__init__.py" and (p.suffix == ".py" or (p / "__init__.py").exists())}
    tasks = {p.stem for p in (SRC.parent / "conf" / "task").glob("*.yaml")}
    assert kinds == tasks == {"cluster", "classify", "lista", "deblur"}
    for name in kinds:  # the task file names its module, which declares itself under that name
        assert OmegaConf.load(SRC.parent / "conf" / "task" / f"{name}.yaml").task.kind == name
        assert jobs.load(name).name == name


def test_the_code_version_follows_the_modules_a_result_imports():
    closure = package_imports_closure("experiments.models.autoencoder")
    assert {"experiments.derivations", "experiments.errors"} <= closure
    assert "experiments.plots" not in closure and "experiments.models.mlp" not in closure
    assert "experiments.training" in package_imports_closure("experiments.jobs.cluster")
    assert code_version("experiments.models.autoencoder") != code_version("experiments.models.mlp")
    assert code_version("experiments.models.autoencoder", "numpy") == code_version("experiments.models.autoencoder")


def test_the_code_version_ignores_docstrings_comments_and_layout_but_not_code(tmp_path, monkeypatch):
    module = tmp_path / "m.py"

    def digest(source: str) -> str:
        module.write_text(source)
        fingerprint.code_digest.cache_clear()
        monkeypatch.setattr(fingerprint, "source_path", lambda name: module)
        return fingerprint.code_digest("experiments.m")

    base = digest('"""Doc."""\ndef f(x):\n    """What f does."""\n    return x + 1\n')
    assert digest('"""Other words."""\n\n\ndef f(x):  # a comment\n    return x + 1\n') == base
    assert digest('def f(x):\n    return x + 2\n') != base
    fingerprint.code_digest.cache_clear()
