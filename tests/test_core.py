"""The core: Problem oracles and counters, minimize's contract, results, callbacks and bad input."""

import importlib

import numpy as np
import pytest
import scipy.optimize
import torch

import optlib
from optlib.linalg import NonPSDCurvatureError
from optlib.result import CALLBACK_STOP, INNER_SEARCH_EXHAUSTED, MAXITER

DT = torch.float64


def make_quadratic(eigs, seed=0):
    """f = 1/2 x^T A x - b^T x with a known A (the reference for every oracle)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((len(eigs), len(eigs))))
    A = torch.tensor(Q @ np.diag(eigs) @ Q.T, dtype=DT)
    A = 0.5 * (A + A.T)
    b = torch.tensor(rng.standard_normal(len(eigs)), dtype=DT)
    return optlib.Problem(lambda x: 0.5 * x @ (A @ x) - b @ x, len(eigs), name="quad"), A, b


def smooth_convex(n=8, seed=1):
    rng = np.random.default_rng(seed)
    A = torch.tensor(rng.standard_normal((3 * n, n)), dtype=DT)
    b = torch.tensor(rng.standard_normal(3 * n), dtype=DT)
    return optlib.Problem(lambda x: torch.nn.functional.softplus(A @ x - b).sum() + 0.05 * x @ x, n, name="softplus")


def test_oracles_match_closed_form_and_count():
    P, A, b = make_quadratic([1.0, 2.0, 5.0, 10.0])
    x = torch.tensor([0.3, -1.0, 2.0, 0.5], dtype=DT)
    v = torch.tensor([1.0, 0.0, -2.0, 3.0], dtype=DT)
    torch.testing.assert_close(P.grad(x), A @ x - b, rtol=1e-12, atol=1e-12)
    f, g = P.value_and_grad(x)
    torch.testing.assert_close(f, 0.5 * x @ A @ x - b @ x)
    torch.testing.assert_close(P.hessian(x), A, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(P.hvp(x, v), A @ v, rtol=1e-12, atol=1e-12)
    assert P.counters.as_dict() == {"nfev": 1, "njev": 2, "nhev": 1, "nhvp": 1, "nres": 0, "njac": 0}


def test_gauss_newton_from_residuals():
    J = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, -1.0]], dtype=DT)
    P = optlib.Problem(lambda x: 0.5 * ((J @ x) ** 2).sum(), 2, residuals=lambda x: J @ x,
                       outer=lambda u: 0.5 * (u**2).sum())
    torch.testing.assert_close(P.gauss_newton(torch.ones(2, dtype=DT)), J.T @ J)
    assert "gauss-newton" in P.available_curvatures()


def test_unknown_curvature_lists_available():
    P, _, _ = make_quadratic([1.0, 2.0])
    with pytest.raises(ValueError, match="available: exact, diagonal"):
        P.curvature("bohning")


def test_from_numpy_matches_scipy_rosen():
    P = optlib.Problem.from_numpy(scipy.optimize.rosen, jac=scipy.optimize.rosen_der, hess=scipy.optimize.rosen_hess)
    x = np.array([-1.2, 1.0, 0.5])
    f, g = P.value_and_grad(torch.tensor(x))
    assert float(f) == pytest.approx(scipy.optimize.rosen(x))
    np.testing.assert_allclose(g.numpy(), scipy.optimize.rosen_der(x))
    res = optlib.minimize(P, x, method="grad-norm-newton", gtol=1e-9, maxiter=500)
    assert res.success and np.allclose(res.x.numpy(), 1.0, atol=1e-6)
    assert P.n == 3  # fixed by the first point it saw
    with pytest.raises(ValueError, match="length 3"):
        optlib.minimize(P, np.zeros(4))


def test_from_numpy_documented_call_form_with_dimension():
    """``Problem.from_numpy(fun, n, jac=..., hess=...)``, the form of Problem(fun, n) with scipy's
    derivative keywords, builds the same problem as the dimension-free form."""
    P = optlib.Problem.from_numpy(scipy.optimize.rosen, 3, jac=scipy.optimize.rosen_der, hess=scipy.optimize.rosen_hess)
    assert P.n == 3
    x = np.array([-1.2, 1.0, 0.5])
    np.testing.assert_allclose(P.hessian(torch.tensor(x)).numpy(), scipy.optimize.rosen_hess(x))
    res = optlib.minimize(P, x, gtol=1e-9, maxiter=500)
    assert res.success and np.allclose(res.x.numpy(), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="length 3"):
        P.check_x(np.zeros(4))
    # a derivative in the dimension's place is named, with the keyword to use
    with pytest.raises(TypeError, match=r"second argument of Problem.from_numpy is the dimension n.*jac=\.\.\."):
        optlib.Problem.from_numpy(scipy.optimize.rosen, scipy.optimize.rosen_der)


def test_from_numpy_without_derivatives_says_what_to_pass():
    P = optlib.Problem.from_numpy(lambda x: float(x @ x), n=2)
    with pytest.raises(ValueError, match="jac="):
        P.grad(torch.zeros(2, dtype=DT))
    P2 = optlib.Problem.from_numpy(lambda x: (float(x @ x), 2 * x), jac=True, n=2)
    with pytest.raises(ValueError, match="hess="):
        P2.hessian(torch.zeros(2, dtype=DT))


@pytest.mark.parametrize(
    "x0, match",
    [
        (np.zeros(3), "length 4"),
        (np.zeros((4, 1)), "length 4"),
        (np.zeros(4, dtype=np.int64), "floating-point"),
        (torch.zeros(4, dtype=torch.complex128), "real floating-point"),
    ],
)
def test_bad_x0_is_a_clear_error(x0, match):
    P, _, _ = make_quadratic([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match=match):
        optlib.minimize(P, x0)


def test_non_finite_start_is_named():
    P = optlib.Problem(lambda x: torch.log(x).sum(), 2)
    with pytest.raises(ValueError, match="objective is not finite at x0"):
        optlib.minimize(P, torch.tensor([-1.0, 1.0], dtype=DT))
    Q = optlib.Problem(lambda x: torch.sqrt(x.abs()).sum(), 2)
    with pytest.raises(ValueError, match="gradient is not finite at x0"):
        optlib.minimize(Q, torch.zeros(2, dtype=DT))


def test_unknown_method_lists_known():
    P, _, _ = make_quadratic([1.0, 2.0])
    with pytest.raises(ValueError, match="known methods: .*cubic-newton.*grad-norm-newton"):
        optlib.minimize(P, np.zeros(2), method="newton-raphson")


def test_maxiter_is_a_result_not_an_exception():
    P = smooth_convex()
    res = optlib.minimize(P, np.zeros(P.n), method="normalized-gradient", maxiter=3)
    assert not res.success and res.status == MAXITER and res.nit == 3
    assert "Maximum number of iterations" in res.message


def test_result_is_scipy_result_with_counters_and_trace():
    P = smooth_convex()
    res = optlib.minimize(P, np.zeros(P.n), gtol=1e-10)
    assert isinstance(res, scipy.optimize.OptimizeResult)
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "nhev", "status", "success", "message",
                "trace", "ntrials", "nrejected", "nfact"):
        assert key in res
    assert res.success and res.grad_norm <= 1e-10
    assert len(res.trace) == res.nit + 1
    assert res.trace.column("nfev")[-1] == res.nfev
    assert np.all(np.diff(res.trace.column("f")) <= 0)
    assert res.nhev == res.nit  # one curvature evaluation per outer iteration


@pytest.mark.parametrize("method", ["grad-norm-newton", "regularized-newton", "super-newton", "cubic-newton"])
def test_methods_agree_with_scipy_trust_exact(method):
    P = smooth_convex()
    sp = P.as_scipy()
    ref = scipy.optimize.minimize(sp["fun"], np.zeros(P.n), jac=True, hess=sp["hess"], method="trust-exact",
                                  options={"gtol": 1e-12})
    res = optlib.minimize(P, np.zeros(P.n), method=method, gtol=1e-10)
    assert res.success, res.message
    np.testing.assert_allclose(res.x.numpy(), ref.x, atol=1e-8)
    assert res.fun == pytest.approx(ref.fun, rel=1e-12)


def test_callback_stops_the_run_both_forms():
    P = smooth_convex()
    seen = []

    def cb(intermediate_result):
        seen.append(intermediate_result.fun)
        if intermediate_result.nit == 2:
            raise StopIteration

    res = optlib.minimize(P, np.zeros(P.n), callback=cb)
    assert res.status == CALLBACK_STOP and res.nit == 2 and not res.success and len(seen) == 2

    xs = []
    res = optlib.minimize(P, np.zeros(P.n), callback=lambda xk: xs.append(xk.clone()) or len(xs) >= 3)
    assert res.nit == 3 and torch.equal(xs[-1], res.x)


def test_progress_bar(capsys):
    P = smooth_convex()
    res = optlib.minimize(P, np.zeros(P.n), progress=True)
    assert res.success
    assert "grad-norm-newton" in capsys.readouterr().err


def test_indefinite_hessian_is_rejected_not_taken():
    """Rosenbrock's Hessian is indefinite at (-1.2, 1): small lam must fail Cholesky and be recorded."""
    P = optlib.Problem(lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, 2)
    x0 = torch.tensor([0.0, 1.0], dtype=DT)
    assert torch.linalg.eigvalsh(P.hessian(x0))[0] < 0
    res = optlib.minimize(P, x0, gamma0=1e3, gtol=1e-9, maxiter=500)
    assert res.success and res.nfact_failed >= 1
    reasons = [r for rec in res.trace for r in rec.get("rejections", [])]
    assert any("not positive definite" in r for r in reasons)
    with pytest.raises(NonPSDCurvatureError, match="cannot grow"):
        optlib.minimize(P, x0, gamma0=1e3, adaptive=False)


