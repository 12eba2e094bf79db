"""The contract every method of ``optlib.minimize`` keeps, checked over the registry itself.

The tests are parametrized by ``optlib.methods()``, so a method registered later (in any family) is
held to the same contract without a line added here: scipy's result fields, a trace that starts at
``x0``, descent on a convex problem, a callback that stops the run, ``maxiter=0``, and the refusal
of a misspelled option or a bad tolerance or count before anything runs.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import optlib
from optlib import dispatch
from optlib.dispatch import method_options
from optlib.result import CALLBACK_STOP, MAXITER, SUCCESS, OptimizeResult, forwards_options
from optlib.second_order.driver import run
from optlib.second_order.grad_norm_newton import GradNormRule

DT = torch.float64
METHODS = optlib.methods()
SCIPY_FIELDS = ("x", "fun", "jac", "nit", "nfev", "status", "success", "message")

# u(x) = (exp(a_i^T x))_i ++ (x - c): every u_i^2 is convex (exp(2 a_i^T x), or an affine function
# squared), so f = ||u||^2 is strongly convex (the x - c block gives f'' >= 2I) but not quadratic, and
# its residual structure suits the least-squares methods too (outer scale c = 2, not 1, so that a
# least-squares method that forgets it reports the wrong f or gradient).
A = torch.tensor([[0.5, -0.3, 0.2], [-0.4, 0.1, 0.6], [0.3, 0.5, -0.2], [0.1, -0.6, -0.4]], dtype=DT)
C = torch.tensor([1.0, -0.5, 0.25], dtype=DT)
X0 = torch.tensor([2.0, 1.0, -1.0], dtype=DT)


def residuals(x):
    return torch.cat((torch.exp(A @ x), x - C))


def outer(u):
    return u @ u


def convex_problem() -> optlib.Problem:
    """A small problem every method applies to: smooth, strongly convex, with residuals."""
    return optlib.Problem(lambda x: outer(residuals(x)), 3, residuals=residuals, outer=outer, name="convex-residual")


def f_and_grad(x):
    x = x.detach().clone().requires_grad_(True)
    f = outer(residuals(x))
    (g,) = torch.autograd.grad(f, x)
    return float(f.detach()), g


def oracle_calls(P: optlib.Problem) -> int:
    return sum(P.counters.as_dict().values())


@pytest.fixture(scope="module")
def runs():
    """One run per method with ``tol=1e-6`` (each method's own gradient test), shared by the checks
    that only read it."""
    return {m: optlib.minimize(convex_problem(), X0.clone(), method=m, tol=1e-6) for m in METHODS}


def test_every_family_is_registered_the_same_way():
    assert {"grad-norm-newton", "normalized-gradient", "regularized-newton", "super-newton", "cubic-newton",
            "levenberg-marquardt"} <= set(METHODS)
    for m in METHODS:
        assert isinstance(dispatch._METHODS[m], dispatch._Entry)
        assert {"callback", "progress", "gtol", "maxiter"} <= set(method_options(m)), m


@pytest.mark.parametrize("method", METHODS)
def test_result_has_scipys_fields_and_converges(method, runs):
    res = runs[method]
    assert isinstance(res, OptimizeResult)
    for key in SCIPY_FIELDS:
        assert key in res, f"{method}: no field {key!r}"
    assert res.status == SUCCESS and res.success is True, res.message
    assert isinstance(res.message, str) and res.message
    assert isinstance(res.nit, int) and isinstance(res.nfev, int) and isinstance(res.status, int)
    assert isinstance(res.x, torch.Tensor) and res.x.shape == X0.shape
    f, g = f_and_grad(res.x)
    assert res.fun == pytest.approx(f, rel=1e-12)
    torch.testing.assert_close(res.jac, g, rtol=1e-9, atol=1e-12)
    # near the minimizer by every method's own test (Levenberg–Marquardt may stop on ftol first)
    assert float(torch.linalg.vector_norm(g)) <= 1e-4 * float(torch.linalg.vector_norm(f_and_grad(X0)[1]))


@pytest.mark.parametrize("method", METHODS)
def test_trace_starts_at_x0_and_f_decreases_on_a_convex_problem(method, runs):
    res = runs[method]
    trace = res.trace
    assert len(trace) == res.nit + 1 and res.nit >= 2
    assert [rec["k"] for rec in trace] == list(range(res.nit + 1))
    assert trace[0]["f"] == pytest.approx(f_and_grad(X0)[0], rel=1e-14)
    assert trace[-1]["f"] == pytest.approx(res.fun, rel=1e-14)
    f = trace.column("f")
    assert np.all(np.diff(f) <= 0), f"{method}: f increased along the trace: {f}"
    assert f[-1] < f[0]


@pytest.mark.parametrize("method", METHODS)
def test_callback_stops_the_run(method):
    seen = []

    def stop_at_two(intermediate_result):
        seen.append(intermediate_result.nit)
        return intermediate_result.nit == 2

    res = optlib.minimize(convex_problem(), X0.clone(), method=method, callback=stop_at_two)
    assert res.status == CALLBACK_STOP and not res.success
    assert res.nit == 2 and seen == [1, 2] and len(res.trace) == 3


@pytest.mark.parametrize("method", METHODS)
def test_maxiter_zero_returns_x0(method):
    P = convex_problem()
    res = optlib.minimize(P, X0.clone(), method=method, maxiter=0)
    assert torch.equal(res.x, X0)
    assert res.nit == 0 and res.status == MAXITER and not res.success and len(res.trace) == 1


def misspell(name: str) -> str:
    """Double the middle letter: ``gtol`` -> ``gtool``, ``gamma0`` -> ``gammma0``."""
    i = len(name) // 2
    return name[:i] + name[i] + name[i:]


@pytest.mark.parametrize("method", METHODS)
def test_misspelled_option_is_named_with_the_closest_and_the_list(method):
    accepted = method_options(method)
    listing = f"Accepted options of {method!r}: {', '.join(accepted)}."
    for name in accepted:
        if len(name) < 4:
            continue
        wrong = misspell(name)
        P = convex_problem()
        with pytest.raises(ValueError) as err:
            optlib.minimize(P, X0.clone(), method=method, **{wrong: 1.0})
        message = str(err.value)
        assert message.startswith(f"Method {method!r} has no option {wrong!r}; did you mean {name!r}?"), message
        assert message.endswith(listing)
        assert oracle_calls(P) == 0  # refused before the run


def test_gama0_suggests_gamma0():
    with pytest.raises(ValueError, match=r"has no option 'gama0'; did you mean 'gamma0'\? Accepted options of "
                                         r"'grad-norm-newton': .*gamma0, gamma_min, gtol"):
        optlib.minimize(convex_problem(), X0.clone(), method="grad-norm-newton", gama0=1.0)


BAD_VALUES = [
    ("gtol", -1.0), ("gtol", float("nan")), ("tol", -1e-8), ("tol", float("nan")),
    ("ftol", -1.0), ("xtol", float("nan")),
    ("maxiter", 2.5), ("maxiter", "10"), ("maxiter", -1), ("maxiter", True),
    ("max_inner", 0), ("max_inner", 0.5), ("max_nfev", 0), ("max_nfev", 2.5),
]


@pytest.mark.parametrize("method", METHODS)
def test_bad_tolerances_and_counts_are_named_before_the_run(method):
    accepted = set(method_options(method))
    checked = 0
    for option, value in BAD_VALUES:
        if option not in accepted:
            continue
        P = convex_problem()
        with pytest.raises(ValueError, match=rf"^{option} must be .*, got {re.escape(repr(value))}"):
            optlib.minimize(P, X0.clone(), method=method, **{option: value})
        assert oracle_calls(P) == 0
        checked += 1
    assert checked >= 8  # gtol, tol and maxiter at least


# ------------------------------------------------------------------------------------- register_method
@pytest.fixture
def registry(monkeypatch):
    """A copy of the registry, so that the methods registered here do not outlive the test."""
    monkeypatch.setattr(dispatch, "_METHODS", dict(dispatch._METHODS))
    return dispatch


def test_register_reads_the_options_from_the_signature(registry):
    @forwards_options(run, fixed=("method",))
    def damped(problem, x0, *, sigma0=1.0, hessian="exact", **options):
        return run(problem, x0, GradNormRule(1e-9), sigma0, hessian=hessian, method="damped", **options)

    registry.register_method("damped", damped)
    assert {"sigma0", "hessian", "gtol", "maxiter", "max_inner", "callback", "tol"} <= set(method_options("damped"))
    assert "method" not in method_options("damped")
    res = optlib.minimize(convex_problem(), X0.clone(), method="damped", sigma0=0.5, gtol=1e-8)
    assert res.success
    with pytest.raises(ValueError, match="has no option 'sigma'; did you mean 'sigma0'"):
        optlib.minimize(convex_problem(), X0.clone(), method="damped", sigma=0.5)
    with pytest.raises(ValueError, match="sets option 'method' itself"):
        dispatch._check_option_names("damped", dispatch._METHODS["damped"], ["method"])


def test_register_refuses_undeclared_options_and_takes_an_override(registry):
    def opaque(problem, x0, **options):
        return optlib.minimize(problem, x0, method="grad-norm-newton", **options)

    with pytest.raises(ValueError, match=r"takes \*\*options.*options=\[\.\.\.\]"):
        registry.register_method("opaque", opaque)
    assert "opaque" not in optlib.methods()
    registry.register_method("opaque", opaque, options=["gtol", "maxiter", "gamma0"])
    assert method_options("opaque") == ["callback", "gamma0", "gtol", "maxiter", "progress", "tol"]
    with pytest.raises(ValueError, match="has no option 'gama0'; did you mean 'gamma0'"):
        optlib.minimize(convex_problem(), X0.clone(), method="opaque", gama0=1.0)
    assert optlib.minimize(convex_problem(), X0.clone(), method="opaque", gamma0=2.0).success


def test_register_refuses_a_method_minimize_cannot_call(registry):
    def no_callback(problem, x0, *, gtol=1e-8):
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="has no callback, progress"):
        registry.register_method("no-callback", no_callback)
    with pytest.raises(ValueError, match="already registered for another function"):
        registry.register_method("grad-norm-newton", lambda problem, x0, *, callback, progress: None)
