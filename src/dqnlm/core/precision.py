"""Float32 master copies of low-precision (bfloat16 / float16) tensors.

bfloat16 keeps 8 significant bits: near 1.0 a change below half an ulp (2**-9, about
0.002) rounds away. Adam's steps are about the learning rate (3e-4), and a Polyak update
moves a weight by ``tau * gap`` (1e-4 for tau 0.01 and a 1% gap), so both are lost when
applied to bfloat16 weights directly. The remedy of mixed-precision training: keep a
float32 master copy, update that, and give the model the rounded result.
"""

from __future__ import annotations

import torch

FULL_PRECISION = (torch.float32, torch.float64)


def master_of(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself when it is float32 or float64; else a float32 copy of it."""
    if tensor.dtype in FULL_PRECISION:
        return tensor
    return tensor.detach().float().requires_grad_(tensor.requires_grad)


class MasterWeights:
    """Float32 masters for the trained parameters; the optimizer steps the masters.

    Float32 parameters are their own masters (no copy, nothing changes). After
    ``backward``, :meth:`grads_to_master` hands the gradients over; after the optimizer
    step, :meth:`master_to_model` rounds the masters into the model.
    """

    def __init__(self, params: list[torch.Tensor]) -> None:
        self.params = list(params)
        self.master = [master_of(p) for p in self.params]
        self._low = [(p, m) for p, m in zip(self.params, self.master, strict=True) if m is not p]

    @torch.no_grad()
    def grads_to_master(self) -> None:
        for param, master in self._low:
            master.grad = None if param.grad is None else param.grad.float()
            param.grad = None

    @torch.no_grad()
    def master_to_model(self) -> None:
        for param, master in self._low:
            param.copy_(master)
