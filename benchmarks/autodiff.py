"""The cost of the autodiff oracles a plain torch function gets from ``optlib.minimize`` (asv).

On regularized logistic regression ``f(w) = mean(softplus(Xw) - y Xw) + (lam/2)||w||^2`` with
``X`` of shape ``(n, d)`` (the GLM shape of the user-path problems), one thread:

* ``track_hvp_over_gradient``: one Hessian-vector product (through the gradient's graph) over one
  value-and-gradient evaluation, both by :class:`optlib.autodiff.TorchOracles` at a fresh point.
  Target: at most 2.5.
* ``track_hessian_over_xtdx``: the dense Hessian by the strategy :class:`~optlib.autodiff.TorchOracles`
  picks for ``d``, over the hand-written ``X^T diag(s(1-s)) X`` it equals. Target: at most 3 at d = 300.

Medians of repetitions after a warm-up, same process.
"""

from __future__ import annotations

import time

import torch

from ._commit import compute_or_skip, requires, skip_if_absent

autodiff = requires("optlib.autodiff")
common = requires("scale.bench.common")

SIZES = [(2000, 50), (2000, 300), (1797, 640)]


def _glm(n: int, d: int):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n, d, generator=gen, dtype=torch.float64) / d**0.5
    y = (torch.rand(n, generator=gen, dtype=torch.float64) < 0.5).double()

    def f(w):
        z = X @ w
        return torch.nn.functional.softplus(z).mean() - (y * z).mean() + 0.5e-3 * (w @ w)

    return X, f


def _median_time(fn, repeat: int = 7) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def oracle_ratios(n: int, d: int) -> dict[str, float]:
    """HVP/gradient and Hessian/X^T D X time ratios at one size (the numbers the track_ benchmarks report)."""
    X, f = _glm(n, d)
    w = torch.linspace(-1, 1, d, dtype=torch.float64)
    v = torch.cos(torch.arange(d, dtype=torch.float64))
    counter = [0.0]

    def fresh_point():  # a new point each call, so that nothing is served from the cache
        counter[0] += 1e-9
        return w + counter[0]

    oracles = autodiff.TorchOracles(f)
    t_grad = _median_time(lambda: oracles.value_and_grad(fresh_point()))
    x = fresh_point()
    oracles.value_and_grad(x)
    t_hvp = _median_time(lambda: oracles.hvp(x, v))
    t_hess = _median_time(lambda: oracles.hessian(x), repeat=5)
    s = torch.sigmoid(X @ x)
    D = s * (1 - s) / n
    t_ref = _median_time(lambda: X.T @ (D[:, None] * X), repeat=5)
    return {"hvp_over_gradient": t_hvp / t_grad, "hessian_over_xtdx": t_hess / t_ref,
            "strategy": oracles.hessian_strategy}


def _all_ratios() -> dict[str, dict]:
    common.pin_threads(1)
    return {f"{n}x{d}": oracle_ratios(n, d) for n, d in SIZES}


class OracleCosts:
    params = [SIZES]
    param_names = ["shape"]  # (n, d) of the design matrix
    timeout = 300

    def setup_cache(self):
        return compute_or_skip(_all_ratios)

    def setup(self, cache, size):
        skip_if_absent(cache)

    def track_hvp_over_gradient(self, cache, size):
        return cache[f"{size[0]}x{size[1]}"]["hvp_over_gradient"]

    track_hvp_over_gradient.unit = "ratio"
    track_hvp_over_gradient.better = "lower"

    def track_hessian_over_xtdx(self, cache, size):
        return cache[f"{size[0]}x{size[1]}"]["hessian_over_xtdx"]

    track_hessian_over_xtdx.unit = "ratio"
    track_hessian_over_xtdx.better = "lower"


if __name__ == "__main__":  # python -m benchmarks.autodiff
    common.pin_threads(1)
    for n, d in SIZES:
        print(n, d, oracle_ratios(n, d))
