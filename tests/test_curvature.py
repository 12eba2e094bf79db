"""Curvature operators: formats, Hessian, empirical/MC Fisher, EK-FAC, Conv2d and weight sharing,
damping rules and their errors, estimators, flat problems, and agreement with curvlinops.

References are independent float64 computations (dense autograd, dense linear algebra, closed forms).
The GGN/K-FAC theorems of spec 50 §6 live in ``tests/theorems/test_gauss_newton.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

import optlib.curvature as oc
from optlib import Problem
from optlib.curvature.damping import Damping
from optlib.linalg import FactorizationError, NonPSDCurvatureError

DT = torch.float64


def mlp(sizes, act=nn.Tanh, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if act is not None and i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).to(DT)


def ce_data(sizes=(5, 3), n_in=4, n_out=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(b, n_in, generator=g, dtype=DT), torch.randint(0, n_out, (b,), generator=g)) for b in sizes]


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


def per_sample_grads(model, data):
    """Rows: the gradient of each sample's summed per-term cross-entropy (autograd, one sample at a time)."""
    rows = []
    for X, y in data:
        for i in range(len(X)):
            model.zero_grad()
            nn.functional.cross_entropy(model(X[i:i + 1]), y[i:i + 1], reduction="sum").backward()
            rows.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    model.zero_grad()
    return torch.stack(rows)


# ------------------------------------------------------------------------------------------------ formats
def test_matmul_formats_round_trip():
    model = mlp([4, 5, 3])
    op = oc.GGN(model, "cross_entropy", None, ce_data())
    assert op.shape == (op.n, op.n) and op.n == sum(p.numel() for p in model.parameters())
    V = torch.randn(op.n, 3, dtype=DT)
    flat = op @ V
    as_list = [t.movedim(0, -1) for t in op._to_cols(V)[0].values()]
    out_list = op @ as_list
    assert isinstance(out_list, list) and [t.shape for t in out_list] == [t.shape for t in as_list]
    torch.testing.assert_close(op.flatten({n: t.movedim(-1, 0) for n, t in zip(op.names, out_list)}), flat)
    vec = {n: t[..., 0] for n, t in zip(op.names, as_list)}
    out_dict = op @ vec
    assert set(out_dict) == set(op.names)
    torch.testing.assert_close(torch.cat([out_dict[n].flatten() for n in op.names]), flat[:, 0])
    torch.testing.assert_close(op.matvec(V[:, 0]), flat[:, 0])


def test_bad_inputs_give_clear_errors():
    model = mlp([4, 5, 3])
    op = oc.GGN(model, "cross_entropy", None, ce_data())
    with pytest.raises(ValueError, match="shape"):
        op @ torch.zeros(op.n + 1)
    with pytest.raises(ValueError, match="missing"):
        op @ {"0.weight": torch.zeros(5, 4, dtype=DT)}
    with pytest.raises(TypeError):
        op @ 3.0
    with pytest.raises(ValueError, match="unknown loss"):
        oc.GGN(model, "hinge", None, ce_data())
    with pytest.raises(TypeError, match="CustomLoss"):
        oc.GGN(model, nn.L1Loss(), None, ce_data())
    with pytest.raises(ValueError, match="labels"):
        oc.GGN(model, "cross_entropy", None, [(torch.randn(2, 4, dtype=DT), torch.tensor([0, 7]))])
    with pytest.raises(ValueError, match="unknown parameter"):
        oc.GGN(model, "cross_entropy", {"nope": torch.zeros(1, dtype=DT)}, ce_data())
    with pytest.raises(ValueError, match="damping mode"):
        Damping("levenberg")
    with pytest.raises(ValueError, match="fisher_type"):
        oc.KFAC(model, "cross_entropy", None, ce_data(), fisher_type="true")
    with pytest.raises(ValueError, match="Linear and nn.Conv2d"):
        oc.KFAC(nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3)).to(DT), "cross_entropy", None, ce_data())


# ------------------------------------------------------------------------------------------------ Hessian
def test_hessian_matches_autograd_and_functional_model():
    model = mlp([4, 5, 3])
    data = ce_data()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    N = sum(len(X) for X, _ in data)

    def total(t):
        p, off = {}, 0
        for n, s in zip(names, shapes):
            p[n] = t[off:off + s.numel()].view(s)
            off += s.numel()
        return sum(len(X) / N * nn.functional.cross_entropy(functional_call(model, p, (X,)), y) for X, y in data)

    H_ref = torch.autograd.functional.hessian(total, theta)
    H = oc.Hessian(model, nn.CrossEntropyLoss(), None, data)
    assert rel_err(H.to_dense(), H_ref) <= 1e-12
    params = {n: p.detach() for n, p in model.named_parameters()}
    Hf = oc.Hessian(lambda p, X: functional_call(model, p, (X,)), "cross_entropy", params, data)
    assert rel_err(Hf.to_dense(), H_ref) <= 1e-12


