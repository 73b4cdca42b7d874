"""Target networks: polyak/hard update math and the period rule of TargetNetwork."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dqnlm.core.target import TargetNetwork, hard_update, polyak_update


def test_polyak_update_hand_values():
    target = [torch.tensor([0.0, 2.0]), torch.tensor([[4.0]])]
    online = [torch.tensor([1.0, 4.0]), torch.tensor([[0.0]])]
    polyak_update(target, online, 0.25)
    # theta' <- 0.75 theta' + 0.25 theta
    assert torch.allclose(target[0], torch.tensor([0.25, 2.5]))
    assert torch.allclose(target[1], torch.tensor([[3.0]]))
    assert torch.equal(online[0], torch.tensor([1.0, 4.0]))  # online untouched


def test_hard_update_copies_values_not_storage():
    target, online = [torch.zeros(3)], [torch.tensor([1.0, 2.0, 3.0])]
    hard_update(target, online)
    assert torch.equal(target[0], online[0])
    online[0] += 1.0
    assert torch.equal(target[0], torch.tensor([1.0, 2.0, 3.0]))


def make_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def shift(net: nn.Module, amount: float) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(amount)


def params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def test_hard_mode_copies_only_every_period_updates():
    online = make_net()
    target = TargetNetwork(online, "hard", period=3)
    start = params(online)
    shift(online, 1.0)
    assert [target.update(n) for n in (1, 2)] == [False, False]
    assert all(torch.equal(a, b) for a, b in zip(params(target.module), start))
    assert target.update(3) is True
    assert all(torch.equal(a, b) for a, b in zip(params(target.module), params(online)))
    assert target.update(4) is False and target.update(6) is True


def test_hard_mode_copies_float_buffers():
    online = make_net()
    target = TargetNetwork(online, "hard", period=1)
    online.train()(torch.randn(8, 3))  # moves BatchNorm running statistics
    target.update(1)
    assert torch.equal(target.module[1].running_mean, online[1].running_mean)
    assert torch.equal(target.module[1].running_var, online[1].running_var)


def test_polyak_mode_averages_every_period_updates():
    online = make_net()
    target = TargetNetwork(online, "polyak", period=2, tau=0.5)
    start = params(online)
    shift(online, 1.0)
    assert target.update(1) is False
    assert all(torch.equal(a, b) for a, b in zip(params(target.module), start))
    assert target.update(2) is True
    for t, s in zip(params(target.module), start):
        assert torch.allclose(t, s + 0.5)  # 0.5 * s + 0.5 * (s + 1)
    assert target.update(4) is True
    for t, s in zip(params(target.module), start):
        assert torch.allclose(t, s + 0.75)


def test_none_mode_is_the_online_network():
    online = make_net()
    target = TargetNetwork(online, "none")
    assert target.module is online
    assert target.update(1) is False and target.update(1000) is False
    assert target.state_dict() == {}
    target.load_state_dict({})  # a no-op, not an error
    x = torch.randn(5, 3)
    online.eval()
    assert torch.equal(target(x), online(x))


def test_target_is_a_frozen_copy_and_call_builds_no_graph():
    online = make_net()
    target = TargetNetwork(online, "hard", period=1)
    assert target.module is not online
    assert all(not p.requires_grad for p in target.module.parameters())
    assert all(p.requires_grad for p in online.parameters())
    assert not target(torch.randn(4, 3)).requires_grad


def test_state_dict_round_trip():
    online = make_net()
    a, b = TargetNetwork(online, "hard"), TargetNetwork(make_net(), "hard")
    shift(a.module, 2.0)
    b.load_state_dict(a.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(params(a.module), params(b.module)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mode": "soft"}, "target mode"),
        ({"mode": "hard", "period": 0}, "period"),
        ({"mode": "polyak", "tau": 0.0}, "tau"),
        ({"mode": "polyak", "tau": 1.5}, "tau"),
        ({"mode": "polyak", "tau": -0.1}, "tau"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TargetNetwork(make_net(), **kwargs)


class Adapted(torch.nn.Module):
    """A frozen base layer plus a small trainable adapter, named like LoRA's."""

    def __init__(self):
        super().__init__()
        self.base = torch.nn.Linear(2, 2, bias=False)
        self.lora_A = torch.nn.Parameter(torch.zeros(2, 2))
        self.base.requires_grad_(False)

    def forward(self, x):
        return self.base(x) + x @ self.lora_A.T