def test_trace_column_of_ragged_and_numeric_fields():
    """``rejections`` holds a list of reasons per record, of varying length: the column is a 1-D object
    array of those lists (None where a record has none), while numeric fields stay float arrays."""
    P = optlib.Problem(lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, 2)
    res = optlib.minimize(P, torch.tensor([0.0, 1.0], dtype=DT), gamma0=1e3, gtol=1e-9, maxiter=500)
    lengths = {len(rec["rejections"]) for rec in res.trace.records[1:]}
    assert len(lengths) > 1  # the ragged case: some iterations had rejections, others none
    col = res.trace.column("rejections")
    assert col.dtype == object and col.shape == (len(res.trace),)
    assert col[0] is None and all(col[k] is rec["rejections"] for k, rec in enumerate(res.trace) if k > 0)
    f = res.trace.column("f")
    assert f.dtype == np.float64 and f.shape == (len(res.trace),)
    lam = res.trace.column("lam")  # absent at iteration 0: NaN there
    assert np.isnan(lam[0]) and np.all(np.isfinite(lam[1:]))
    assert res.trace.column("lam", default=-1.0)[0] == -1.0
    assert res.trace.column("verified").dtype == np.float64  # booleans are numbers
    strings = optlib.Trace([{"k": 0}, {"k": 1, "note": "a"}]).column("note")
    assert strings.dtype == object and list(strings) == [None, "a"]
    # lists of equal length are values too, not a second dimension
    same = optlib.Trace([{"v": []}, {"v": []}]).column("v")
    assert same.shape == (2,) and same.dtype == object