def test_hessian_solve_needs_positive_definite_shift():
    model = mlp([4, 5, 3], seed=3)
    data = ce_data(sizes=(8,), seed=4)
    H = oc.Hessian(model, "cross_entropy", None, data)
    lam_min = float(torch.linalg.eigvalsh(H.to_dense())[0])
    assert lam_min < 0
    v = torch.randn(H.n, dtype=DT)
    with pytest.raises(FactorizationError, match="not positive definite"):
        H.solve(v, Damping("tikhonov", 0.5 * abs(lam_min)))
    lam = 2 * abs(lam_min) + 0.1
    x = H.solve(v, lam)
    torch.testing.assert_close(H @ x + lam * x, v, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------------------------------------ GGN family
def test_ggn_rejects_nonconvex_loss_and_accepts_declared_convex_one():
    model = mlp([4, 5, 3])
    data = [(torch.randn(4, 4, dtype=DT), torch.randn(4, 3, dtype=DT))]
    cos = oc.CustomLoss(lambda z, y: torch.cos(z - y).mean(), convex=False)
    with pytest.raises(ValueError, match="use Hessian"):
        oc.GGN(model, cos, None, data)
    sq = oc.CustomLoss(lambda z, y: ((z - y) ** 2).mean(), reduction="mean", convex=True)
    G_custom = oc.GGN(model, sq, None, data).to_dense()
    G_builtin = oc.GGN(model, "mse", None, data).to_dense()
    assert rel_err(G_custom, G_builtin) <= 1e-12
    with pytest.raises(ValueError, match="likelihood"):
        oc.EmpiricalFisher(model, sq, None, data)


def test_empirical_fisher_matches_per_sample_gradients():
    """EF = (1/N) sum_n g_n g_n^T for mean cross-entropy (per-sample gradients from autograd)."""
    model = mlp([4, 5, 3])
    data = ce_data()
    Gs = per_sample_grads(model, data)
    ref = Gs.T @ Gs / Gs.shape[0]
    E = oc.EmpiricalFisher(model, nn.CrossEntropyLoss(), None, data).to_dense()
    assert rel_err(E, ref) <= 1e-12
    # would catch: the empirical Fisher is not the GGN
    assert rel_err(oc.GGN(model, "cross_entropy", None, data).to_dense(), ref) > 1e-2


def test_mc_fisher_is_unbiased():
    """The mean of MC Fishers over seeds is within 6 standard errors of the GGN entrywise (statistical
    tolerance); the empirical Fisher lies outside that band."""
    model = mlp([4, 5, 3])
    data = ce_data(sizes=(6,))
    G = oc.GGN(model, "cross_entropy", None, data).to_dense()
    seeds = 120
    Ms = torch.stack([oc.MCFisher(model, "cross_entropy", None, data, seed=s).to_dense() for s in range(seeds)])
    mean, se = Ms.mean(0), Ms.std(0) / math.sqrt(seeds)
    assert bool(((mean - G).abs() <= 6 * se + 1e-14).all())
    E = oc.EmpiricalFisher(model, "cross_entropy", None, data).to_dense()
    assert bool(((E - G).abs() > 6 * se + 1e-14).any())
    # a fixed seed gives a fixed symmetric operator; more samples per term shrink the spread
    F1 = oc.MCFisher(model, "cross_entropy", None, data, seed=5)
    torch.testing.assert_close(F1.to_dense(), F1.to_dense())
    M1 = F1.to_dense()
    torch.testing.assert_close(M1, M1.T, rtol=1e-12, atol=1e-14)
    err1 = rel_err(M1, G)
    err50 = rel_err(oc.MCFisher(model, "cross_entropy", None, data, seed=5, mc_samples=200).to_dense(), G)
    assert err50 < err1


# ------------------------------------------------------------------------------------------------ K-FAC / EK-FAC
def test_kfac_psd_and_symmetric_and_ekfac_equals_kfac_for_one_sample():
    model = mlp([4, 5, 3])
    data = ce_data(sizes=(1,))
    K = oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2").to_dense()
    E = oc.EKFAC(model, "cross_entropy", None, data, fisher_type="type2").to_dense()
    assert rel_err(E, K) <= 1e-12  # one sample: the per-sample diagonal is the Kronecker one
    big = ce_data(sizes=(9,))
    K9 = oc.KFAC(model, "cross_entropy", None, big, fisher_type="type2").to_dense()
    E9 = oc.EKFAC(model, "cross_entropy", None, big, fisher_type="type2")
    torch.testing.assert_close(K9, K9.T, rtol=1e-12, atol=1e-15)
    assert float(torch.linalg.eigvalsh(K9)[0]) >= -1e-12 * float(K9.abs().max())
    assert rel_err(E9.to_dense(), K9) > 1e-3  # the correction changes the diagonal for N > 1


def test_ekfac_diagonal_is_exact_in_the_kfac_eigenbasis():
    """EK-FAC's eigenvalues are the second moments of per-sample gradients in the K-FAC eigenbasis: for each
    weight block, Lambda = diag(Q^T F_EF,block Q) with Q = Q_S (x) Q_A (empirical type, independent EF)."""
    model = mlp([4, 5, 3])
    data = ce_data(sizes=(7,))
    ek = oc.EKFAC(model, "cross_entropy", None, data, fisher_type="empirical")
    Gs = per_sample_grads(model, data)
    EF = Gs.T @ Gs / Gs.shape[0]
    off = 0
    for name, p in model.named_parameters():
        m = p.numel()
        layer = name.rpartition(".")[0]
        if name.endswith("weight"):
            (_, QS), (_, QA) = ek._factor_eigs(next(L for L in ek.layers if L.name == layer))
            Q = torch.kron(QS, QA)
            ref = torch.diagonal(Q.T @ EF[off:off + m, off:off + m] @ Q).reshape(p.shape)
            assert rel_err(ek.eigenvalues()[layer][0], ref) <= 1e-10
        off += m
    x = torch.randn(ek.n, dtype=DT)
    D = ek.to_dense()
    torch.testing.assert_close(ek.solve(x, Damping("exact", 0.1)),
                               torch.linalg.solve(D + 0.1 * torch.eye(ek.n, dtype=DT), x), rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="EK-FAC"):
        ek.solve(x, Damping("heuristic", 0.1))


def _cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(3, 2, 2, stride=2),
                         nn.Flatten(), nn.Linear(2 * 3 * 3, 4)).to(DT)