def test_adapter_only_target_keeps_an_ema_of_the_adapter_alone():
    torch.manual_seed(0)
    net = Adapted()
    target = TargetNetwork(net, mode="polyak", tau=0.25, only=lambda name: "lora_" in name)
    assert target.module is net  # no second copy of the base model
    assert list(target.state_dict()) == ["lora_A"]

    with torch.no_grad():
        net.lora_A.fill_(4.0)  # an optimizer step moved the adapter
    target.update(1)
    ema = 0.75 * 0.0 + 0.25 * 4.0
    assert torch.allclose(target.state_dict()["lora_A"], torch.full((2, 2), ema))

    x = torch.tensor([[1.0, 2.0]])
    expected = net.base(x) + x @ torch.full((2, 2), ema).T
    assert torch.allclose(target(x), expected)
    # the online network's own adapter is untouched by the target's call
    assert torch.equal(net.lora_A.detach(), torch.full((2, 2), 4.0))
    assert torch.allclose(net(x), net.base(x) + x @ torch.full((2, 2), 4.0).T)

    with torch.no_grad():
        net.base.weight.add_(1.0)  # shared base weights are the target's too
    assert torch.allclose(target(x), net.base(x) + x @ torch.full((2, 2), ema).T)


def test_adapter_target_state_round_trip_and_errors():
    net = Adapted()
    target = TargetNetwork(net, mode="hard", only=lambda name: "lora_" in name)
    target.load_state_dict({"lora_A": torch.ones(2, 2)})
    assert torch.equal(target.state_dict()["lora_A"], torch.ones(2, 2))
    with pytest.raises(ValueError):
        target.load_state_dict({"base.weight": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="selects no parameter"):
        TargetNetwork(net, mode="hard", only=lambda name: "nothing" in name)


def bf16_pair(only=None):
    """A bfloat16 network whose online weights sit 5% above its target's (1.0)."""
    net = Adapted().to(torch.bfloat16) if only else nn.Linear(4, 4, bias=False).bfloat16()
    weight = net.lora_A if only else net.weight
    with torch.no_grad():
        weight.fill_(1.0)
    target = TargetNetwork(net, mode="polyak", tau=0.01, only=only)
    with torch.no_grad():
        weight.fill_(1.05)  # stored as bfloat16 1.046875
    return net, weight, target


@pytest.mark.parametrize("only", [None, lambda name: "lora_" in name], ids=["copy", "adapters"])
def test_bfloat16_polyak_moves_as_a_float32_ema_would(only):
    net, weight, target = bf16_pair(only)
    online = weight.detach().float()
    for n in range(1, 101):
        target.update(n)
    # float32: 1 - 0.99**100 = 63% of the gap closed; a bfloat16 lerp closes 0%
    expected = 1.0 + (online - 1.0) * (1 - 0.99**100)
    (lagged,) = target.state_dict().values()
    assert lagged.dtype == torch.float32
    assert torch.allclose(lagged - 1.0, expected - 1.0, rtol=0.01)
    # the weights the target computes with are the masters rounded to bfloat16
    rounded = target._target_tensors[0].float()
    assert torch.equal(rounded, lagged.bfloat16().float()) and (rounded > 1.0).all()


def test_bfloat16_target_round_trips_its_float32_masters():
    _, _, target = bf16_pair()
    for n in range(1, 11):
        target.update(n)
    _, _, other = bf16_pair()
    other.load_state_dict(target.state_dict())
    assert torch.equal(other.state_dict()["weight"], target.state_dict()["weight"])
    assert torch.equal(other.module.weight, target.module.weight)
    other.update(11), target.update(11)
    assert torch.equal(other.state_dict()["weight"], target.state_dict()["weight"])


def test_sync_copies_now_whatever_the_period():
    online = make_net()
    target = TargetNetwork(online, "hard", period=1000)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(1.0)
    assert not target.update(1)  # not a multiple of the period: no copy
    assert not all(torch.equal(a, b) for a, b in zip(params(target.module), params(online)))
    target.sync()
    assert all(torch.equal(a, b) for a, b in zip(params(target.module), params(online)))


def test_adapter_target_never_writes_into_the_online_model():
    """The LoRA target substitutes its lagged adapter in the call (functional_call): an
    online forward's graph stays valid across a target call in between."""
    torch.manual_seed(0)
    net = Adapted()
    target = TargetNetwork(net, mode="hard", only=lambda name: "lora_" in name)
    with torch.no_grad():
        net.lora_A.fill_(2.0)
    x = torch.tensor([[1.0, 2.0]])
    out = net(x).sum()
    target(x)  # between the online forward and its backward
    out.backward()
    assert torch.equal(net.lora_A.grad, x.expand(2, 2))
    assert torch.equal(net.lora_A.detach(), torch.full((2, 2), 2.0))
