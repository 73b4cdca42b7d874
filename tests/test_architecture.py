"""The layout keeps its promises: no import cycles anywhere in the package (lazy imports
inside functions included), and every trainer goes through the one run harness."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in (SRC / "dqnlm").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """dqnlm modules that ``path`` imports anywhere (type-checking-only imports excepted)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                name = f"{node.module}.{alias.name}"
                found.add(name if name in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name in modules}


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for nxt in sorted(graph[name]):
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_the_cycle_check_can_fail(tmp_path, monkeypatch):
    """A planted cycle is reported (so the test above is not vacuous)."""
    package = tmp_path / "dqnlm"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from dqnlm.b import x\n")
    (package / "b.py").write_text("def x():\n    from dqnlm.a import y\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="import cycle"):
        test_no_import_cycles()


def test_every_trainer_uses_the_harness_with_one_load_signature():
    from dqnlm.control.dqn import DQN
    from dqnlm.dialogue.dqn import DialogueDQN
    from dqnlm.lm.trainer import LMTrainer
    from dqnlm.run import Trainer

    for cls in (DQN, DialogueDQN, LMTrainer):
        assert issubclass(cls, Trainer)
        assert cls.load.__func__ is Trainer.load.__func__  # not re-implemented
        assert cls.save_checkpoint is Trainer.save_checkpoint
        for method in ("state", "load_state", "finite", "config_from_checkpoint"):
            assert getattr(cls, method) is not getattr(Trainer, method), (cls, method)
        assert "Run(" in inspect.getsource(cls)  # learn opens a Run (directly or via a helper)
    parameters = list(inspect.signature(Trainer.load).parameters)
    assert parameters[:4] == ["run_dir", "device", "trust_code", "replay"]
