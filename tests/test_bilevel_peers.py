"""Peer parity of the bilevel hypergradients: TorchOpt 0.7.3 implicit differentiation (custom_root + solve_cg)
for our "cg"/"neumann", and ``higher`` 0.2.1 unrolled differentiation for our "unroll", on Q1 and on a small
MLP lower level. Peers are installed with
``.venv/bin/pip install --no-deps torchopt==0.7.3 higher==0.2.1 optree graphviz``; the tests skip without them.

Tolerances (float64): cg vs TorchOpt CG (both run to a relative residual 1e-12): 1e-8 relative; Neumann (Q
steps, alpha = 1/(1.1 lambda_max)) vs TorchOpt: within the measured geometric factor stated per test; unroll vs
``higher`` (the same K SGD steps): 1e-10 relative for every K, and both approach the implicit gradient as K grows.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from optlib.bilevel.hypergradient import hypergradient, largest_eigenvalue
from optlib.bilevel.problem import BilevelProblem
from optlib.problems.bilevel import bilevel_quadratic

torchopt = pytest.importorskip("torchopt")
higher = pytest.importorskip("higher")

DT = torch.float64


def _rel(a, b):
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------------------------- instances
def _mlp_problem(seed: int = 0, n: int = 40, p: int = 4, h: int = 6, wd: float = 1.0, y0_scale: float = 1.0,
                 t_scale: float = 6.0):
    """Lower: 2-layer tanh MLP regression on x-scaled inputs + (wd/2)||w||^2; upper: validation MSE.
    x = per-feature input scaling."""
    gen = torch.Generator().manual_seed(seed)
    X, Xv = torch.randn(n, p, generator=gen, dtype=DT), torch.randn(n, p, generator=gen, dtype=DT)
    w_true = torch.randn(p, generator=gen, dtype=DT)
    t, tv = t_scale * torch.sin(X @ w_true), t_scale * torch.sin(Xv @ w_true)
    sizes = [(h, p), (h,), (1, h), (1,)]
    ny = sum(int(np.prod(s)) for s in sizes)

    def net(y, inputs):
        parts, i = [], 0
        for s in sizes:
            k = int(np.prod(s))
            parts.append(y[i:i + k].view(s))
            i += k
        W1, b1, W2, b2 = parts
        return (torch.tanh(inputs @ W1.T + b1) @ W2.T + b2)[:, 0]

    def g(x, y):
        return ((net(y, X * x) - t) ** 2).mean() + 0.5 * wd * (y @ y)

    def f(x, y):
        return ((net(y, Xv * x) - tv) ** 2).mean()

    y0 = y0_scale * torch.randn(ny, generator=gen, dtype=DT)
    prob = BilevelProblem(f, g, torch.ones(p, dtype=DT), y0, name="mlp-scaling")
    return prob, net, (X, t, Xv, tv)


def _solve_lower(prob, x, y0, iters=1000):
    """Gradient descent, then Newton steps on the dense lower Hessian (ny is small) to ||grad_y g|| < 1e-11."""
    y = y0.clone()
    lam = largest_eigenvalue(prob, x, y)
    for _ in range(iters):
        y = y - prob.lower_grad(x, y) / (1.2 * lam)
    for _ in range(5):
        y = y - torch.linalg.solve(prob.lower_hessian(x, y), prob.lower_grad(x, y))
    assert float(prob.lower_grad(x, y).norm()) < 1e-11
    return y


def _torchopt_hypergrad(prob, x, ystar, maxiter, rtol=1e-12):
    """d/dx f(x, y*(x)) by TorchOpt's implicit differentiation (custom_root with solve_cg)."""

    def optimality(y, xx):  # grad_y g(x, y) = 0 at y*; torch.func so that TorchOpt's functorch.vjp composes
        return torch.func.grad(lambda yy: prob.g(xx, yy))(y)

    @torchopt.diff.implicit.custom_root(optimality, argnums=1,
                                        solve=torchopt.linear_solve.solve_cg(maxiter=maxiter, rtol=rtol))
    def solver(y_init, xx):
        return ystar.clone()

    xl = x.detach().clone().requires_grad_(True)
    y = solver(ystar.clone(), xl)
    (grad,) = torch.autograd.grad(prob.f(xl, y), xl)
    return grad


def _higher_unroll(prob, x, y0, K, lr):
    """``higher``'s unrolled gradient: K differentiable SGD steps on g from y0, then f."""

    class Vec(nn.Module):
        def __init__(self):
            super().__init__()
            self.y = nn.Parameter(y0.clone())

        def forward(self):
            return self.y

    model = Vec()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    xl = x.detach().clone().requires_grad_(True)
    with higher.innerloop_ctx(model, opt, copy_initial_weights=True) as (fmodel, diffopt):
        for _ in range(K):
            diffopt.step(prob.g(xl, fmodel()))
        (grad,) = torch.autograd.grad(prob.f(xl, fmodel()), xl)
    return grad