def _cnn_data():
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(3, 2, 6, 6, generator=g, dtype=DT), torch.randint(0, 4, (3,), generator=g)),
            (torch.randn(2, 2, 6, 6, generator=g, dtype=DT), torch.randint(0, 4, (2,), generator=g))]


@pytest.mark.parametrize("approx", ["expand", "reduce"])
def test_kfac_conv2d_and_weight_sharing_match_curvlinops(approx):
    """Conv2d (expand/reduce) and a Linear layer on sequence inputs: factors equal curvlinops' (ratio 1)."""
    curvlinops = pytest.importorskip("curvlinops")
    model, data = _cnn(), _cnn_data()
    for sep in (True, False):
        ours = oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2", kfac_approx=approx,
                       separate_weight_and_bias=sep)
        theirs = curvlinops.KFACLinearOperator(model, nn.CrossEntropyLoss(), list(model.parameters()), data,
                                               fisher_type="type-2", kfac_approx=approx, separate_weight_and_bias=sep,
                                               check_deterministic=False)
        assert rel_err(ours.to_dense(), theirs @ torch.eye(ours.n, dtype=DT)) <= 1e-11
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    g = torch.Generator().manual_seed(2)
    sdata = [(torch.randn(3, 5, 3, generator=g, dtype=DT), torch.randn(3, 5, 2, generator=g, dtype=DT))]
    ours = oc.KFAC(seq, "mse", None, sdata, fisher_type="type2", kfac_approx=approx)
    theirs = curvlinops.KFACLinearOperator(seq, nn.MSELoss(), list(seq.parameters()), sdata, fisher_type="type-2",
                                           kfac_approx=approx, check_deterministic=False)
    assert rel_err(ours.to_dense(), theirs @ torch.eye(ours.n, dtype=DT)) <= 1e-11


