"""The fast trainer calls private torch ops (train/solo.py, "Fast path"). pyproject pins the torch range
they were checked on; these tests call each op exactly as train/solo.py does and compare it with the
public API, so a torch upgrade that changes a signature or a semantics fails here, loudly, instead
of training silently wrong."""

import pytest
import torch
import torch.nn.functional as F

from bnsearch import train as T

torch.manual_seed(0)


def _close(a, b):
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a - b).abs().max()


def test_torch_version_is_in_the_pinned_range():
    import re
    import tomllib
    from pathlib import Path

    spec = next(d for d in tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
                ["project"]["dependencies"] if d.startswith("torch"))
    lo, hi = re.search(r">=([\d.]+),<([\d.]+)", spec).groups()
    version = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    assert tuple(map(int, lo.split(".")[:2])) <= version < tuple(map(int, hi.split(".")[:2])), (spec, torch.__version__)


def test_fused_adam_matches_torch_optim_adam():
    p0, g = torch.randn(7), torch.randn(7)
    ref = p0.clone().requires_grad_(True)
    opt = torch.optim.Adam([ref], lr=0.01)
    flat, m, v, step = p0.clone(), torch.zeros(7), torch.zeros(7), torch.zeros(())
    for _ in range(3):
        ref.grad = g.clone()
        opt.step()
        step.add_(1.0)
        torch._fused_adam_([flat], [g.clone()], [m], [v], [], [step], lr=0.01, beta1=0.9, beta2=0.999,
                           weight_decay=0.0, eps=1e-8, amsgrad=False, maximize=False)
    _close(flat, ref.detach())


def test_fused_sgd_matches_torch_optim_sgd_with_momentum():
    p0, g = torch.randn(5), torch.randn(5)
    ref = p0.clone().requires_grad_(True)
    opt = torch.optim.SGD([ref], lr=0.1, momentum=T.MOMENTUM)
    flat, buf = p0.clone(), torch.zeros(5)
    for i in range(3):
        ref.grad = g.clone()
        opt.step()
        torch._fused_sgd_([flat], [g.clone()], [buf], weight_decay=0.0, momentum=T.MOMENTUM, lr=0.1,
                          dampening=0.0, nesterov=False, maximize=False, is_first_step=i == 0)
    _close(flat, ref.detach())


def test_log_softmax_backward_matches_autograd():
    x = torch.randn(4, 3, requires_grad=True)
    upstream = torch.randn(4, 3)
    ls = torch._log_softmax(x.detach(), 1, False)
    _close(ls, F.log_softmax(x.detach(), 1))
    F.log_softmax(x, 1).backward(upstream)
    _close(T._LSM_BWD(upstream, ls, 1, torch.float32), x.grad)


@pytest.mark.parametrize("name", sorted(T._ACT_BWD))
def test_activation_kernels_match_autograd(name):
    z = torch.randn(6, 4)
    zz = z.clone().requires_grad_(True)
    out = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "gelu": F.gelu}[name](zz)
    upstream = torch.randn(6, 4)
    out.backward(upstream)
    a = T._ACT_FWD[name](z.clone())
    _close(a, out.detach())
    _close(T._ACT_BWD[name](upstream, z, a), zz.grad)


def test_batch_norm_backward_out_matches_autograd():
    z = torch.randn(8, 3)
    gamma, beta = torch.rand(3) + 0.5, torch.randn(3)
    zz, gg, bb = (t.clone().requires_grad_(True) for t in (z, gamma, beta))
    out = F.batch_norm(zz, torch.zeros(3), torch.ones(3), gg, bb, training=True, momentum=0.1, eps=1e-5)
    upstream = torch.randn(8, 3)
    out.backward(upstream)
    rm, rv = torch.zeros(3), torch.ones(3)
    y, smean, sinvstd = torch.native_batch_norm(z, gamma, beta, rm, rv, True, 0.1, 1e-5)
    _close(y, out.detach())
    dz, dgamma, dbeta = torch.empty_like(z), torch.empty(3), torch.empty(3)
    T._BN_BWD_OUT(upstream, z, gamma, rm, rv, smean, sinvstd, True, 1e-5, T._BN_MASK, out0=dz, out1=dgamma, out2=dbeta)
    _close(dz, zz.grad)
    _close(dgamma, gg.grad)
    _close(dbeta, bb.grad)


def test_layer_norm_kernels_match_autograd():
    z = torch.randn(8, 5)
    gamma, beta = torch.rand(5) + 0.5, torch.randn(5)
    zz, gg, bb = (t.clone().requires_grad_(True) for t in (z, gamma, beta))
    out = F.layer_norm(zz, (5,), gg, bb, eps=1e-5)
    upstream = torch.randn(8, 5)
    out.backward(upstream)
    y, mean, rstd = torch.native_layer_norm(z, (5,), gamma, beta, 1e-5)
    _close(y, out.detach())
    _close(torch.layer_norm(z, (5,), gamma, beta, 1e-5, False), out.detach())
    dz, dgamma, dbeta = torch.empty_like(z), torch.empty(5), torch.empty(5)
    T._LN_BWD_OUT(upstream, z, (5,), mean, rstd, gamma, beta, T._NORM_MASK, out0=dz, out1=dgamma, out2=dbeta)
    _close(dz, zz.grad)
    _close(dgamma, gg.grad)
    _close(dbeta, bb.grad)
