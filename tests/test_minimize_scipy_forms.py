"""``optlib.minimize`` in scipy's call forms, and the autodiff oracles of plain torch functions.

References are independent: scipy's own solvers and closed-form derivatives.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.optimize as so
import torch

import optlib
from optlib.autodiff import SMALL_DIMENSION, NumpyOracles, TorchOracles
from optlib.problems import rosenbrock

X0 = np.array([-1.2, 1.0, 0.5, -0.3])


def rosen_torch(x):
    return (100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2).sum()


def rosen_fg(x):
    return so.rosen(x), so.rosen_der(x)


SCIPY_X = so.minimize(so.rosen, X0, jac=so.rosen_der, hess=so.rosen_hess, method="trust-exact",
                      options={"gtol": 1e-12}).x


@pytest.mark.parametrize(
    "forms",
    [
        pytest.param({"fun": rosen_torch}, id="torch-autodiff"),
        pytest.param({"fun": rosen_fg, "jac": True}, id="jac-True"),
        pytest.param({"fun": so.rosen, "jac": so.rosen_der}, id="jac-callable"),
        pytest.param({"fun": so.rosen, "jac": so.rosen_der, "hess": so.rosen_hess}, id="hess"),
        pytest.param({"fun": so.rosen, "jac": so.rosen_der, "hessp": so.rosen_hess_prod}, id="hessp"),
        pytest.param({"fun": rosen_fg, "jac": True, "hessp": so.rosen_hess_prod}, id="jac-True-hessp"),
        pytest.param({"fun": so.rosen, "jac": so.rosen_der}, id="finite-difference-hvp"),
    ],
)
def test_call_forms_reach_scipys_minimizer(forms):
    """Every form: numpy in, numpy out, the minimizer scipy's trust-exact finds (to 1e-6)."""
    fun = forms.pop("fun")
    res = optlib.minimize(fun, X0.copy(), tol=1e-10, **forms)
    assert res.success, res.message
    assert isinstance(res.x, np.ndarray) and isinstance(res.jac, np.ndarray) and isinstance(res.fun, float)
    np.testing.assert_allclose(res.x, SCIPY_X, atol=1e-6)
    assert "method=None chose 'grad-norm-newton'" in res.message and res.method == "grad-norm-newton"


def test_torch_in_torch_out_and_default_choice():
    """A tensor in gives tensors out; method=None says which curvature it chose."""
    res = optlib.minimize(rosen_torch, torch.tensor(X0))
    assert isinstance(res.x, torch.Tensor) and isinstance(res.jac, torch.Tensor)
    assert "dense Hessian (n = 4)" in res.message
    big = optlib.minimize(lambda x: ((x - 1.0) ** 2).sum() + (x**4).sum(), torch.zeros(300, dtype=torch.float64))
    assert big.success and "CG on Hessian-vector products (n = 300 > 200)" in big.message


def test_args_reach_every_callable():
    a = np.array([1.0, -2.0, 3.0])
    seen = []

    def fun(x, c, scale):
        seen.append(scale)
        return scale * float(((x - c) ** 2).sum())

    res = optlib.minimize(fun, np.zeros(3), args=(a, 2.0), jac=lambda x, c, s: 2 * s * (x - c),
                          hess=lambda x, c, s: 2 * s * np.eye(3))
    np.testing.assert_allclose(res.x, a, atol=1e-8)
    assert set(seen) == {2.0}
    torch_res = optlib.minimize(lambda x, c: ((x - c) ** 2).sum(), np.zeros(3), args=(torch.from_numpy(a),))
    np.testing.assert_allclose(torch_res.x, a, atol=1e-8)


def test_legacy_and_intermediate_result_callbacks_see_numpy():
    xs, results = [], []
    optlib.minimize(rosen_torch, X0.copy(), callback=lambda xk: xs.append(xk))
    optlib.minimize(rosen_torch, X0.copy(), callback=lambda intermediate_result: results.append(intermediate_result))
    assert xs and all(isinstance(x, np.ndarray) for x in xs)
    assert results and all(isinstance(r.x, np.ndarray) for r in results)
    stop = optlib.minimize(rosen_torch, X0.copy(), callback=lambda xk: True)
    assert stop.nit == 1 and not stop.success


def test_options_dict_and_disp(capsys):
    res = optlib.minimize(rosen_torch, X0.copy(), options={"maxiter": 3, "disp": True})
    assert res.nit == 3 and "grad-norm-newton" in capsys.readouterr().out
    with pytest.raises(ValueError, match="both in options= and as keywords"):
        optlib.minimize(rosen_torch, X0.copy(), options={"maxiter": 3}, maxiter=4)


# ----------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"bounds": [(0, 1)] * 4}, "bounds are not supported.*L-BFGS-B"),
        ({"constraints": {"type": "eq", "fun": lambda x: x[0]}}, "constraints are not supported.*SLSQP"),
        ({"gama0": 1.0}, "no option 'gama0'; did you mean 'gamma0'"),
        ({"xtol": 1e-8}, "no option 'xtol'"),
        ({"method": "BFGS"}, "unknown method 'BFGS'"),
    ],
)
def test_refused_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optlib.minimize(rosen_torch, X0.copy(), **kwargs)