def test_dispatch_module_does_not_share_the_functions_name():
    """The registry lives in optlib.dispatch; optlib.minimize is only the function (no module of that
    name that the function would shadow)."""
    dispatch = importlib.import_module("optlib.dispatch")
    assert optlib.minimize is dispatch.minimize and callable(optlib.minimize)
    assert optlib.methods is dispatch.methods and optlib.register_method is dispatch.register_method
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("optlib.minimize")


def test_check_options_converts_and_refuses():
    from optlib.result import check_options

    out = check_options(gtol=np.float32(1e-6), maxiter=1e4, max_inner=np.int64(3), tol=None, xtol=0)
    assert out == {"gtol": pytest.approx(1e-6), "maxiter": 10_000, "max_inner": 3, "tol": None, "xtol": 0.0}
    assert type(out["maxiter"]) is int and type(out["gtol"]) is float
    for name, value in [("gtol", float("inf")), ("gtol", True), ("maxiter", float("nan")), ("maxiter", -1),
                        ("hessian_every", 0), ("max_nfev", np.bool_(True))]:
        with pytest.raises(ValueError, match=rf"^{name} must be"):
            check_options(**{name: value})
    with pytest.raises(KeyError, match="gamma0"):
        check_options(gamma0=1.0)


def test_user_curvature_is_validated():
    P = smooth_convex()
    with pytest.raises(ValueError, match="not symmetric"):
        optlib.minimize(P, np.zeros(P.n), hessian=lambda x: torch.triu(torch.ones(P.n, P.n, dtype=DT)))
    with pytest.raises(NonPSDCurvatureError, match="non-finite"):
        optlib.minimize(P, np.zeros(P.n), hessian=lambda x: torch.full((P.n, P.n), float("nan"), dtype=DT))
    with pytest.raises(ValueError, match="shape"):
        optlib.minimize(P, np.zeros(P.n), hessian=lambda x: torch.eye(P.n + 1, dtype=DT))


