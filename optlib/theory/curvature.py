r"""Theorem checkers of the curvature operators (spec 50 §6 items 1-4 and 8) and of the damping rules.

Every reference is computed independently of the operator under test (and of curvlinops): dense Jacobians
and loss Hessians from ``torch.autograd.functional`` applied to torch's own loss functions, dense Kronecker
products, ``torch.linalg``/numpy solves and eigenvalues, closed forms. float64 throughout.

Statements:

1. :func:`ggn_equals_hessian` - for a model linear in its parameters and MSE, GGN = Hessian.
2. :func:`ggn_psd` - the GGN is PSD where the Hessian is indefinite (MLP, cross-entropy).
3. :func:`ggn_psd_lower_bound` - linear regression with MSE: ``GGN = (2/(N C)) I_C (x) X^T X`` (mean) and
   ``lambda_min(GGN) = 2 lambda_min(X^T X)/(N C)``, a nonzero lower bound known from the data.
4. :func:`ggn_products` - ``G v`` equals the dense ``J^T H_z J v`` and ``u^T G v = v^T G u``.
5. :func:`kfac_exact` - K-FAC (type-2) equals the GGN blocks for one sample, and for deep linear MSE.
6. :func:`kfac_mc_unbiased` - MC K-FAC's S factor is type-2's in expectation.
7. :func:`mc_fisher_unbiased` - the Monte-Carlo Fisher is unbiased for the GGN (MSE: ``(2/(NC)) sum J^T J``;
   BCE: ``(1/(NC)) sum J^T diag(p(1-p)) J``), with a Chebyshev tolerance from the exact variance.
8. :func:`damped_inverse` / :func:`heuristic_inverse` - the damped solves are the stated inverses.
9. :func:`scaling_conventions` - the reduction conventions (sum/mean = N C or N).
10. :func:`lm_damping_adaptation` - Martens & Grosse's rho-adaptation: factor ``omega = (19/20)^5`` down after a
    good rho, up after a bad one.
11. :func:`grad_norm_damping` - ``lambda = sqrt(c ||g||)`` (Mishchenko 2021) in the solve.

The small seeded MLPs, data sets and the PSD system of the damping check
(:func:`~optlib.problems.curvature_nets.seeded_mlp`, :func:`~optlib.problems.curvature_nets.seeded_batches`,
:func:`~optlib.problems.curvature_nets.seeded_psd_system`) are in :mod:`optlib.problems.curvature_nets`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from .. import curvature as oc
from ..curvature.damping import Damping
from ..problems.curvature_nets import seeded_batches, seeded_mlp, seeded_psd_system
from .common import TheoremCheck

DT = torch.float64
TORCH_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": torch.nn.functional.mse_loss,
    "cross_entropy": torch.nn.functional.cross_entropy,
    "bce_with_logits": torch.nn.functional.binary_cross_entropy_with_logits,
}
SPEC = "spec 50 §6"
CHEBYSHEV_K = 10.0  # P(|X - EX| > k sigma) <= 1/k^2 = 1 %


# ------------------------------------------------------------------------------------------------
# Independent references
# ------------------------------------------------------------------------------------------------
def flat_params(model):
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().flatten() for _, p in model.named_parameters()])

    def unflat(t):
        out, off = {}, 0
        for n, s in zip(names, shapes):
            m = s.numel()
            out[n] = t[off:off + m].view(s)
            off += m
        return out

    return theta, unflat


def output_jacobian(model, X) -> torch.Tensor:
    """Dense ``d vec(model(X)) / d theta`` (row-major over the outputs) by autograd."""
    theta, unflat = flat_params(model)
    return torch.autograd.functional.jacobian(lambda t: functional_call(model, unflat(t), (X,)).reshape(-1), theta)


def dense_ggn(model, loss, data, reduction):
    """sum_b w_b J_b^T (d^2 loss_b / dz^2) J_b with torch's loss and dense autograd (w_b = B_b/N for mean)."""
    theta, unflat = flat_params(model)
    N = sum(len(X) for X, _ in data)
    fn = TORCH_LOSSES[loss]
    G = torch.zeros(theta.numel(), theta.numel(), dtype=DT)
    for X, y in data:
        w = len(X) / N if reduction == "mean" else 1.0
        z = functional_call(model, unflat(theta), (X,))
        J = output_jacobian(model, X)
        Hz = torch.autograd.functional.hessian(lambda zz: fn(zz.reshape(z.shape), y, reduction=reduction),
                                               z.detach().reshape(-1))
        G += w * J.T @ Hz @ J
    return G


