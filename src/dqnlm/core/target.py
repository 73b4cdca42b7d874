"""Target networks: the lagged copy of the Q-network that TD targets bootstrap from.

The update is driven by the number of **gradient updates** made so far, never by
environment steps. That keeps the rule independent of how many environments step
at once (``n_envs``) and of how often training happens, and it survives a resume
unchanged because the counter is saved with the run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Literal

import torch
from torch import nn

from dqnlm.core.precision import master_of

TargetMode = Literal["hard", "polyak", "none"]
TARGET_MODES: tuple[str, ...] = ("hard", "polyak", "none")


@torch.no_grad()
def polyak_update(target: list[torch.Tensor], online: list[torch.Tensor], tau: float) -> None:
    """In place: ``target <- (1 - tau) * target + tau * online``."""
    torch._foreach_lerp_(target, online, tau)


@torch.no_grad()
def hard_update(target: list[torch.Tensor], online: list[torch.Tensor]) -> None:
    """In place: ``target <- online``."""
    torch._foreach_copy_(target, online)


def _float_state(module: nn.Module) -> list[torch.Tensor]:
    """Parameters and floating-point buffers (e.g. BatchNorm statistics), in a fixed order."""
    tensors = list(module.parameters())
    tensors += [b for b in module.buffers() if b.is_floating_point()]
    return tensors


class TargetNetwork:
    """A lagged copy of ``online`` updated by one of three rules.

    * ``hard``: copy the online weights every ``period`` gradient updates.
    * ``polyak``: ``theta' <- (1 - tau) theta' + tau theta`` every ``period`` updates.
    * ``none``: no copy; the online network is its own target (ablations).

    The contract: call :meth:`update` after every optimizer step with the number of
    gradient updates made so far (nothing else drives it); :meth:`sync` makes a hard copy
    at any other moment; :meth:`state_dict` / :meth:`load_state_dict` are the only way its
    state is saved and restored. Low-precision (bfloat16 / float16) weights lag through
    float32 master copies: ``tau * gap`` below half a bfloat16 ulp would otherwise round
    away and stall the target (see :mod:`dqnlm.core.precision`).
    """

    def __init__(
        self,
        online: nn.Module,
        mode: TargetMode = "hard",
        period: int = 1,
        tau: float = 1.0,
        only: Callable[[str], bool] | None = None,
        masters: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """``only(name)`` selects the parameters the target lags (e.g. LoRA adapters).

        With ``only``, no second network is built: the target keeps lagged copies of the
        selected parameters alone and calls the online network with them substituted
        (``torch.func.functional_call``), sharing every other (frozen) parameter; the
        online network's own weights are never touched.

        ``masters`` maps names of low-precision online parameters to the float32 masters
        the optimizer steps (:class:`dqnlm.core.precision.MasterWeights`): the target
        follows those, as an all-float32 run's would, not their bfloat16 roundings.
        """
        if mode not in TARGET_MODES:
            raise ValueError(f"unknown target mode {mode!r}; choose one of {TARGET_MODES}")
        if period < 1:
            raise ValueError(f"target period must be >= 1, got {period}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        self.mode, self.period, self.tau = mode, period, tau
        self.online = online
        self._shadow = only is not None and mode != "none"
        if mode == "none":
            self.module, self._names = online, []
        elif self._shadow:
            self._names = [name for name, _ in online.named_parameters() if only(name)]
            if not self._names:
                raise ValueError("`only` selects no parameter of the online network")
            self.module = online
        else:
            self.module = copy.deepcopy(online).requires_grad_(False)
            self._names = [name for name, _ in self.module.named_parameters()]
            self._names += [n for n, b in self.module.named_buffers() if b.is_floating_point()]
        named_params = dict(online.named_parameters())
        named = dict(named_params)
        named.update((n, b) for n, b in online.named_buffers() if b.is_floating_point())
        named.update(masters or {})
        self._online_tensors = [named[name] for name in self._names]
        if self._shadow:  # in the online parameters' own dtype, for functional_call
            self._target_tensors = [named_params[name].detach().clone() for name in self._names]
        else:
            self._target_tensors = _float_state(self.module)
        # the EMA runs on the masters; low-precision targets receive the rounded result
        self._master = [master_of(t) for t in self._target_tensors]
        self._low = [(t, m) for t, m in zip(self._target_tensors, self._master) if m is not t]
        if masters:
            self.sync()  # start from the online masters themselves, not their roundings

    def update(self, num_updates: int) -> bool:
        """Apply the rule if ``num_updates`` (gradient updates so far) is a multiple of the
        period; return whether it did."""
        if self.mode == "none" or num_updates % self.period != 0:
            return False
        if self.mode == "hard":
            hard_update(self._master, self._online_tensors)
        else:
            online = [t.to(m.dtype) for t, m in zip(self._online_tensors, self._master)]
            polyak_update(self._master, online, self.tau)
        self._round_into_target()
        return True

    def sync(self) -> None:
        """A hard copy of the online weights now, whatever the rule and the period."""
        if self.mode != "none":
            hard_update(self._master, self._online_tensors)
            self._round_into_target()

    @torch.no_grad()
    def _round_into_target(self) -> None:
        for target, master in self._low:
            target.copy_(master)

    @torch.no_grad()
    def __call__(self, *args, **kwargs):
        if not self._shadow:
            return self.module(*args, **kwargs)
        lagged = dict(zip(self._names, self._target_tensors, strict=True))
        return torch.func.functional_call(self.online, lagged, args, kwargs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The lagged tensors by name (float32 masters for low-precision weights, so a
        resumed run continues exactly); tied parameters appear once; empty for ``none``."""
        if self.mode == "none":
            return {}
        return {name: t.detach() for name, t in zip(self._names, self._master, strict=True)}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if sorted(state) != sorted(self._names):
            odd = sorted(set(self._names) ^ set(state))
            raise ValueError(f"target state does not match the lagged tensors ({odd[0]})")
        if self.mode == "none":
            return
        for name, master in zip(self._names, self._master, strict=True):
            master.copy_(state[name])
        self._round_into_target()