@pytest.mark.parametrize("hess", ["2-point", "3-point", "cs", so.BFGS(), so.SR1()])
def test_scipy_hessian_schemes_refused_before_any_call(hess):
    calls = []

    def fun(x):
        calls.append(1)
        return rosen_fg(x)

    with pytest.raises(ValueError, match="not supported"):
        optlib.minimize(fun, X0.copy(), jac=True, hess=hess)
    assert not calls


def test_jac_true_with_a_scalar_function():
    with pytest.raises(ValueError, match="jac=True means fun returns \\(f, g\\), but it returned a scalar"):
        optlib.minimize(so.rosen, X0.copy(), jac=True)


@pytest.mark.parametrize("shape", [(), (1,)])
def test_numpy_scalar_shapes_accepted(shape):
    res = optlib.minimize(lambda x: np.reshape(np.sum((x - 2.0) ** 2), shape), np.zeros(3), jac=lambda x: 2 * (x - 2))
    np.testing.assert_allclose(res.x, 2.0, atol=1e-8)


@pytest.mark.parametrize("shape", [(2,), (1, 1), (3,)])
def test_numpy_other_shapes_named(shape):
    with pytest.raises(ValueError, match=re.escape(f"(shape () or (1,)), got an array of shape {shape}")):
        optlib.minimize(lambda x: np.zeros(shape), np.zeros(3), jac=lambda x: np.zeros(3))


def test_torch_function_calling_numpy_is_named():
    with pytest.raises(ValueError, match="fun must be written in torch.*numpy callables"):
        optlib.minimize(lambda x: float(np.sum(np.asarray(x) ** 2)), np.ones(3))
    with pytest.raises(ValueError, match="fun must be written in torch"):
        optlib.minimize(so.rosen, X0.copy())


def test_numpy_without_gradient_is_named():
    with pytest.raises(ValueError, match="needs its gradient"):
        NumpyOracles(so.rosen, 4, None)
    with pytest.raises(ValueError, match="hess/hessp without jac"):
        optlib.minimize(so.rosen, X0.copy(), hess=so.rosen_hess)
    with pytest.raises(ValueError, match="finite-difference gradients are not supported"):
        optlib.minimize(so.rosen, X0.copy(), jac="2-point")


def test_problem_with_foreign_oracles_refused():
    problem = rosenbrock(2)
    with pytest.raises(ValueError, match="carries its own oracles"):
        optlib.minimize(problem, problem.x0, jac=True)


def test_args_given_a_method_name_positionally():
    with pytest.raises(ValueError, match="third positional argument is args"):
        optlib.minimize(rosen_torch, X0.copy(), "grad-norm-newton")


# ----------------------------------------------------------------------------------- autodiff oracles
def _logistic(n: int, d: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = (torch.rand(n, generator=gen, dtype=torch.float64) < 0.5).double()
    lam = 1e-2

    def f(w):
        z = X @ w
        return torch.nn.functional.softplus(z).mean() - (y * z).mean() + 0.5 * lam * (w @ w)

    def hess(w):  # closed form X^T diag(s(1 - s)) X / n + lam I
        s = torch.sigmoid(X @ w)
        return X.T @ ((s * (1 - s))[:, None] * X) / n + lam * torch.eye(d, dtype=torch.float64)

    return f, hess


@pytest.mark.parametrize("d", [5, SMALL_DIMENSION + 8])
def test_autodiff_hessian_and_hvp_match_closed_form(d):
    f, hess = _logistic(60, d)
    w = torch.linspace(-0.5, 0.5, d, dtype=torch.float64)
    oracles = TorchOracles(f)
    H = hess(w)
    torch.testing.assert_close(oracles.hessian(w), H, rtol=1e-12, atol=1e-14)
    v = torch.cos(torch.arange(d, dtype=torch.float64))
    torch.testing.assert_close(oracles.hvp(w, v), H @ v, rtol=1e-12, atol=1e-14)
    expected = "batched" if d < SMALL_DIMENSION else "reverse-over-reverse"
    assert oracles.hessian_strategy == expected


def test_autodiff_falls_back_for_untransformable_functions():
    """Data-dependent Python control flow defeats torch.func; the Hessian still comes out right."""

    def f(x):
        if bool(x.sum() > 0):  # data-dependent control flow
            return (x**4).sum()
        return (x**2).sum()

    x = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    oracles = TorchOracles(f)
    torch.testing.assert_close(oracles.hessian(x), torch.diag(12 * x**2))
    assert oracles.hessian_strategy in ("batched", "columns")


def test_each_point_is_evaluated_once():
    """The accepted trial's value and gradient become the next iterate's, and the Hessian reuses
    nothing it has to recompute: the user's function runs once per point tried (plus the
    reverse-over-reverse Hessians, which need their own pass)."""
    calls = []

    def f(x):
        calls.append(1)
        return rosen_torch(x)

    res = optlib.minimize(f, torch.tensor(X0), method="grad-norm-newton", solver="cg")
    assert res.success
    assert len(calls) == res.nfev == res.ntrials + 1