def dense_hessian(model, loss, data, reduction):
    theta, unflat = flat_params(model)
    N = sum(len(X) for X, _ in data)
    fn = TORCH_LOSSES[loss]

    def total(t):
        return sum((len(X) / N if reduction == "mean" else 1.0) * fn(functional_call(model, unflat(t), (X,)), y,
                                                                     reduction=reduction) for X, y in data)

    return torch.autograd.functional.hessian(total, theta)


def rel_err(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def block_slices(model):
    """Flat index ranges of each parameter."""
    out, off = {}, 0
    for n, p in model.named_parameters():
        out[n] = slice(off, off + p.numel())
        off += p.numel()
    return out


def _check(name, statement, source, measured, bound, holds, slack=0.0, **details) -> TheoremCheck:
    return TheoremCheck(name, statement, source, float(measured), float(bound), bool(holds), slack, details)


# ------------------------------------------------------------------------------------------------
# 1-3. GGN identities and definiteness
# ------------------------------------------------------------------------------------------------
def ggn_equals_hessian(ggn_cls: type = oc.GGN, model=None, data=None, reduction: str = "mean") -> TheoremCheck:
    """For f linear in theta and MSE the Hessian is exactly ``J^T (2 I) J`` times the reduction's scale: the
    GGN equals the dense autograd Hessian to 1e-12 relative (max-entry; rounding)."""
    model = model if model is not None else seeded_mlp([4, 3], act=None)
    data = data if data is not None else seeded_batches("mse", 4, 3)
    G = ggn_cls(model, oc.MSELoss(reduction), None, data).to_dense()
    err = rel_err(G, dense_hessian(model, "mse", data, reduction))
    return _check("GGN = Hessian (linear, MSE)", "G = H for a model linear in theta with MSE", SPEC + ".1", err,
                  1e-12, err <= 1e-12, problem=f"linear 4->3, MSE {reduction}")


def psd_margin(M) -> tuple[float, float]:
    """(lambda_min(M) / ||M||_2, lambda_min(M))."""
    ev = torch.linalg.eigvalsh(0.5 * (M + M.T))
    return float(ev[0] / ev.abs().max()), float(ev[0])


def ggn_psd(op_cls: type = oc.GGN) -> TheoremCheck:
    """MLP 4-6-3 (tanh) with cross-entropy, 8 samples: ``lambda_min(G) >= -1e-6 ||G||_2`` (PSD up to rounding)
    while the Hessian (dense autograd) has a negative eigenvalue (``< -1e-6 ||H||``: the example is not vacuous).
    Measured: ``-lambda_min(G)/||G||``; bound 1e-6."""
    model = seeded_mlp([4, 6, 3], seed=3)
    data = seeded_batches("cross_entropy", 4, 3, sizes=(8,), seed=4)
    G = op_cls(model, nn.CrossEntropyLoss(), None, data).to_dense()
    g_margin, _ = psd_margin(G)
    h_margin, h_min = psd_margin(dense_hessian(model, "cross_entropy", data, "mean"))
    holds = g_margin >= -1e-6 and h_margin < -1e-6
    return _check("GGN PSD, Hessian indefinite", "lambda_min(G) >= -1e-6 ||G|| while lambda_min(H) < 0",
                  SPEC + ".1", -g_margin, 1e-6, holds, problem="MLP 4-6-3 tanh, cross-entropy",
                  hessian_lambda_min=h_min, hessian_margin=h_margin)


def ggn_psd_lower_bound(ggn_cls: type = oc.GGN, reduction: str = "mean", seed: int = 2) -> TheoremCheck:
    """Linear regression ``z = W x`` (no bias, C = 3 outputs, d = 4 inputs, N = 8) with MSE.

    Derived: the loss is ``c sum_n ||W x_n - y_n||^2`` with ``c = 1/(N C)`` (mean) or 1 (sum); its Hessian in the
    row-major ``vec W`` is ``2 c I_C (x) X^T X`` and equals the GGN (the model is linear), so
    ``lambda_min(GGN) = 2 c lambda_min(X^T X) > 0`` for X of full column rank (computed by numpy from the data).
    Measured: ``lambda_min`` of the operator's dense matrix (torch); holds iff it is at least the bound
    (relative slack 1e-10) and ``GGN`` and type-2 K-FAC (exact here) equal the Kronecker form to 1e-12
    (curvlinops PR #98: the linear-regression GGN is twice the FOOF matrix).
    """
    model = seeded_mlp([4, 3], act=None, bias=False, seed=seed)
    data = seeded_batches("mse", 4, 3, sizes=(5, 3), seed=seed)
    X = torch.cat([x for x, _ in data]).numpy()
    N, C = X.shape[0], 3
    c = 1.0 / (N * C) if reduction == "mean" else 1.0
    bound = 2.0 * c * float(np.linalg.eigvalsh(X.T @ X)[0])
    G = ggn_cls(model, oc.MSELoss(reduction), None, data).to_dense()
    measured = float(torch.linalg.eigvalsh(0.5 * (G + G.T))[0])
    kron = torch.from_numpy(2.0 * c * np.kron(np.eye(C), X.T @ X))
    form = rel_err(G, kron)
    kfac = rel_err(oc.KFAC(model, oc.MSELoss(reduction), None, data, fisher_type="type2").to_dense(), kron)
    holds = measured >= bound * (1 - 1e-10) and form <= 1e-12 and kfac <= 1e-12
    return _check("GGN lower bound (linear MSE)", "lambda_min(GGN) >= 2 lambda_min(X^T X)/(N C) > 0",
                  "derived (GGN = 2c I (x) X^T X)", measured, bound, holds, 1e-10,
                  problem=f"linear regression 4->3, N = {N}, MSE {reduction}", kron_error=form, kfac_error=kfac,
                  comparison="measured >= bound*(1-slack)")


def ggn_products(loss: str = "mse", ggn_cls: type = oc.GGN) -> TheoremCheck:
    """``G V`` equals the dense ``J^T (d^2 loss/dz^2) J V`` (max relative error <= 1e-5 of the largest entry:
    the operator uses its own autograd products), the single-vector path agrees with the block path, and
    ``u^T G v = v^T G u`` to 1e-10 relative."""
    model = seeded_mlp([4, 5, 3])
    data = seeded_batches(loss, 4, 3)
    op = ggn_cls(model, loss, None, data)
    G_ref = dense_ggn(model, loss, data, "mean")
    V = torch.randn(op.n, 4, generator=torch.Generator().manual_seed(7), dtype=DT)
    GV = op @ V
    err = rel_err(GV, G_ref @ V)
    single = rel_err(op @ V[:, 0], GV[:, 0])
    u, v = V[:, 1], V[:, 2]
    a, b = float(u @ (op @ v)), float(v @ (op @ u))
    sym = abs(a - b) / max(abs(a), abs(b))
    holds = err <= 1e-5 and single <= 1e-12 and sym <= 1e-10
    return _check("GGN products", "G v = J^T H_z J v; u^T G v = v^T G u", SPEC + ".2", err, 1e-5, holds,
                  problem=f"MLP 4-5-3, {loss}", single_vector=single, symmetry=sym)


# ------------------------------------------------------------------------------------------------
# 5-6. K-FAC
# ------------------------------------------------------------------------------------------------
def kfac_block_errors(kfac, G, model) -> dict[str, float]:
    K = kfac.to_dense()
    return {n: rel_err(K[s, s], G[s, s]) for n, s in block_slices(model).items()}


def kfac_exact(case: str = "batch_one", fisher_type: str = "type2", reduction: str = "mean",
               separate_weight_and_bias: bool = True) -> TheoremCheck:
    """K-FAC equals the exact GGN on its diagonal parameter blocks (max relative error <= 1e-10) for
    ``case="batch_one"`` (one sample, MLP 4-5-3, cross-entropy) and ``case="deep_linear"`` (linear 4-5-3-2, MSE,
    batches of 6 and 4): the Kronecker factorization is exact when the output-Hessian factor does not depend on
    the sample (spec §6.3; Martens & Grosse 2015 §3)."""
    if case == "batch_one":
        model, loss, data = seeded_mlp([4, 5, 3]), "cross_entropy", seeded_batches("cross_entropy", 4, 3, sizes=(1,))
    else:
        model, loss, data = seeded_mlp([4, 5, 3, 2], act=None), "mse", seeded_batches("mse", 4, 2, sizes=(6, 4))
    G = dense_ggn(model, loss, data, reduction)
    kfac = oc.KFAC(model, oc.as_loss(loss, reduction), None, data, fisher_type=fisher_type,
                   separate_weight_and_bias=separate_weight_and_bias)
    err = max(kfac_block_errors(kfac, G, model).values())
    return _check("K-FAC exact", "K-FAC blocks = GGN blocks (batch 1 / deep linear MSE)", SPEC + ".3", err, 1e-10,
                  err <= 1e-10, problem=case, fisher_type=fisher_type, reduction=reduction)


def kfac_mc_unbiased(fisher_type: str = "mc", seeds: int = 150) -> TheoremCheck:
    """MC K-FAC is type-2 K-FAC in expectation: over ``seeds`` independent draws the mean of S is within
    6 standard errors (the sample standard deviation / sqrt(seeds)) of type-2's S entrywise, and A is the same.
    Measured: the largest ``|mean - S| / (6 se)``; bound 1."""
    model = seeded_mlp([4, 5, 3])
    data = seeded_batches("cross_entropy", 4, 3, sizes=(6,))
    exact = oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2").factors()
    draws = [oc.KFAC(model, "cross_entropy", None, data, fisher_type=fisher_type, seed=s).factors()
             for s in range(seeds)]
    worst, a_err = 0.0, 0.0
    for name, (A, S) in exact.items():
        Ss = torch.stack([d[name][1] for d in draws])
        mean, se = Ss.mean(0), Ss.std(0) / math.sqrt(seeds)
        worst = max(worst, float(((mean - S).abs() / (6 * se + 1e-14)).max()))
        a_err = max(a_err, rel_err(draws[0][name][0], A))
    return _check("MC K-FAC unbiased", "E[S_mc] = S_type2 (6 standard errors), A unchanged", SPEC + ".3", worst, 1.0,
                  worst <= 1.0 and a_err <= 1e-12, problem="MLP 4-5-3, cross-entropy, 6 samples", seeds=seeds)


# ------------------------------------------------------------------------------------------------
# 7. Monte-Carlo Fisher
# ------------------------------------------------------------------------------------------------
def _sample_gradient_law(loss: str, z: torch.Tensor) -> list[tuple[float, torch.Tensor]] | torch.Tensor:
    """The law of the per-term output gradient under the model's predictive distribution: for MSE the
    covariance ``2 I`` of ``g = 2(z - y)``, ``y ~ N(z, I/2)``; for BCE the list of ``(probability, g)`` over the
    2^C label vectors, ``g = sigmoid(z) - b``."""
    if loss == "mse":
        return 2.0 * torch.eye(z.numel(), dtype=DT)
    s = torch.sigmoid(z)
    out = []
    for bits in itertools.product((0.0, 1.0), repeat=z.numel()):
        b = torch.tensor(bits, dtype=DT)
        prob = float(torch.prod(torch.where(b > 0, s, 1 - s)))
        out.append((prob, s - b))
    return out


def mc_fisher_unbiased(loss: str = "mse", loss_obj: Any = None, mc_samples: int = 1000, seed: int = 0
                       ) -> TheoremCheck:
    """The Monte-Carlo Fisher (labels drawn from the model, ``mc_samples`` per term) is unbiased for the Fisher,
    which for these losses is the GGN, computed here in closed form independently of the operator:
    MSE (mean, torch's ``N(z, I/2)`` predictive): ``F = (2/(N C)) sum_n J_n^T J_n``;
    BCE with logits (mean): ``F = (1/(N C)) sum_n J_n^T diag(p_n (1 - p_n)) J_n``; ``J_n`` by autograd.

    Tolerance (derived from the sample size): with ``a_n = J_n^T g_n`` and ``c = 1/(N C)``, the estimate is
    ``F_hat = (c/M) sum_n sum_m a_nm a_nm^T``, so ``E||F_hat - F||_F^2 = (c^2/M) sum_n (E||a_n||^4 - ||Sigma_n||_F^2)``
    with ``Sigma_n = E a_n a_n^T``; ``E||a||^4 = (tr Sigma)^2 + 2 ||Sigma||_F^2`` for the Gaussian (MSE) gradient and
    the exact sum over the 2^C label vectors for BCE. Chebyshev: ``||F_hat - F||_F <= 10 sigma`` with probability
    >= 99 % (``sigma`` the root of that expectation). Measured: ``||F_hat - F||_F``; bound ``10 sigma`` (a doubled
    MSE variance is off by ``||F||_F``, about 33 sigma here).
    """
    model = seeded_mlp([3, 4, 2], seed=5)
    data = seeded_batches(loss, 3, 2, sizes=(6,), seed=6)
    X = data[0][0]
    N, C = X.shape[0], 2
    c = 1.0 / (N * C)
    with torch.no_grad():
        Z = model(X)
    J = output_jacobian(model, X).reshape(N, C, -1)
    F = torch.zeros(J.shape[-1], J.shape[-1], dtype=DT)
    var = 0.0
    for n in range(N):
        law = _sample_gradient_law(loss, Z[n])
        if isinstance(law, torch.Tensor):
            Sigma = J[n].T @ law @ J[n]
            fourth = float(torch.trace(Sigma)) ** 2 + 2.0 * float((Sigma**2).sum())
        else:
            Sigma = sum(p * torch.outer(J[n].T @ g, J[n].T @ g) for p, g in law)
            fourth = sum(p * float((J[n].T @ g) @ (J[n].T @ g)) ** 2 for p, g in law)
        F += c * Sigma
        var += c * c * (fourth - float((Sigma**2).sum())) / mc_samples
    loss_obj = loss_obj if loss_obj is not None else oc.as_loss(loss, "mean")
    F_hat = oc.MCFisher(model, loss_obj, None, data, mc_samples=mc_samples, seed=seed).to_dense()
    measured = float(torch.linalg.norm(F_hat - F))
    sigma = math.sqrt(var)
    bound = CHEBYSHEV_K * sigma
    return _check("MC Fisher unbiased", "E[F_mc] = F (closed form); ||F_mc - F||_F <= 10 sigma (Chebyshev)",
                  "Martens 2020 (JMLR 21, §9.2: Fisher = GGN for exponential-family outputs)", measured, bound,
                  measured <= bound, problem=f"MLP 3-4-2 tanh, {loss} mean, N = {N}", mc_samples=mc_samples,
                  sigma=sigma, fisher_norm=float(torch.linalg.norm(F)))


# ------------------------------------------------------------------------------------------------
# 8. Damped inverses
# ------------------------------------------------------------------------------------------------
def _kfac_small(sep=True):
    model = seeded_mlp([4, 5, 3])
    data = seeded_batches("cross_entropy", 4, 3, sizes=(7,))
    return model, oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2", separate_weight_and_bias=sep)


def damped_inverse(mode: str = "exact", lam: float = 1e-3, sep: bool = True, damping_cls: type = Damping
                   ) -> TheoremCheck:
    """``(S (x) A + lambda I)^{-1} v`` from the factors' eigendecompositions (Grosse et al. 2023, eq. 21) equals a
    dense ``torch.linalg.solve`` with K-FAC's dense matrix to 1e-10 relative."""
    _, kfac = _kfac_small(sep)
    K = kfac.to_dense()
    v = torch.randn(kfac.n, 3, generator=torch.Generator().manual_seed(11), dtype=DT)
    ref = torch.linalg.solve(K + lam * torch.eye(kfac.n, dtype=DT), v)
    err = rel_err(kfac.solve(v, damping_cls(mode, lam)), ref)
    return _check("K-FAC damped inverse", "(K + lambda I)^{-1} v by eigendecompositions = dense solve",
                  "Grosse et al. 2023 (arXiv:2308.03296), eq. 21", err, 1e-10, err <= 1e-10,
                  problem="K-FAC MLP 4-5-3", mode=mode, lam=lam)


def heuristic_inverse(lam: float = 0.05, damping_cls: type = Damping) -> TheoremCheck:
    """The heuristic-damped solve is the exact inverse of ``(S + sqrt(l)/pi I) (x) (A + pi sqrt(l) I)`` per weight
    block and of ``S + sqrt(l)/pi I`` per bias block, ``pi = sqrt((tr A/dim A)/(tr S/dim S))`` (Martens & Grosse
    2015, §6.3), built densely here; 1e-10 relative."""
    model, kfac = _kfac_small()
    v = torch.randn(kfac.n, 2, generator=torch.Generator().manual_seed(12), dtype=DT)
    sl = block_slices(model)
    Minv = torch.zeros(kfac.n, kfac.n, dtype=DT)
    for layer, (A, S) in kfac.factors().items():
        pi = math.sqrt((float(A.trace()) / A.shape[0]) / (float(S.trace()) / S.shape[0]))
        Ad = A + pi * math.sqrt(lam) * torch.eye(A.shape[0], dtype=DT)
        Sd = S + math.sqrt(lam) / pi * torch.eye(S.shape[0], dtype=DT)
        sw, sb = sl[f"{layer}.weight"], sl[f"{layer}.bias"]
        Minv[sw, sw] = torch.linalg.inv(torch.kron(Sd, Ad))
        Minv[sb, sb] = torch.linalg.inv(Sd)
    err = rel_err(kfac.solve(v, damping_cls("heuristic", lam)), Minv @ v)
    return _check("K-FAC heuristic damping", "solve = inverse of (S + sqrt(l)/pi I) (x) (A + pi sqrt(l) I)",
                  "Martens & Grosse 2015 (arXiv:1503.05671), §6.3", err, 1e-10, err <= 1e-10,
                  problem="K-FAC MLP 4-5-3", lam=lam)


# ------------------------------------------------------------------------------------------------
# 9. Scaling conventions
# ------------------------------------------------------------------------------------------------
def scaling_conventions(loss: str = "mse", reduction: str = "mean", ggn_cls: type = oc.GGN) -> TheoremCheck:
    """The GGN equals the dense GGN of torch's batch loss combined over batches as the loss of the whole data set
    (``w_b = B_b/N`` for mean); sum / mean = N C (MSE, BCE) or N (cross-entropy); batch-1 K-FAC matches too.
    Measured: the largest of the three relative errors; bound 1e-12 (K-FAC: 1e-10)."""
    model = seeded_mlp([4, 5, 3])
    data = seeded_batches(loss, 4, 3, sizes=(4, 2))
    G = ggn_cls(model, oc.as_loss(loss, reduction), None, data).to_dense()
    err = rel_err(G, dense_ggn(model, loss, data, reduction))
    ratio_err = 0.0
    if reduction == "sum":
        N = sum(len(X) for X, _ in data)
        ratio = N * (1 if loss == "cross_entropy" else 3)
        ratio_err = rel_err(G, ratio * ggn_cls(model, oc.as_loss(loss, "mean"), None, data).to_dense())
    one = [(data[0][0][:1], data[0][1][:1])]
    K = oc.KFAC(model, oc.as_loss(loss, reduction), None, one, fisher_type="type2")
    k_err = max(kfac_block_errors(K, dense_ggn(model, loss, one, reduction), model).values())
    measured = max(err, ratio_err)
    return _check("scaling conventions", "GGN = dense GGN of torch's loss; sum/mean = N C (N for CE)", SPEC + ".8",
                  measured, 1e-12, measured <= 1e-12 and k_err <= 1e-10, problem=f"MLP 4-5-3, {loss} {reduction}",
                  kfac_error=k_err)


def kfac_matches_curvlinops(loss: str = "mse", reduction: str = "mean", fisher_type: str = "type2") -> TheoremCheck:
    """Our K-FAC equals curvlinops' ``KFACLinearOperator`` (the same convention; with the same seed even the MC
    label draws coincide): 1e-12 relative. Needs curvlinops (an optional reference)."""
    import curvlinops  # optional reference package, not a project import

    model = seeded_mlp([4, 5, 3])
    data = seeded_batches(loss, 4, 3, sizes=(4, 2))
    ours = oc.KFAC(model, oc.as_loss(loss, reduction), None, data, fisher_type=fisher_type, seed=7)
    torch_loss = {"mse": nn.MSELoss, "cross_entropy": nn.CrossEntropyLoss,
                  "bce_with_logits": nn.BCEWithLogitsLoss}[loss](reduction=reduction)
    theirs = curvlinops.KFACLinearOperator(model, torch_loss, list(model.parameters()), data,
                                           fisher_type={"type2": "type-2", "empirical": "empirical",
                                                        "mc": "mc"}[fisher_type], seed=7, check_deterministic=False)
    err = rel_err(ours.to_dense(), theirs @ torch.eye(ours.n, dtype=DT))
    return _check("K-FAC = curvlinops", "K-FAC = curvlinops KFACLinearOperator", "curvlinops (reference code)", err,
                  1e-12, err <= 1e-12, problem=f"MLP 4-5-3, {loss} {reduction}", fisher_type=fisher_type)


# ------------------------------------------------------------------------------------------------
# 10-11. Damping rules
# ------------------------------------------------------------------------------------------------
LM_OMEGA = (19.0 / 20.0) ** 5  # Martens & Grosse 2015, §6.5: omega_1 = (19/20)^{T_1}, T_1 = 5


def lm_damping_adaptation(damping_cls: type = Damping, value: float = 1.0) -> TheoremCheck:
    """Martens & Grosse 2015, §6.5: after a reduction ratio ``rho > 3/4`` the damping shrinks to ``omega lambda``,
    after ``rho < 1/4`` it grows to ``lambda / omega``, in between it stays; ``omega = (19/20)^5`` (tensorflow/kfac's
    decay 0.95 and interval 5). Measured: the largest relative error of the factor applied for
    ``rho in {0.9, 1.5, 0.1, -1, -inf, 0.5}``; bound 1e-12 (rounding)."""
    expected = {0.9: LM_OMEGA, 1.5: LM_OMEGA, 0.1: 1 / LM_OMEGA, -1.0: 1 / LM_OMEGA, -math.inf: 1 / LM_OMEGA,
                0.5: 1.0}
    worst, factors = 0.0, {}
    for rho, want in expected.items():
        d = damping_cls("lm", value)
        got = d.update(rho) / value
        factors[rho] = got
        worst = max(worst, abs(got / want - 1.0))
    return _check("LM damping adaptation", "rho > 3/4: lambda *= (19/20)^5; rho < 1/4: lambda /= (19/20)^5",
                  "Martens & Grosse 2015 (arXiv:1503.05671), §6.5", worst, 1e-12, worst <= 1e-12,
                  problem="Damping('lm', 1.0)", factors=factors)


def grad_norm_damping(damping_cls: type = Damping, c: float = 4.0, seed: int = 3) -> TheoremCheck:
    """Mishchenko 2021 (arXiv:2112.02089): ``x = (C + sqrt(c ||g||) I)^{-1} g``. A 6x6 PSD matrix with
    ``||g|| = 9`` (so ``sqrt(c ||g||) = 6``, far from ``c ||g|| = 36``): the solve through
    :class:`~optlib.curvature.DenseCurvature` equals numpy's solve with that shift. Measured: relative error;
    bound 1e-10."""
    Cm, g = seeded_psd_system(6, 9.0, seed)
    ref = np.linalg.solve(Cm + math.sqrt(c * 9.0) * np.eye(6), g)
    op = oc.DenseCurvature(torch.from_numpy(Cm), psd=True)
    x = op.solve(torch.from_numpy(g), damping_cls("grad_norm", c=c)).numpy()
    err = float(np.linalg.norm(x - ref) / np.linalg.norm(ref))
    return _check("grad-norm damping", "lambda = sqrt(c ||g||) in (C + lambda I)^{-1} g",
                  "Mishchenko 2021 (arXiv:2112.02089)", err, 1e-10, err <= 1e-10, problem="dense 6x6 PSD, ||g|| = 9",
                  c=c)


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------
def curvature_table(quick: bool = True) -> list[TheoremCheck]:
    """Every statement on its default problem (``quick``: one loss per statement, MC K-FAC with 40 seeds)."""
    rows = [
        ggn_equals_hessian(),
        ggn_psd(),
        ggn_psd_lower_bound(),
        ggn_products("mse"),
        kfac_exact("batch_one"),
        kfac_exact("deep_linear"),
        kfac_mc_unbiased(seeds=40 if quick else 150),
        mc_fisher_unbiased("mse"),
        mc_fisher_unbiased("bce_with_logits"),
        damped_inverse(),
        heuristic_inverse(),
        scaling_conventions(),
        lm_damping_adaptation(),
        grad_norm_damping(),
    ]
    if not quick:
        rows += [ggn_products(loss) for loss in ("cross_entropy", "bce_with_logits")]
        rows += [scaling_conventions(loss, red) for loss in TORCH_LOSSES for red in ("mean", "sum")]
    return rows
