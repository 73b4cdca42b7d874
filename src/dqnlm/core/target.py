"""Target networks: the lagged copy of the Q-network that TD targets bootstrap from.

The update is driven by the number of **gradient updates** made so far, never by
environment steps. That keeps the rule independent of how many environments step
at once (``n_envs``) and of how often training happens, and it survives a resume
unchanged because the counter is saved with the run.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

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

    Call :meth:`update` after every optimizer step with the total number of
    gradient updates made so far.
    """

    def __init__(
        self,
        online: nn.Module,
        mode: TargetMode = "hard",
        period: int = 1,
        tau: float = 1.0,
        only: Callable[[str], bool] | None = None,
    ) -> None:
        """``only(name)`` selects the parameters the target lags (e.g. LoRA adapters).

        With ``only``, no second network is built: the target keeps lagged copies of
        the selected parameters alone and shares every other (frozen) parameter with
        the online network, swapping its copies in for the duration of each call.
        """
        if mode not in TARGET_MODES:
            raise ValueError(f"unknown target mode {mode!r}; choose one of {TARGET_MODES}")
        if period < 1:
            raise ValueError(f"target period must be >= 1, got {period}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        self.mode, self.period, self.tau = mode, period, tau
        self.online = online
        self._shadow: list[str] | None = None
        if mode == "none":
            self.module = online
        elif only is not None:
            self._shadow = [name for name, _ in online.named_parameters() if only(name)]
            if not self._shadow:
                raise ValueError("`only` selects no parameter of the online network")
            self.module = online
        else:
            self.module = copy.deepcopy(online).requires_grad_(False)
        if self._shadow is None:
            self._target_tensors = _float_state(self.module)
            self._online_tensors = _float_state(online)
        else:
            params = dict(online.named_parameters())
            self._online_tensors = [params[name] for name in self._shadow]
            self._target_tensors = [p.detach().clone() for p in self._online_tensors]

    def update(self, num_updates: int) -> bool:
        """Apply the rule if ``num_updates`` is a multiple of the period; return whether it did."""
        if self.mode == "none" or num_updates % self.period != 0:
            return False
        if self.mode == "hard":
            hard_update(self._target_tensors, self._online_tensors)
        else:
            polyak_update(self._target_tensors, self._online_tensors, self.tau)
        return True

    @torch.no_grad()
    def __call__(self, *args, **kwargs):
        if self._shadow is None:
            return self.module(*args, **kwargs)
        current = [p.detach().clone() for p in self._online_tensors]
        hard_update(self._online_tensors, self._target_tensors)  # lagged weights in
        try:
            return self.module(*args, **kwargs)
        finally:
            hard_update(self._online_tensors, current)  # online weights back

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.mode == "none":
            return {}
        if self._shadow is not None:
            return dict(zip(self._shadow, self._target_tensors, strict=True))
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.mode == "none":
            return
        if self._shadow is None:
            self.module.load_state_dict(state)
            return
        if sorted(state) != sorted(self._shadow):
            raise ValueError("target state does not hold the selected parameters")
        hard_update(self._target_tensors, [state[name] for name in self._shadow])