@pytest.fixture(scope="module")
def mlp():
    prob, net, data = _mlp_problem()
    x = prob.x0
    ystar = _solve_lower(prob, x, prob.y0)
    eig = torch.linalg.eigvalsh(prob.lower_hessian(x, ystar))
    assert float(eig[0]) > 0.05  # a strict local minimum: mu ~ 0.124, lambda_max ~ 11.1 (measured)
    return prob, x, ystar


# ---------------------------------------------------------------------------------------------- implicit (CG)
def test_cg_matches_torchopt_on_q1():
    prob = bilevel_quadratic()
    x = prob.x0
    ystar = prob.lower_solution(x)
    ours = hypergradient(prob, x, ystar, "cg", maxiter=50, tol=1e-12).grad
    peer = _torchopt_hypergrad(prob, x, ystar, maxiter=50)
    truth = prob.true_hypergradient(x)
    assert _rel(ours, peer) < 1e-8
    assert _rel(peer, truth) < 1e-8


def test_cg_and_neumann_match_torchopt_on_mlp(mlp):
    prob, x, ystar = mlp
    assert hypergradient(prob, x, ystar, "exact").diagnostics["hvps"] == prob.ny  # lower Hessian is SPD at y*
    ours = hypergradient(prob, x, ystar, "cg", maxiter=200, tol=1e-12).grad
    peer = _torchopt_hypergrad(prob, x, ystar, maxiter=200)
    assert _rel(ours, peer) < 1e-8
    # Neumann: error factor (1 - alpha mu)^Q with the measured spectrum of the lower Hessian
    H = prob.lower_hessian(x, ystar)
    eig = torch.linalg.eigvalsh(H)
    mu, lam = float(eig[0]), float(eig[-1])
    alpha, Q = 1.0 / (1.1 * lam), 200
    neu = hypergradient(prob, x, ystar, "neumann", steps=Q, alpha=alpha).grad
    # ||h_Q - h|| <= ||grad^2_xy g|| (1 - alpha mu)^Q ||v*||
    v = torch.linalg.solve(H, prob.upper_grads(x, ystar)[1])
    J = torch.stack([prob.cross(x, ystar, e) for e in torch.eye(prob.ny, dtype=DT)])
    bound = float(torch.linalg.matrix_norm(J, 2)) * (1 - alpha * mu) ** Q * float(v.norm())
    assert float((neu - peer).norm()) <= bound + 1e-10 * float(peer.norm())


# ---------------------------------------------------------------------------------------------- unrolled
@pytest.mark.parametrize("K", [1, 5, 20])
def test_unroll_matches_higher_on_q1(K):
    prob = bilevel_quadratic()
    x, y0 = prob.x0, prob.y0
    ours = hypergradient(prob, x, y0, "unroll", steps=K, lr=0.2).grad
    peer = _higher_unroll(prob, x, y0, K, 0.2)
    assert _rel(ours, peer) < 1e-10


def test_unroll_matches_higher_and_approaches_implicit_on_mlp(mlp):
    prob, x, ystar = mlp
    implicit = hypergradient(prob, x, ystar, "cg", maxiter=200, tol=1e-12).grad
    lam = largest_eigenvalue(prob, x, ystar)
    lr = 1.0 / (1.2 * lam)
    eig = torch.linalg.eigvalsh(prob.lower_hessian(x, ystar))
    rate = max(abs(1 - lr * float(eig[0])), abs(1 - lr * float(eig[-1])))
    errs = []
    for K in (10, 40, 160):
        ours = hypergradient(prob, x, ystar, "unroll", steps=K, lr=lr).grad
        peer = _higher_unroll(prob, x, ystar, K, lr)
        assert _rel(ours, peer) < 1e-10
        errs.append(_rel(ours, implicit))
    print(f"\n[bilevel peers] MLP unroll vs implicit, K = 10, 40, 160: rel. errors {errs}, rate {rate:.4f}")
    assert errs[0] > errs[1] > errs[2]
    # from y*, unrolling is a K-term Neumann series of the linearized map: error ~ rate^K (measured, up to
    # the curvature change along the trajectory, which stays at y* to first order)
    assert errs[2] / errs[1] <= 1.5 * rate ** 120


# ---------------------------------------------------------------------------------------------- timing (reported)
def test_timing_cg_vs_torchopt_on_mlp(mlp, capsys):
    prob, x, ystar = mlp
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        def best(fn, reps=5):
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            return min(ts)

        # the same CG iterations: tol = rtol = 0 forces exactly maxiter iterations on both sides
        ours = best(lambda: hypergradient(prob, x, ystar, "cg", maxiter=30, tol=0.0))
        peer = best(lambda: _torchopt_hypergrad(prob, x, ystar, maxiter=30, rtol=0.0))
    finally:
        torch.set_num_threads(threads)
    with capsys.disabled():
        print(f"\n[bilevel peers] CG hypergradient on MLP (ny={prob.ny}, 30 CG iters, 1 thread): "
              f"optlib {ours * 1e3:.2f} ms, TorchOpt {peer * 1e3:.2f} ms, ratio optlib/TorchOpt {ours / peer:.2f}")
