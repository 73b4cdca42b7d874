"""Many copies of one network trained as one: the independent agents of many seeds.

:class:`StackedModules` stacks the parameters of ``N`` identically-shaped modules along a
new first dimension (``torch.func.stack_module_state``) and evaluates all of them in one
call: an input ``(N, batch, ...)`` gives ``(N, batch, ...)``. The Q-networks of
:mod:`dqnlm.core.networks` run as grouped layers (batched matmuls, grouped
convolutions, LayerNorm over the last dimension), several times faster on a CPU than
``torch.func.vmap``, which runs any other module.
Member ``i`` computes exactly what module ``i`` alone would (up to floating-point
rounding of the batched kernels). Because Adam is elementwise, one Adam over the stacked
parameters is ``N`` independent Adams; gradient clipping must be per member
(:func:`clip_grad_norm_per_member`). It is an ordinary ``nn.Module``, so a
:class:`~dqnlm.core.target.TargetNetwork` of it is the ``N`` members' target networks.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dqnlm.core.networks import ConvQNetwork, QNetwork


def _key(name: str) -> str:
    return name.replace(".", "__")  # parameter names may not contain dots


class StackedModules(nn.Module):
    """``N`` modules of one architecture, their parameters stacked, called as one."""

    def __init__(self, modules: list[nn.Module]) -> None:
        super().__init__()
        if not modules:
            raise ValueError("StackedModules needs at least one module")
        params, buffers = torch.func.stack_module_state(modules)
        self.members = len(modules)
        self.param_names, self.buffer_names = list(params), list(buffers)
        for name, value in params.items():
            self.register_parameter(_key(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_key(name), value.clone())
        # the architecture without weights: functional_call supplies each member's
        self._skeleton = [copy.deepcopy(modules[0]).to("meta")]
        self._layers = self._grouped_layers

    def _named(self, names: list[str]) -> dict[str, torch.Tensor]:
        return {name: getattr(self, _key(name)) for name in names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skeleton = self._skeleton[0]
        if self._layers is not None:  # found once, in __init__
            return self._grouped(skeleton, x)

        def member(params, buffers, inputs):
            return torch.func.functional_call(skeleton, (params, buffers), (inputs,))

        params, buffers = self._named(self.param_names), self._named(self.buffer_names)
        return torch.func.vmap(member)(params, buffers, x)

    @property
    def _grouped_layers(self) -> list[tuple[str, nn.Module]] | None:
        """(parameter key prefix, layer) of the body, or None when vmap must run it."""
        skeleton = self._skeleton[0]
        if not isinstance(skeleton, QNetwork | ConvQNetwork):
            return None
        if not all(isinstance(m, _GROUPED) for m in skeleton.body):
            return None
        return [(f"body__{i}__", layer) for i, layer in enumerate(skeleton.body)]

    def _grouped(self, net: QNetwork | ConvQNetwork, x: torch.Tensor) -> torch.Tensor:
        """The core Q-networks' forward, layer by layer over the members dimension."""
        x = x.float() * net.input_scale if isinstance(net, ConvQNetwork) else x.flatten(2)
        for prefix, layer in self._layers:
            x = self._layer(prefix, layer, x)
        q = self._layer("head__", net.head, x)
        if net.value is not None:
            q = self._layer("value__", net.value, x) + q - q.mean(dim=-1, keepdim=True)
        return q

    def _layer(self, prefix: str, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # the parameter dict itself: nn.Module.__getattr__ would cost more than a small layer
        weight = self._parameters.get(prefix + "weight")
        bias = self._parameters.get(prefix + "bias")
        if isinstance(layer, nn.Linear):  # (N, B, in) @ (N, in, out) + (N, 1, out)
            return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))
        if isinstance(layer, nn.LayerNorm):
            x = F.layer_norm(x, layer.normalized_shape, eps=layer.eps)
            shape = (x.shape[0], *[1] * (x.dim() - 2), -1)
            return torch.addcmul(bias.view(shape), x, weight.view(shape))
        if isinstance(layer, nn.ReLU):
            return torch.relu(x)
        if isinstance(layer, nn.Flatten):
            return x.flatten(2)
        # Conv2d: the members' channels side by side, one grouped convolution
        members, batch, channels, height, width = x.shape
        grouped = x.transpose(0, 1).reshape(batch, members * channels, height, width)
        y = F.conv2d(
            grouped,
            weight.flatten(0, 1),
            bias.flatten(),
            layer.stride,
            layer.padding,
            layer.dilation,
            groups=members,
        )
        return y.view(batch, members, -1, *y.shape[2:]).transpose(0, 1)

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member ``i``'s weights as its own module's ``state_dict`` (copies)."""
        names = self.param_names + self.buffer_names
        return {name: getattr(self, _key(name))[i].detach().clone() for name in names}

    @torch.no_grad()
    def load_member_state(self, i: int, state: dict[str, torch.Tensor]) -> None:
        for name in self.param_names + self.buffer_names:
            getattr(self, _key(name))[i].copy_(state[name])


_GROUPED = (nn.Linear, nn.LayerNorm, nn.ReLU, nn.Flatten, nn.Conv2d)


@torch.no_grad()
def clip_grad_norm_per_member(params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` for each member separately (first dimension of every tensor):
    member ``i``'s gradients are scaled so their global L2 norm is at most ``max_norm``,
    as a run of member ``i`` alone would clip them. Returns the norms before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    squares = torch.stack([g.flatten(1).pow(2).sum(1) for g in grads]).sum(0)
    norms = squares.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
    return norms
