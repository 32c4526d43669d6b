"""The optimisers of the training loop: LAMB against the paper's update written out by hand; the registry."""

import pytest
import torch

from squeezebert.train.optim import OPTIMIZERS, Lamb, build_optimizer


def lamb_reference(w, grads, lr, betas, eps, wd):
    """LAMB (You et al. 2019, Alg. 2 with Adam's bias correction), one tensor, plain arithmetic."""
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        r = (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps) + wd * w
        w = w - lr * (w.norm() / r.norm()) * r
    return w


def test_lamb_matches_the_update_written_out_by_hand():
    g = torch.Generator().manual_seed(0)
    w0 = torch.randn(5, 3, generator=g)
    grads = [torch.randn(5, 3, generator=g) for _ in range(4)]
    p = torch.nn.Parameter(w0.clone())
    opt = Lamb([p], lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1)
    for grad in grads:
        p.grad = grad.clone()
        opt.step()
    expected = lamb_reference(w0, grads, 0.01, (0.9, 0.99), 1e-6, 0.1)
    torch.testing.assert_close(p.detach(), expected, rtol=1e-6, atol=1e-6)
    # the trust ratio makes the step size scale with the weight norm, whatever the gradient scale
    q = torch.nn.Parameter(w0.clone())
    opt = Lamb([q], lr=0.01, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.1)
    for grad in grads:
        q.grad = grad * 1000
        opt.step()
    torch.testing.assert_close(q.detach(), expected, rtol=1e-4, atol=1e-5)


def test_lamb_matches_an_independent_implementation():
    """torch-optimizer's Lamb (the paper's v3 form: no bias correction) on the same gradients, several tensors."""
    torch_optimizer = pytest.importorskip("torch_optimizer", reason="torch-optimizer is in the test extra")
    g = torch.Generator().manual_seed(1)
    shapes = [(6, 4), (4,), (3, 2, 5)]
    w0 = [torch.randn(s, generator=g) for s in shapes]
    steps = [[torch.randn(s, generator=g) * 10 ** k for s in shapes] for k in (-2, 0, 1, 0, -1)]
    ours = [torch.nn.Parameter(w.clone()) for w in w0]
    theirs = [torch.nn.Parameter(w.clone()) for w in w0]
    opt_ours = Lamb(ours, lr=0.02, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.05, bias_correction=False)
    # clamp_value: theirs caps ||w|| at 10 by default, ours never caps; the weights here stay far below either way
    opt_theirs = torch_optimizer.Lamb(theirs, lr=0.02, betas=(0.9, 0.99), eps=1e-6, weight_decay=0.05,
                                      clamp_value=1e9, debias=False)
    for grads in steps:
        for p, q, grad in zip(ours, theirs, grads):
            p.grad, q.grad = grad.clone(), grad.clone()
        opt_ours.step()
        opt_theirs.step()
        for p, q in zip(ours, theirs):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-6, atol=1e-6)
    assert all(not torch.equal(p.detach(), w) for p, w in zip(ours, w0))  # the weights did move


def test_lamb_leaves_zero_weights_moving_and_rejects_bad_settings():
    p = torch.nn.Parameter(torch.zeros(4))  # ||w|| = 0: trust ratio 1, an ordinary Adam-like step
    p.grad = torch.ones(4)
    Lamb([p], lr=0.1).step()
    assert torch.all(p < 0)
    with pytest.raises(ValueError, match="LAMB"):
        Lamb([p], lr=-1)


def test_registry_builds_each_optimizer_and_names_unknown_ones():
    p = torch.nn.Parameter(torch.ones(2))
    groups = [{"params": [p], "weight_decay": 0.0}]
    assert isinstance(build_optimizer("adamw", groups, lr=1e-3), torch.optim.AdamW)
    assert isinstance(build_optimizer("lamb", [{"params": [p], "weight_decay": 0.0}], lr=1e-3), Lamb)
    assert set(OPTIMIZERS) == {"adamw", "lamb"}
    with pytest.raises(ValueError, match="unknown optimizer 'sgdx'.*adamw, lamb"):
        build_optimizer("sgdx", groups, lr=1e-3)