def test_ggn_hessian_ekfac_and_inverses_match_curvlinops():
    curvlinops = pytest.importorskip("curvlinops")
    model, data = mlp([4, 5, 3]), ce_data()
    params = list(model.parameters())
    eye = torch.eye(sum(p.numel() for p in params), dtype=DT)
    lossf = nn.CrossEntropyLoss()
    pairs = [
        (oc.GGN(model, lossf, None, data), curvlinops.GGNLinearOperator(model, lossf, params, data)),
        (oc.Hessian(model, lossf, None, data), curvlinops.HessianLinearOperator(model, lossf, params, data)),
        (oc.EmpiricalFisher(model, lossf, None, data), curvlinops.EFLinearOperator(model, lossf, params, data)),
        (oc.EKFAC(model, lossf, None, data, fisher_type="type2"),
         curvlinops.EKFACLinearOperator(model, lossf, params, data, fisher_type="type-2")),
    ]
    for ours, theirs in pairs:
        assert rel_err(ours.to_dense(), theirs @ eye) <= 1e-12, type(ours).__name__
    K = oc.KFAC(model, lossf, None, data, fisher_type="type2")
    Kc = curvlinops.KFACLinearOperator(model, lossf, params, data, fisher_type="type-2")
    v = torch.randn(K.n, 2, dtype=DT)
    for mode, kw in (("exact", dict(use_exact_damping=True)), ("heuristic", dict(use_heuristic_damping=True))):
        inv = curvlinops.KFACInverseLinearOperator(Kc, damping=0.01, min_damping=0.0, **kw)
        assert rel_err(K.solve(v, Damping(mode, 0.01)), inv @ v) <= 1e-10


# ------------------------------------------------------------------------------------------------ damping
def test_undamped_singular_operator_errors_before_solving():
    """More parameters than outputs: the GGN is singular; 'none' raises, Tikhonov solves."""
    model = mlp([4, 5, 3])
    data = ce_data(sizes=(2,))
    G = oc.GGN(model, "cross_entropy", None, data)
    v = torch.randn(G.n, dtype=DT)
    with pytest.raises(FactorizationError, match="not positive definite"):
        G.solve(v)
    with pytest.raises(FactorizationError):
        oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2").solve(v, Damping("none"))
    x = G.solve(v, 1e-2)
    torch.testing.assert_close(G @ x + 1e-2 * x, v, rtol=1e-8, atol=1e-8)
    x_cg = G.solve(v, 1e-2, method="cg", rtol=1e-12)  # matrix-free path
    torch.testing.assert_close(x_cg, x, rtol=1e-7, atol=1e-8)
    with pytest.raises(ValueError, match="Kronecker"):
        G.solve(v, Damping("heuristic", 1e-2))


def test_grad_norm_damping_uses_sqrt_c_norm_per_layer():
    """lambda_l = max(min, sqrt(c ||g_l||)) per layer for K-FAC, one global value for dense operators."""
    model = mlp([4, 5, 3])
    data = ce_data(sizes=(7,))
    K = oc.KFAC(model, "cross_entropy", None, data, fisher_type="type2")
    g = K.gradient()
    flat_g = torch.cat([g[n].flatten() for n in K.names])
    d = Damping("grad_norm", c=0.7, min_value=1e-6)
    x = K.solve(flat_g, d)
    Kd = K.to_dense()
    off = 0
    for layer in ("0", "2"):
        names = [f"{layer}.weight", f"{layer}.bias"]
        m = sum(g[n].numel() for n in names)
        gl = flat_g[off:off + m]
        lam = max(1e-6, math.sqrt(0.7 * float(gl.norm())))
        # separate weight and bias blocks within the layer share lambda_l
        mw = g[names[0]].numel()
        for s in (slice(off, off + mw), slice(off + mw, off + m)):
            ref = torch.linalg.solve(Kd[s, s] + lam * torch.eye(s.stop - s.start, dtype=DT), flat_g[s])
            torch.testing.assert_close(x[s], ref, rtol=1e-9, atol=1e-12)
        off += m
    G = oc.GGN(model, "cross_entropy", None, data)
    lam = math.sqrt(0.7 * float(flat_g.norm()))
    ref = torch.linalg.solve(G.to_dense() + lam * torch.eye(G.n, dtype=DT), flat_g)
    torch.testing.assert_close(G.solve(flat_g, d), ref, rtol=1e-9, atol=1e-12)


