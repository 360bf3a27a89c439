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


def test_arrows_point_down_from_the_dispatcher_to_the_jobs_to_the_shared_pieces():
    graph = import_graph()
    above_jobs = {"experiments.pipeline", "experiments.__main__", "experiments.summary", "experiments.report"}
    for module, imports in graph.items():
        if module.startswith("experiments.jobs."):
            assert not imports & above_jobs, f"{module} imports {imports & above_jobs}"
            others = {m for m in imports if m.startswith("experiments.jobs.")}
            assert not others, f"a job kind stands alone: {module} imports {others}"
        if not module.startswith(("experiments.jobs", "experiments.pipeline", "experiments.summary",
                                  "experiments.report", "experiments.__main__")):
            assert not any(m.startswith("experiments.jobs") for m in imports), f"{module} reaches up into the jobs"


def test_the_entry_point_and_sweep_naming_import_no_torch():
    code = "import sys, experiments.__main__; print(sorted(m for m in ('torch', 'pytorch_lightning') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_kind_is_one_module_and_one_config_file():
    kinds = {p.stem for p in (SRC / "experiments" / "jobs").glob("*.py") if p.stem != "__init__"}
    tasks = {p.stem for p in (SRC.parent / "conf" / "task").glob("*.yaml")}
    assert kinds == tasks == {"cluster", "classify", "lista", "deblur"}
    for name in kinds:  # nothing else names them: no registry to edit
        for module in MODULES:
            if module.startswith("experiments.jobs"):
                continue
            text = (SRC / Path(*module.split("."))).with_suffix(".py")
            text = text if text.exists() else SRC / Path(*module.split(".")) / "__init__.py"
            tree = ast.parse(text.read_text())
            assert not any(isinstance(n, ast.Constant) and n.value == f"experiments.jobs.{name}" for n in ast.walk(tree))


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