def test_exhausted_search_keeps_the_last_accepted_point():
    P = smooth_convex()
    x0 = torch.zeros(P.n, dtype=DT)
    # One trial per iteration with a huge radius and H = 0: the first normalized step overshoots.
    res = optlib.minimize(P, x0, method="normalized-gradient", gamma0=1e3, max_inner=1)
    assert res.status == INNER_SEARCH_EXHAUSTED and not res.success
    assert torch.equal(res.x, x0) and "rejected" in res.message
    res2 = optlib.minimize(P, x0, method="normalized-gradient", gamma0=1e3, max_inner=1,
                           accept_unverified=True, maxiter=2)
    assert res2.nunverified >= 1 and res2.trace[1]["verified"] is False


def test_plain_callable_and_tol_alias():
    res = optlib.minimize(lambda x: ((x - 3.0) ** 4).sum() + (x**2).sum(), np.zeros(3), tol=1e-9)
    assert res.success and res.grad_norm <= 1e-9


def test_rounding_floor_is_reported_as_such():
    """Asking for a gradient norm below what float64 can resolve ends with ROUNDOFF_FLOOR, not a
    generic exhausted search, and keeps the last accepted point."""
    from optlib.result import ROUNDOFF_FLOOR

    P = smooth_convex()
    res = optlib.minimize(P, np.zeros(P.n), method="normalized-gradient", gtol=1e-15, maxiter=5000)
    assert res.status == ROUNDOFF_FLOOR and not res.success
    assert "rounding floor" in res.message
    assert res.fun == res.trace[-1]["f"]


@pytest.mark.parametrize("method", ["grad-norm-newton", "super-newton", "cubic-newton"])
def test_eigh_solver_matches_cholesky(method):
    """One eigendecomposition per curvature must give the same iterates as a factorization per trial."""
    P = smooth_convex()
    a = optlib.minimize(P, np.zeros(P.n), method=method, gtol=1e-10)
    b = optlib.minimize(P, np.zeros(P.n), method=method, gtol=1e-10, solver="eigh")
    assert a.nit == b.nit
    np.testing.assert_allclose(np.stack([r["f"] for r in b.trace]), np.stack([r["f"] for r in a.trace]),
                               rtol=1e-12)
    torch.testing.assert_close(b.x, a.x, rtol=0, atol=1e-10)


def test_lazy_hessians_refresh_on_schedule():
    P = smooth_convex()
    res = optlib.minimize(P, np.zeros(P.n), gtol=1e-6, hessian_every=3)
    assert res.success
    updated = [r["hessian_updated"] for r in res.trace.records[1:]]
    assert updated == [(k % 3 == 0) for k in range(res.nit)]
    assert res.nhev == sum(updated)
    with pytest.raises(ValueError, match="hessian_every"):
        optlib.minimize(P, np.zeros(P.n), hessian_every=0)
    lazy = optlib.minimize(P, np.zeros(P.n), method="cubic-newton", hessian_every="dimension", solver="eigh",
                           gtol=1e-6)
    assert lazy.success and lazy.nhev == -(-lazy.nit // P.n)
    with pytest.raises(ValueError, match="known solvers"):
        optlib.minimize(P, np.zeros(P.n), solver="qr")


def test_matrix_free_cg_solver_uses_only_hvps():
    P = smooth_convex()
    ref = optlib.minimize(P, np.zeros(P.n), gtol=1e-10)
    res = optlib.minimize(P, np.zeros(P.n), gtol=1e-10, solver="cg")
    assert res.success and res.nhev == 0 and res.nhvp > 0
    torch.testing.assert_close(res.x, ref.x, rtol=0, atol=1e-8)
    assert all("cg_iterations" in r for r in res.trace.records[1:])
    with pytest.raises(ValueError, match="solver='cg' is not supported"):
        optlib.minimize(P, np.zeros(P.n), method="cubic-newton", solver="cg")


# ------------------------------------------------------------------------------------------------
# A constant curvature is decomposed once for the whole run
# ------------------------------------------------------------------------------------------------
def _bohning_logistic():
    from optlib.problems import synthetic_logistic

    return synthetic_logistic(200, 12, scale_min=1e-2, scale_max=1.0, seed=3, reg=1e-3, descending=True)


def _same_run(a, b):
    assert a.nit == b.nit and a.ntrials == b.ntrials
    np.testing.assert_allclose(a.trace.column("f"), b.trace.column("f"), rtol=1e-12, atol=0)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=1e-10)