def test_lm_rule_constants():
    """Martens & Grosse 2015 §6.5: omega_1 = (19/20)^5; rho > 3/4 shrinks, rho < 1/4 grows, else unchanged."""
    d = Damping("lm", 150.0, min_value=1e-8)
    omega = 0.95 ** 5
    assert d.omega == pytest.approx(0.7737809375, rel=1e-15)
    assert d.update(0.9) == pytest.approx(150.0 * omega)
    assert d.update(0.5) == pytest.approx(150.0 * omega)
    assert d.update(0.1) == pytest.approx(150.0)
    assert d.update(float("-inf")) == pytest.approx(150.0 / omega)
    assert Damping.reduction_ratio(1.0, 0.5, -1.0) == pytest.approx(0.5)
    assert Damping.reduction_ratio(1.0, float("nan"), -1.0) == -math.inf
    with pytest.raises(ValueError, match="lm"):
        Damping("tikhonov", 1.0).update(0.9)
    floor = Damping("lm", 1e-7, min_value=1e-6)
    assert floor.lam() == 1e-6


def test_heuristic_damping_rejects_zero_factor():
    with pytest.raises(ValueError, match="positive mean eigenvalue"):
        Damping("heuristic", 1.0).heuristic_shifts(0.0, 3, 1.0, 2)


