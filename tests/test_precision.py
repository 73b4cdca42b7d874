"""bfloat16 training keeps float32 masters (issue 11, B4): Adam steps and resumes exactly."""

from __future__ import annotations

import pytest
import torch

from dqnlm.core.precision import MasterWeights


def adam_steps(weights: MasterWeights | None, param: torch.Tensor, n: int) -> None:
    params = weights.master if weights else [param]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    for _ in range(n):
        optimizer.zero_grad(set_to_none=True)
        (param.float() * torch.tensor([1.0, -1.0, 2.0, -2.0])).sum().backward()
        if weights:
            weights.grads_to_master()
        optimizer.step()
        if weights:
            weights.master_to_model()


def test_small_adam_steps_on_bfloat16_weights_near_one_are_kept():
    # plain bfloat16: each step of 1e-4 is below half an ulp of 1.0 and rounds away
    plain = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    adam_steps(None, plain, 20)
    assert torch.equal(plain.detach(), torch.ones(4, dtype=torch.bfloat16))

    param = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    weights = MasterWeights([param])
    adam_steps(weights, param, 20)
    (master,) = weights.master
    # Adam's first steps are lr * sign(gradient): 20 of them move each weight by 0.002
    expected = torch.tensor([1 - 20e-4, 1 + 20e-4, 1 - 20e-4, 1 + 20e-4])
    assert master.dtype == torch.float32
    assert torch.allclose(master.detach(), expected, atol=1e-5)
    assert torch.equal(param.detach(), master.detach().bfloat16())
    assert not torch.equal(param.detach(), torch.ones(4, dtype=torch.bfloat16))
    assert param.grad is None  # handed to the master


def test_float32_parameters_are_their_own_masters():
    param = torch.nn.Parameter(torch.ones(3))
    weights = MasterWeights([param])
    assert weights.master[0] is param


# --------------------------------------------------------------- the LM trainer in bfloat16
pytest.importorskip("transformers")

from lm_helpers import SMALL_RUN, save_tiny_lm, toy_config, write_prompts  # noqa: E402

from dqnlm.lm.trainer import LMTrainer  # noqa: E402


@pytest.fixture(scope="module")
def bf16_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    model = save_tiny_lm(root / "model")
    prompts = write_prompts(root / "prompts.jsonl", ["a b", "c d e", "f"])

    def make(**overrides):
        return toy_config(model, prompts, **{**SMALL_RUN, "dtype": "bfloat16", **overrides})

    return make


def train(config, run_dir) -> LMTrainer:
    trainer = LMTrainer(config, run_dir, progress=False)
    trainer.learn(progress=False, tensorboard=False)
    return trainer


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert a[name].dtype == torch.float32, name
        assert torch.equal(a[name], b[name]), name


def test_bfloat16_trainer_steps_float32_masters_and_resumes_exactly(bf16_config, tmp_path):
    run, full = tmp_path / "run", tmp_path / "full"
    trainer = train(bf16_config(rounds=2), run)
    assert next(trainer.model.parameters()).dtype == torch.bfloat16
    optimized = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert optimized and all(p.dtype == torch.float32 for p in optimized)
    params = dict(trainer.model.named_parameters())
    for name, master in trainer._trained_tensors().items():
        assert torch.equal(params[name].detach(), master.bfloat16()), name

    resumed = LMTrainer.load(run, rounds=4, trust_code=True)  # its reward is a test module
    assert_same(trainer._trained_tensors(), resumed._trained_tensors())
    assert_same(trainer.target.state_dict(), resumed.target.state_dict())
    resumed.learn(progress=False, tensorboard=False)
    uninterrupted = train(bf16_config(rounds=4), full)
    assert_same(uninterrupted._trained_tensors(), resumed._trained_tensors())
    assert_same(uninterrupted.target.state_dict(), resumed.target.state_dict())