def test_constant_curvature_is_factored_once():
    """A fixed matrix (hessian=tensor), a curvature the problem declares constant (``fn.constant = True``)
    or one that returns the very same unmodified tensor is eigendecomposed once (nfact = 1, or 1 after
    the first iteration for the undeclared case), every solve then costs O(n^2), and the iterates are
    those of the refactoring path (solver="cholesky", one factorization per trial) to 1e-10."""
    P = _bohning_logistic()
    declared_bohning = P.curvatures["bohning"]
    assert declared_bohning.constant  # the library declares it; the undeclared cases below use a plain wrapper
    P.curvatures["bohning"] = lambda x: declared_bohning(x)
    ref = optlib.minimize(P, P.x0, hessian="bohning", solver="cholesky", gtol=1e-7, maxiter=3000)
    assert ref.success and ref.nfact == ref.ntrials > 100  # the old cost: a factorization per trial
    H = P.curvatures["bohning"](P.x0)
    fixed = optlib.minimize(P, P.x0, hessian=H, gtol=1e-7, maxiter=3000)
    assert fixed.nfact == 1 and fixed.nhev == 0
    _same_run(fixed, ref)
    eigh = optlib.minimize(P, P.x0, hessian="bohning", solver="eigh", gtol=1e-7, maxiter=3000)
    assert eigh.nfact == 1 and eigh.nhev == 2  # the second evaluation proves constancy; none after
    _same_run(eigh, ref)
    undeclared = optlib.minimize(P, P.x0, hessian="bohning", gtol=1e-7, maxiter=3000)
    assert undeclared.nfact == undeclared.trace[1]["trials"] + 1
    _same_run(undeclared, ref)
    P.curvatures["bohning"].constant = True
    declared = optlib.minimize(P, P.x0, hessian="bohning", gtol=1e-7, maxiter=3000)
    assert declared.nfact == 1 and declared.nhev == 1
    _same_run(declared, ref)


def test_curvature_modified_in_place_is_not_taken_as_constant():
    """The same tensor object changed in place between calls (torch bumps its version) is a new
    curvature: it is refactored, and the run equals one with a fresh tensor per call."""
    P = smooth_convex()
    buf = torch.zeros(P.n, P.n, dtype=DT)

    def in_place(x):
        buf.copy_(P.hessian(x))
        return buf

    a = optlib.minimize(P, np.zeros(P.n), hessian=in_place, gtol=1e-9)
    b = optlib.minimize(P, np.zeros(P.n), hessian=lambda x: P.hessian(x).clone(), gtol=1e-9)
    assert a.success and a.nfact == a.ntrials
    _same_run(a, b)


# ------------------------------------------------------------------------------------------------
# Stopping at the rounding floor near gtol
# ------------------------------------------------------------------------------------------------
def _quartic_offset(x):
    # f* is about 10.4: 16 ulp of f is about 4e-14, which floors ||g|| near 1.8e-11 from x0 = (2, 2).
    return (x**4).sum() + (x[0] - 1.0) ** 2 + 10.0


def test_rounding_floor_near_gtol_is_a_success_that_says_so():
    """Rounding stops grad-norm-newton at ||g|| = 1.8e-11: with gtol = 1e-11 (within the factor 10 of
    ROUNDOFF_SUCCESS_FACTOR) that is reported as success, status 0, with a message naming the floor;
    with gtol = 1e-12 (18x away) it stays ROUNDOFF_FLOOR, success=False."""
    from optlib.result import ROUNDOFF_FLOOR, ROUNDOFF_SUCCESS_FACTOR, SUCCESS

    near = optlib.minimize(_quartic_offset, np.array([2.0, 2.0]), gtol=1e-11)
    assert near.success and near.status == SUCCESS
    assert 1e-11 < near.grad_norm <= ROUNDOFF_SUCCESS_FACTOR * 1e-11
    assert "rounding floor" in near.message and "within 10x of gtol" in near.message
    assert near.fun == near.trace[-1]["f"]
    far = optlib.minimize(_quartic_offset, np.array([2.0, 2.0]), gtol=1e-12)
    assert far.status == ROUNDOFF_FLOOR and not far.success
    assert far.grad_norm > ROUNDOFF_SUCCESS_FACTOR * 1e-12
    assert "rounding floor" in far.message