# ------------------------------------------------------------------------------------------------ estimators
def test_lanczos_extreme_eigenvalues_match_dense():
    model = mlp([4, 5, 3], seed=3)
    data = ce_data(sizes=(8,), seed=4)
    H = oc.Hessian(model, "cross_entropy", None, data)
    ev = torch.linalg.eigvalsh(H.to_dense())
    r = oc.lanczos(H, steps=H.n, seed=1)  # full Krylov space: exact up to rounding
    torch.testing.assert_close(r.largest(2), ev[-2:].flip(0), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(r.smallest(2), ev[:2], rtol=1e-9, atol=1e-10)
    # fewer steps: Ritz values lie inside [lambda_min, lambda_max] and the extremes are close
    r20 = oc.lanczos(H, steps=20, seed=1)
    assert float(r20.largest(1)) <= float(ev[-1]) + 1e-10 and float(r20.smallest(1)) >= float(ev[0]) - 1e-10
    assert abs(float(r20.largest(1)) - float(ev[-1])) <= 1e-3 * float(ev.abs().max())


def test_hutchinson_trace_and_diagonal_within_statistical_tolerance():
    """Rademacher estimates within 5 standard deviations of the exact trace/diagonal, with the standard
    deviation from the exact variance 2(||C||_F^2 - sum C_ii^2)/m (trace) and sum_{j!=i} C_ij^2/m (diagonal)."""
    model = mlp([4, 5, 3])
    G = oc.GGN(model, "cross_entropy", None, ce_data())
    M = G.to_dense()
    m = 400
    tr = oc.hutchinson_trace(G, m, seed=3)
    sd_tr = math.sqrt(2 * (float((M ** 2).sum()) - float((torch.diagonal(M) ** 2).sum())) / m)
    assert abs(tr.value - float(M.trace())) <= 5 * sd_tr
    dg = oc.hutchinson_diagonal(G, m, seed=4)
    sd_dg = (((M ** 2).sum(1) - torch.diagonal(M) ** 2) / m).sqrt()
    assert bool(((dg.value - torch.diagonal(M)).abs() <= 5 * sd_dg + 1e-14).all())
    # would catch: a factor-2 slip in the operator (the trace of 2C) is far outside the band
    assert abs(tr.value - 2 * float(M.trace())) > 5 * sd_tr
    # seeded: the same seed repeats the estimate
    assert oc.hutchinson_trace(G, m, seed=3).value == tr.value


# ------------------------------------------------------------------------------------------- flat problems, provider
def test_flat_problem_operators():
    A = torch.tensor([[1.0, 2.0], [0.5, -1.0], [3.0, 0.0]], dtype=DT)
    b = torch.tensor([1.0, -2.0, 0.5], dtype=DT)

    def residuals(x):
        return A @ x + 0.1 * x[0] * x[1] - b

    prob = Problem(lambda x: 0.5 * residuals(x).pow(2).sum(), 2, residuals=residuals,
                   outer=lambda r: 0.5 * r.pow(2).sum())
    x = torch.tensor([0.3, -0.7], dtype=DT)
    J = torch.autograd.functional.jacobian(residuals, x)
    G = oc.GGN.from_problem(prob, x)
    torch.testing.assert_close(G.to_dense(), J.T @ J, rtol=1e-12, atol=1e-12)
    H = oc.Hessian.from_problem(prob, x)
    H_ref = torch.autograd.functional.hessian(lambda t: 0.5 * residuals(t).pow(2).sum(), x)
    torch.testing.assert_close(H @ torch.eye(2, dtype=DT), H_ref, rtol=1e-12, atol=1e-12)
    bad = Problem(lambda x: -residuals(x).pow(2).sum(), 2, residuals=residuals, outer=lambda r: -r.pow(2).sum())
    with pytest.raises(NonPSDCurvatureError, match="Hessian"):
        oc.GGN.from_problem(bad, x)


def test_provider_builds_each_kind():
    model, data = mlp([4, 5, 3]), ce_data()
    for kind in oc.KINDS:
        op = oc.provider(model, "cross_entropy", None, data, kind=kind)
        v = torch.randn(op.n, dtype=DT)
        assert (op @ v).shape == v.shape
    K = oc.Provider(model, "cross_entropy", None, data, kind="kfac", fisher_type="type2")
    assert set(K.factors()) == {"0", "2"}
    with pytest.raises(ValueError, match="unknown curvature kind"):
        oc.provider(model, "cross_entropy", None, data, kind="fisher")
    with pytest.raises(TypeError, match="not Kronecker"):
        oc.GGN(model, "cross_entropy", None, data).factors()


def test_psd_operator_with_negative_eigenvalue_is_rejected():
    """An operator that must be PSD but is not raises NonPSDCurvatureError instead of solving."""
    M = torch.diag(torch.tensor([2.0, 1.0, -0.5], dtype=DT))
    v = torch.ones(3, dtype=DT)
    with pytest.raises(NonPSDCurvatureError, match="positive semidefinite"):
        oc.DenseCurvature(M, psd=True).solve(v, 1.0)
    x = oc.DenseCurvature(M, psd=False).solve(v, 1.0)  # indefinite allowed; M + I is PD
    torch.testing.assert_close(x, v / torch.tensor([3.0, 2.0, 0.5], dtype=DT))


def test_scale_benchmark_smoke():
    """``python -m scale.bench.curvature`` on a tiny MLP: ratios are positive, the optlib and curvlinops products
    agree, and the configuration is recorded without the output folder."""
    from scale.bench import curvature as cb

    res = cb.run_benchmark(cb.Config(widths=(8, 4, 3), batch_size=4, repeats=2, warmup=1, kfac_steps=2))
    assert res["ggn_vp"]["optlib"] > 0 and res["kfac_step"]["ratio_median"] > 0
    if res["ggn_vp"]["ratio"] is not None:
        assert res["ggn_vp"]["max_relative_difference"] < 1e-5
    assert res["config"]["widths"] == [8, 4, 3] and "out" not in res["config"]
    assert res["provenance"]["env-torch_threads"] == 1  # measured under the configured thread count


def test_scale_benchmark_cli(tmp_path, capsys):
    """The generated command line: --help names every option, bad values and unknown options exit 2 with a
    message naming them, --print-config round-trips through --config, and the smoke preset writes the JSON."""
    import json

    from scale.bench import curvature as cb

    assert cb.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m scale.bench.curvature")
    for flag in ("--widths", "--batch-size", "--dtype", "--repeats", "--warmup", "--kfac-steps", "--inv-update-freq",
                 "--threads", "--seed", "--out", "--preset"):
        assert flag in out, flag
    assert cb.main(["--widths", "8", "1", "--batch-size", "0", "--out", str(tmp_path)]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    assert cb.main(["--widths", "8"]) == 2
    assert "--widths" in capsys.readouterr().err
    assert cb.main(["--bogus"]) == 2
    assert "unknown option '--bogus'" in capsys.readouterr().err
    assert cb.main(["--kfac-step", "3"]) == 2
    assert "did you mean '--kfac-steps'" in capsys.readouterr().err
    assert cb.main(["--dtype", "float16"]) == 2
    assert "float32" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing ran
    assert cb.main(["--preset", "smoke", "--seed", "3", "--print-config"]) == 0
    toml = tmp_path / "c.toml"
    toml.write_text(capsys.readouterr().out)
    assert cb.COMMAND.parse(["--config", str(toml)])[0] == cb.Config(**cb.PRESETS["smoke"], seed=3)
    assert cb.main(["--preset", "smoke", "--repeats", "2", "--kfac-steps", "2", "--widths", "8", "4", "3",
                    "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / cb.JSON_NAME).read_text())
    assert data["config"]["widths"] == [8, 4, 3] and data["config"]["repeats"] == 2
    assert data["kfac_step"]["ratio_median"] > 0
