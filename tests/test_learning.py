"""Learning tests: tuned configurations that pass every time (CPU, fixed seeds)."""

import ast
import dataclasses
from pathlib import Path

import pytest

from dqnlm import DQN
from dqnlm.control.presets import get_preset

CORE = Path(__file__).resolve().parents[1] / "src" / "dqnlm" / "core"
CORE_MAY_IMPORT = {"torch", "numpy", "safetensors", "dqnlm"}


@pytest.mark.parametrize("seed", [0, 1])
def test_cartpole_preset_solves(seed):
    """The `cartpole` preset reaches eval mean >= 475 over 20 greedy episodes on unseen seeds."""
    preset = get_preset("cartpole")
    config = preset.config()
    agent = DQN(dataclasses.replace(config, seed=seed))
    final = agent.learn(progress=False)
    assert final["episodes"] == 20
    assert final["mean_return"] >= preset.mark, final


def test_core_imports_no_application_code():
    """dqnlm.core depends on torch/numpy/safetensors and the stdlib only."""
    import sys

    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in CORE_MAY_IMPORT or top in sys.stdlib_module_names, (path.name, name)
                if top == "dqnlm":
                    assert name.startswith("dqnlm.core"), (path.name, name)
