r"""The NIST StRD nonlinear regression problems: certified data, models and analytic Jacobians.

The Statistical Reference Datasets of NIST's Information Technology Laboratory
(https://www.itl.nist.gov/div898/strd/nls/nls_main.shtml) are 27 nonlinear least-squares problems with
parameters, standard deviations and residual sums of squares certified to 11 significant digits
(computed by NIST in 128-bit precision and confirmed by two independent codes), two starting points
each ("Start 1" far from the solution, "Start 2" closer), and a difficulty level (lower, average,
higher). The ``.dat`` files ship unchanged in ``optlib/problems/data/nist/`` (see the README there).

:func:`load_nist` parses a file into a :class:`NistProblem`: the data, the starts, the certified values,
and the model :math:`y = f(x; b) + \varepsilon` with its Jacobian :math:`\partial f/\partial b`, both written by
hand from the formula in the file (listed in :data:`MODELS`) and usable on numpy arrays or torch tensors.
The residual convention is :math:`r_i(b) = f(x_i; b) - y_i` (``Nelson``: :math:`f - \log y_i`, the file's
model being for :math:`\log y`), so :math:`\sum_i r_i(b^\star)^2` is the certified residual sum of squares.

Accuracy is reported as the log relative error of McCullough, "Assessing the reliability of statistical
software: Part I", *The American Statistician* 52 (1998) 358–366:
:math:`\mathrm{LRE}(b, c) = -\log_{10}(|b - c|/|c|)`, capped at the number of significant digits of the
certified value :math:`c` and floored at 0 (:meth:`NistProblem.lre`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..problem import Constants, Problem

Tensor = torch.Tensor
DATA_DIR = Path(__file__).resolve().parent / "data" / "nist"
LEVELS = ("lower", "average", "higher")


# ---------------------------------------------------------------------------------------- array namespaces
class _Numpy:
    exp, log, sin, cos, arctan = np.exp, np.log, np.sin, np.cos, np.arctan

    @staticmethod
    def stack(cols: list[Any]) -> np.ndarray:
        return np.stack(cols, axis=1)


class _Torch:
    exp, log, sin, cos, arctan = torch.exp, torch.log, torch.sin, torch.cos, torch.atan

    @staticmethod
    def stack(cols: list[Any]) -> Tensor:
        return torch.stack(cols, dim=1)


def _ns(b: Any) -> type:
    return _Torch if isinstance(b, Tensor) else _Numpy


# ---------------------------------------------------------------------------------------- models
# Each entry: name -> (f(b, x, xp), J(b, x, xp)); x is (m,) or, for Nelson, (m, 2).

def _misra1a(b, x, xp):
    return b[0] * (1 - xp.exp(-b[1] * x))


def _misra1a_j(b, x, xp):
    e = xp.exp(-b[1] * x)
    return xp.stack([1 - e, b[0] * x * e])


def _misra1b(b, x, xp):
    return b[0] * (1 - (1 + b[1] * x / 2) ** (-2))


def _misra1b_j(b, x, xp):
    u = 1 + b[1] * x / 2
    return xp.stack([1 - u ** (-2), b[0] * x * u ** (-3)])


def _misra1c(b, x, xp):
    return b[0] * (1 - (1 + 2 * b[1] * x) ** (-0.5))


def _misra1c_j(b, x, xp):
    u = 1 + 2 * b[1] * x
    return xp.stack([1 - u ** (-0.5), b[0] * x * u ** (-1.5)])


def _misra1d(b, x, xp):
    return b[0] * b[1] * x * (1 + b[1] * x) ** (-1)


def _misra1d_j(b, x, xp):
    u = 1 + b[1] * x
    return xp.stack([b[1] * x / u, b[0] * x / (u * u)])


def _chwirut(b, x, xp):
    return xp.exp(-b[0] * x) / (b[1] + b[2] * x)


def _chwirut_j(b, x, xp):
    e = xp.exp(-b[0] * x)
    q = b[1] + b[2] * x
    return xp.stack([-x * e / q, -e / (q * q), -x * e / (q * q)])


def _danwood(b, x, xp):
    return b[0] * x ** b[1]


def _danwood_j(b, x, xp):
    p = x ** b[1]
    return xp.stack([p, b[0] * p * xp.log(x)])


def _lanczos(b, x, xp):
    return b[0] * xp.exp(-b[1] * x) + b[2] * xp.exp(-b[3] * x) + b[4] * xp.exp(-b[5] * x)


def _lanczos_j(b, x, xp):
    e1, e2, e3 = xp.exp(-b[1] * x), xp.exp(-b[3] * x), xp.exp(-b[5] * x)
    return xp.stack([e1, -b[0] * x * e1, e2, -b[2] * x * e2, e3, -b[4] * x * e3])


def _gauss(b, x, xp):
    return (b[0] * xp.exp(-b[1] * x) + b[2] * xp.exp(-((x - b[3]) ** 2) / b[4] ** 2)
            + b[5] * xp.exp(-((x - b[6]) ** 2) / b[7] ** 2))


def _gauss_j(b, x, xp):
    e = xp.exp(-b[1] * x)
    u, v = x - b[3], x - b[6]
    g2 = xp.exp(-(u * u) / b[4] ** 2)
    g3 = xp.exp(-(v * v) / b[7] ** 2)
    return xp.stack([
        e, -b[0] * x * e,
        g2, b[2] * g2 * 2 * u / b[4] ** 2, b[2] * g2 * 2 * u * u / b[4] ** 3,
        g3, b[5] * g3 * 2 * v / b[7] ** 2, b[5] * g3 * 2 * v * v / b[7] ** 3,
    ])


def _rational(num_deg: int) -> tuple[Callable, Callable]:
    """(b1 + b2 x + ... ) / (1 + b_{k+1} x + ...), numerator degree ``num_deg``, same denominator degree."""
    k = num_deg + 1

    def f(b, x, xp):
        num = sum(b[i] * x**i for i in range(k))
        den = 1 + sum(b[k + i - 1] * x**i for i in range(1, k))
        return num / den

    def jac(b, x, xp):
        num = sum(b[i] * x**i for i in range(k))
        den = 1 + sum(b[k + i - 1] * x**i for i in range(1, k))
        cols = [x**i / den for i in range(k)]
        cols += [-num * x**i / (den * den) for i in range(1, k)]
        return xp.stack(cols)

    return f, jac


_kirby2, _kirby2_j = _rational(2)
_cubic, _cubic_j = _rational(3)


def _mgh09(b, x, xp):
    return b[0] * (x**2 + x * b[1]) / (x**2 + x * b[2] + b[3])


def _mgh09_j(b, x, xp):
    num = x**2 + x * b[1]
    den = x**2 + x * b[2] + b[3]
    return xp.stack([num / den, b[0] * x / den, -b[0] * num * x / (den * den), -b[0] * num / (den * den)])


def _mgh10(b, x, xp):
    return b[0] * xp.exp(b[1] / (x + b[2]))


def _mgh10_j(b, x, xp):
    q = x + b[2]
    e = xp.exp(b[1] / q)
    return xp.stack([e, b[0] * e / q, -b[0] * e * b[1] / (q * q)])


def _mgh17(b, x, xp):
    return b[0] + b[1] * xp.exp(-x * b[3]) + b[2] * xp.exp(-x * b[4])


def _mgh17_j(b, x, xp):
    e4, e5 = xp.exp(-x * b[3]), xp.exp(-x * b[4])
    return xp.stack([x * 0 + 1, e4, e5, -b[1] * x * e4, -b[2] * x * e5])


def _eckerle4(b, x, xp):
    return (b[0] / b[1]) * xp.exp(-0.5 * ((x - b[2]) / b[1]) ** 2)


def _eckerle4_j(b, x, xp):
    z = (x - b[2]) / b[1]
    e = xp.exp(-0.5 * z * z)
    return xp.stack([e / b[1], b[0] * e * (z * z - 1) / b[1] ** 2, b[0] * e * z / b[1] ** 2])


def _rat42(b, x, xp):
    return b[0] / (1 + xp.exp(b[1] - b[2] * x))


def _rat42_j(b, x, xp):
    e = xp.exp(b[1] - b[2] * x)
    q = (1 + e) ** 2
    return xp.stack([1 / (1 + e), -b[0] * e / q, b[0] * x * e / q])


def _rat43(b, x, xp):
    return b[0] / (1 + xp.exp(b[1] - b[2] * x)) ** (1 / b[3])


def _rat43_j(b, x, xp):
    e = xp.exp(b[1] - b[2] * x)
    u = 1 + e
    p = u ** (-1 / b[3])
    return xp.stack([p, -b[0] * e * p / (b[3] * u), b[0] * x * e * p / (b[3] * u), b[0] * p * xp.log(u) / b[3] ** 2])


def _bennett5(b, x, xp):
    return b[0] * (b[1] + x) ** (-1 / b[2])


def _bennett5_j(b, x, xp):
    u = b[1] + x
    p = u ** (-1 / b[2])
    return xp.stack([p, -b[0] * p / (b[2] * u), b[0] * p * xp.log(u) / b[2] ** 2])


_TWO_PI = 2 * math.pi


def _enso(b, x, xp):
    t12 = _TWO_PI * x / 12
    t4, t7 = _TWO_PI * x / b[3], _TWO_PI * x / b[6]
    return (b[0] + b[1] * xp.cos(t12) + b[2] * xp.sin(t12) + b[4] * xp.cos(t4) + b[5] * xp.sin(t4)
            + b[7] * xp.cos(t7) + b[8] * xp.sin(t7))


def _enso_j(b, x, xp):
    t12 = _TWO_PI * x / 12
    t4, t7 = _TWO_PI * x / b[3], _TWO_PI * x / b[6]
    c4, s4, c7, s7 = xp.cos(t4), xp.sin(t4), xp.cos(t7), xp.sin(t7)
    return xp.stack([
        x * 0 + 1, xp.cos(t12), xp.sin(t12),
        (b[4] * s4 - b[5] * c4) * t4 / b[3], c4, s4,
        (b[7] * s7 - b[8] * c7) * t7 / b[6], c7, s7,
    ])


def _roszman1(b, x, xp):
    return b[0] - b[1] * x - xp.arctan(b[2] / (x - b[3])) / math.pi


def _roszman1_j(b, x, xp):
    u = x - b[3]
    q = u * u + b[2] ** 2
    return xp.stack([x * 0 + 1, -x, -u / (math.pi * q), -b[2] / (math.pi * q)])


def _nelson(b, x, xp):
    return b[0] - b[1] * x[:, 0] * xp.exp(-b[2] * x[:, 1])


def _nelson_j(b, x, xp):
    x1, x2 = x[:, 0], x[:, 1]
    e = xp.exp(-b[2] * x2)
    return xp.stack([x1 * 0 + 1, -x1 * e, b[1] * x1 * x2 * e])


# name -> (model, Jacobian, formula as written by us, n parameters)
MODELS: dict[str, tuple[Callable, Callable, str, int]] = {
    "Misra1a": (_misra1a, _misra1a_j, "y = b1*(1-exp(-b2*x))", 2),
    "Chwirut2": (_chwirut, _chwirut_j, "y = exp(-b1*x)/(b2+b3*x)", 3),
    "Chwirut1": (_chwirut, _chwirut_j, "y = exp(-b1*x)/(b2+b3*x)", 3),
    "Lanczos3": (_lanczos, _lanczos_j, "y = b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)", 6),
    "Gauss1": (_gauss, _gauss_j, "y = b1*exp(-b2*x) + b3*exp(-(x-b4)**2/b5**2) + b6*exp(-(x-b7)**2/b8**2)", 8),
    "Gauss2": (_gauss, _gauss_j, "y = b1*exp(-b2*x) + b3*exp(-(x-b4)**2/b5**2) + b6*exp(-(x-b7)**2/b8**2)", 8),
    "DanWood": (_danwood, _danwood_j, "y = b1*x**b2", 2),
    "Misra1b": (_misra1b, _misra1b_j, "y = b1*(1-(1+b2*x/2)**(-2))", 2),
    "Kirby2": (_kirby2, _kirby2_j, "y = (b1 + b2*x + b3*x**2)/(1 + b4*x + b5*x**2)", 5),
    "Hahn1": (_cubic, _cubic_j, "y = (b1+b2*x+b3*x**2+b4*x**3)/(1+b5*x+b6*x**2+b7*x**3)", 7),
    "Nelson": (_nelson, _nelson_j, "log(y) = b1 - b2*x1*exp(-b3*x2)", 3),
    "MGH17": (_mgh17, _mgh17_j, "y = b1 + b2*exp(-x*b4) + b3*exp(-x*b5)", 5),
    "Lanczos1": (_lanczos, _lanczos_j, "y = b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)", 6),
    "Lanczos2": (_lanczos, _lanczos_j, "y = b1*exp(-b2*x) + b3*exp(-b4*x) + b5*exp(-b6*x)", 6),
    "Gauss3": (_gauss, _gauss_j, "y = b1*exp(-b2*x) + b3*exp(-(x-b4)**2/b5**2) + b6*exp(-(x-b7)**2/b8**2)", 8),
    "Misra1c": (_misra1c, _misra1c_j, "y = b1*(1-(1+2*b2*x)**(-1/2))", 2),
    "Misra1d": (_misra1d, _misra1d_j, "y = b1*b2*x/(1+b2*x)", 2),
    "Roszman1": (_roszman1, _roszman1_j, "y = b1 - b2*x - arctan(b3/(x-b4))/pi", 4),
    "ENSO": (_enso, _enso_j, "y = b1 + b2*cos(2 pi x/12) + b3*sin(2 pi x/12) + b5*cos(2 pi x/b4) + b6*sin(2 pi x/b4) "
                             "+ b8*cos(2 pi x/b7) + b9*sin(2 pi x/b7)", 9),
    "MGH09": (_mgh09, _mgh09_j, "y = b1*(x**2+x*b2)/(x**2+x*b3+b4)", 4),
    "Thurber": (_cubic, _cubic_j, "y = (b1+b2*x+b3*x**2+b4*x**3)/(1+b5*x+b6*x**2+b7*x**3)", 7),
    "BoxBOD": (_misra1a, _misra1a_j, "y = b1*(1-exp(-b2*x))", 2),
    "Rat42": (_rat42, _rat42_j, "y = b1/(1+exp(b2-b3*x))", 3),
    "MGH10": (_mgh10, _mgh10_j, "y = b1*exp(b2/(x+b3))", 3),
    "Eckerle4": (_eckerle4, _eckerle4_j, "y = (b1/b2)*exp(-0.5*((x-b3)/b2)**2)", 3),
    "Rat43": (_rat43, _rat43_j, "y = b1/((1+exp(b2-b3*x))**(1/b4))", 4),
    "Bennett5": (_bennett5, _bennett5_j, "y = b1*(b2+x)**(-1/b3)", 3),
}
LOG_RESPONSE = frozenset({"Nelson"})


# ---------------------------------------------------------------------------------------- parsing
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def significant_digits(text: str) -> int:
    """Significant digits of a decimal literal as written (``"2.3894212918E+02"`` -> 11)."""
    mant = re.split(r"[eE]", text.strip().lstrip("+-"))[0].replace(".", "")
    mant = mant.lstrip("0")
    return max(len(mant), 1)


@dataclass(frozen=True)
class NistProblem:
    """One parsed NIST StRD nonlinear regression problem (see the module docstring).

    Attributes
    ----------
    name, difficulty, model_class : str
        As in the file (difficulty lower-cased: ``"lower"``, ``"average"``, ``"higher"``).
    formula : str
        The model as written in the file.
    x : numpy.ndarray
        Predictor values, shape ``(m,)`` (``(m, 2)`` for ``Nelson``).
    y : numpy.ndarray
        Responses, shape ``(m,)``.
    start1, start2, certified, certified_std : numpy.ndarray
        Starting values, certified parameters and their standard deviations, shape ``(n,)``.
    certified_digits : tuple of int
        Significant digits given for each certified parameter (the cap of :meth:`lre`).
    certified_rss, residual_sd : float
        Certified residual sum of squares and residual standard deviation; ``rss_text`` holds the literal.
    dof, n_obs : int
        Degrees of freedom and number of observations.
    """

    name: str
    difficulty: str
    model_class: str
    formula: str
    x: np.ndarray
    y: np.ndarray
    start1: np.ndarray
    start2: np.ndarray
    certified: np.ndarray
    certified_std: np.ndarray
    certified_digits: tuple[int, ...]
    certified_text: tuple[str, ...]
    certified_rss: float
    rss_text: str
    residual_sd: float
    dof: int
    n_obs: int
    path: Path
    _torch_data: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n(self) -> int:
        """Number of parameters."""
        return int(self.certified.shape[0])

    @property
    def m(self) -> int:
        """Number of observations (residuals)."""
        return int(self.y.shape[0])

    def start(self, which: int) -> np.ndarray:
        """Starting values 1 or 2 (a copy)."""
        if which not in (1, 2):
            raise ValueError(f"NIST problems have starts 1 and 2, got {which!r}")
        return (self.start1 if which == 1 else self.start2).copy()

    # -------------------------------------------------------------- model, residuals, Jacobian
    def _data(self, b: Any) -> tuple[Any, Any]:
        """``(x, response)`` in the namespace of ``b`` (tensors on ``b``'s device, cached)."""
        resp = np.log(self.y) if self.name in LOG_RESPONSE else self.y
        if not isinstance(b, Tensor):
            return self.x, resp
        key = (b.device, b.dtype)
        if key not in self._torch_data:
            self._torch_data[key] = (torch.as_tensor(self.x, dtype=b.dtype, device=b.device),
                                     torch.as_tensor(resp, dtype=b.dtype, device=b.device))
        return self._torch_data[key]

    def _check_b(self, b: Any) -> Any:
        if not isinstance(b, Tensor):
            b = np.asarray(b, dtype=np.float64)
        if tuple(b.shape) != (self.n,):
            raise ValueError(f"{self.name} has {self.n} parameters; got shape {tuple(b.shape)}")
        return b

    def model(self, b: Any) -> Any:
        """:math:`f(x_i; b)` for every observation (numpy in, numpy out; tensor in, tensor out).

        Overflow and invalid operations at extreme parameters give inf/NaN silently (solvers treat
        them as failed trial points)."""
        b = self._check_b(b)
        x, _ = self._data(b)
        with np.errstate(all="ignore"):
            return MODELS[self.name][0](b, x, _ns(b))

    def residuals(self, b: Any) -> Any:
        """:math:`r_i(b) = f(x_i; b) - y_i` (``Nelson``: :math:`f(x_i; b) - \\log y_i`)."""
        b = self._check_b(b)
        x, resp = self._data(b)
        with np.errstate(all="ignore"):
            return MODELS[self.name][0](b, x, _ns(b)) - resp

    def jacobian(self, b: Any) -> Any:
        """:math:`\\partial r_i/\\partial b_j = \\partial f(x_i; b)/\\partial b_j`, shape ``(m, n)`` (analytic)."""
        b = self._check_b(b)
        x, _ = self._data(b)
        with np.errstate(all="ignore"):
            return MODELS[self.name][1](b, x, _ns(b))

    def rss(self, b: Any) -> float:
        """Residual sum of squares :math:`\\sum_i r_i(b)^2` (float64)."""
        r = self.residuals(b)
        r = r.detach().cpu().numpy() if isinstance(r, Tensor) else r
        return float(np.dot(r, r))

    def lre(self, b: Any) -> np.ndarray:
        """Per-parameter log relative error against the certified values (see the module docstring)."""
        b = b.detach().cpu().numpy() if isinstance(b, Tensor) else np.asarray(b, dtype=np.float64)
        cap = np.asarray(self.certified_digits, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(b - self.certified) / np.abs(self.certified)
            out = -np.log10(rel)
        out = np.where(np.isfinite(b), out, 0.0)
        out = np.where(rel == 0.0, cap, out)
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, cap)

    def min_lre(self, b: Any) -> float:
        """The smallest per-parameter LRE (the usual summary)."""
        return float(self.lre(b).min())

    # -------------------------------------------------------------- as an optlib.Problem
    def problem(self, start: int = 1) -> Problem:
        """This fit as an :class:`optlib.Problem`: :math:`f(b) = \\tfrac12\\sum_i r_i(b)^2` with residuals
        (so ``minimize(..., method="levenberg-marquardt")`` and the Gauss–Newton curvature apply),
        ``x0`` = the chosen start, ``x_star`` = the certified parameters, ``f_star`` = RSS/2."""
        x0 = torch.as_tensor(self.start(start), dtype=torch.float64)

        def residuals(b: Tensor) -> Tensor:
            return self.residuals(b)

        def outer(u: Tensor) -> Tensor:
            return 0.5 * torch.dot(u, u)

        def fun(b: Tensor) -> Tensor:
            return outer(self.residuals(b))

        def value_and_grad(b: Tensor) -> tuple[Tensor, Tensor]:
            r = self.residuals(b)
            return 0.5 * torch.dot(r, r), self.jacobian(b).T @ r

        def gauss_newton(b: Tensor) -> Tensor:
            J = self.jacobian(b)
            return J.T @ J

        prob = Problem(
            fun, self.n, value_and_grad=value_and_grad, residuals=residuals, outer=outer,
            curvatures={"gauss-newton": gauss_newton},
            constants=Constants(convex=False, notes={"all": "nonlinear regression; no global constants known"}),
            f_star=0.5 * self.certified_rss, x_star=torch.as_tensor(self.certified, dtype=torch.float64),
            x0=x0, name=f"nist-{self.name}",
        )
        prob.power, prob.scale = 2.0, 1.0
        return prob


def _parse(path: Path) -> NistProblem:
    text = path.read_text(encoding="ascii")
    lines = text.splitlines()
    where = f"NIST file {path.name}"

    def span(label: str) -> tuple[int, int]:
        m = re.search(label.replace(" ", r"\s+") + r"\s*\(lines\s+(\d+)\s+to\s+(\d+)\)", text, re.IGNORECASE)
        if m is None:
            raise ValueError(f"{where}: no '{label} (lines a to b)' entry in the header")
        return int(m.group(1)), int(m.group(2))

    def value(label: str) -> str:
        m = re.search(re.escape(label) + r":\s*(" + _NUM + r")", text)
        if m is None:
            raise ValueError(f"{where}: no '{label}' line")
        return m.group(1)

    name_m = re.search(r"Dataset Name:\s*(\S+)", text)
    level_m = re.search(r"(Lower|Average|Higher)\s+Level of Difficulty", text)
    class_m = re.search(r"Model:\s*(.+?)\s*$", text, re.MULTILINE)
    npar_m = re.search(r"(\d+)\s+Parameters", text)
    if not (name_m and level_m and class_m and npar_m):
        raise ValueError(f"{where}: missing dataset name, difficulty, model class or parameter count")
    name = name_m.group(1)
    s_lo, s_hi = span("Starting Values")
    d_lo, d_hi = span("Data")
    start1, start2, cert, std, cert_text = [], [], [], [], []
    for i in range(s_lo, s_hi + 1):
        m = re.match(r"\s*b(\d+)\s*=\s*(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s+(" + _NUM + r")\s*$",
                     lines[i - 1])
        if m is None or int(m.group(1)) != len(start1) + 1:
            raise ValueError(f"{where}: line {i} is not a parameter line 'bk = start1 start2 certified std'")
        start1.append(float(m.group(2)))
        start2.append(float(m.group(3)))
        cert.append(float(m.group(4)))
        std.append(float(m.group(5)))
        cert_text.append(m.group(4))
    if len(cert) != int(npar_m.group(1)):
        raise ValueError(f"{where}: {len(cert)} parameter lines for {npar_m.group(1)} parameters")
    rows = []
    for i in range(d_lo, d_hi + 1):
        fields = lines[i - 1].split()
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise ValueError(f"{where}: data line {i} is not numeric: {lines[i - 1]!r}") from None
    data = np.array(rows, dtype=np.float64)
    n_obs = int(value("Number of Observations"))
    if data.ndim != 2 or data.shape[0] != n_obs or data.shape[1] < 2:
        raise ValueError(f"{where}: expected {n_obs} data rows of y and x, got shape {data.shape}")
    formula_lines = []
    in_model = False
    for line in lines:
        if line.startswith("Model:"):
            in_model = True
            continue
        if in_model:
            if re.search(r"Starting\s+[Vv]alues", line):
                break
            s = line.strip()
            if "=" in s or (formula_lines and s):
                formula_lines.append(s)
    rss_text = value("Residual Sum of Squares")
    return NistProblem(
        name=name,
        difficulty=level_m.group(1).lower(),
        model_class=class_m.group(1),
        formula=" ".join(formula_lines),
        x=data[:, 1] if data.shape[1] == 2 else data[:, 1:].copy(),
        y=data[:, 0].copy(),
        start1=np.array(start1),
        start2=np.array(start2),
        certified=np.array(cert),
        certified_std=np.array(std),
        certified_digits=tuple(significant_digits(t) for t in cert_text),
        certified_text=tuple(cert_text),
        certified_rss=float(rss_text),
        rss_text=rss_text,
        residual_sd=float(value("Residual Standard Deviation")),
        dof=int(value("Degrees of Freedom")),
        n_obs=n_obs,
        path=path,
    )


_CACHE: dict[str, NistProblem] = {}


def _files() -> dict[str, Path]:
    return {p.stem.lower(): p for p in sorted(DATA_DIR.glob("*.dat"))}


def load_nist(name: str) -> NistProblem:
    """Parse the shipped file of problem ``name`` (case-insensitive; cached per process).

    Raises ``ValueError`` naming the available problems for an unknown name, and when the parsed
    parameter count disagrees with the model's.
    """
    files = _files()
    key = str(name).lower()
    if key not in files:
        raise ValueError(f"unknown NIST problem {name!r}; available: {', '.join(nist_problems())}")
    if key not in _CACHE:
        prob = _parse(files[key])
        if prob.name not in MODELS:
            raise ValueError(f"NIST file {files[key].name} names dataset {prob.name!r}, which has no model here")
        if MODELS[prob.name][3] != prob.n:
            raise ValueError(f"{prob.name}: the file has {prob.n} parameters, the model {MODELS[prob.name][3]}")
        _CACHE[key] = prob
    return _CACHE[key]


def nist_problems(difficulty: str | None = None) -> list[str]:
    """Names of the shipped problems, by difficulty (lower, average, higher) then in NIST's order.

    ``difficulty`` keeps one level only.
    """
    if difficulty is not None and difficulty not in LEVELS:
        raise ValueError(f"difficulty must be one of {', '.join(LEVELS)}, got {difficulty!r}")
    present = {p.stem for p in DATA_DIR.glob("*.dat")}
    names = [n for n in MODELS if n in present]
    by_level = {lvl: [] for lvl in LEVELS}
    for n in names:
        by_level[load_nist(n).difficulty].append(n)
    if difficulty is not None:
        return by_level[difficulty]
    return [n for lvl in LEVELS for n in by_level[lvl]]
