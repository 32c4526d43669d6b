"""Optimisers for the one training loop: AdamW (torch's own) and LAMB (the paper's pretraining optimiser).

LAMB (You et al., 2019, "Large Batch Optimization for Deep Learning") is Adam whose per-tensor update is rescaled by
the trust ratio ||w|| / ||update||, which keeps very large batches (SqueezeBERT used 8192) stable. torch.optim has
no LAMB; the maintained libraries that do (timm, apex) bring heavy dependencies we cannot install CPU-only here
(timm needs torchvision), so it is written out below, following the paper's Algorithm 2 with Adam's bias correction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import torch
from torch import Tensor


class Lamb(torch.optim.Optimizer):
    """LAMB with decoupled weight decay folded into the update before the trust ratio (as the paper).

    For each parameter tensor: m, v as Adam (bias-corrected); update = m_hat / (sqrt(v_hat) + eps) + wd * w;
    trust = ||w|| / ||update|| (1 where either norm is 0); w -= lr * trust * update.
    ``bias_correction=False`` uses m and v as they are (the paper's v3 and NVIDIA's ``bias_correction`` switch).
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, bias_correction: bool = True):
        if lr <= 0 or eps <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1) or weight_decay < 0:
            raise ValueError(f"bad LAMB hyper-parameters: lr={lr}, betas={betas}, eps={eps}, "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      bias_correction=bias_correction))

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("LAMB does not support sparse gradients")
                state = self.state[p]
                if not state:
                    # step as a tensor, as torch's own optimisers keep it (so the state dict loads weights_only)
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = float(state["step"])
                m, v = state["exp_avg"], state["exp_avg_sq"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                corrected = group.get("bias_correction", True)  # state dicts saved before the switch lack it
                m_hat = m / (1 - beta1 ** step) if corrected else m
                v_hat = v / (1 - beta2 ** step) if corrected else v
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                w_norm, u_norm = p.norm(), update.norm()
                trust = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
                p.sub_(update * (group["lr"] * trust))
        return loss


def _adamw(groups: list[dict], lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr, betas=kwargs.get("betas", (0.9, 0.999)), eps=kwargs.get("eps", 1e-8))


def _lamb(groups: list[dict], lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    return Lamb(groups, lr=lr, betas=kwargs.get("betas", (0.9, 0.999)), eps=kwargs.get("eps", 1e-6))


# A plain registry: name -> builder(param_groups, lr, **options). Groups carry their own weight_decay.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adamw": _adamw, "lamb": _lamb}


def build_optimizer(name: str, groups: list[dict], lr: float, **kwargs: Any) -> torch.optim.Optimizer:
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](groups, lr=lr, **kwargs)


__all__ = ["Lamb", "OPTIMIZERS", "build_optimizer"]
