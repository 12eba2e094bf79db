"""Discretisation drift (asv): the cost of the flows and the measured slopes and ratios.

* ``Cost.time_gradient``, ``Cost.time_igr_flow``, ``Cost.time_momentum_flow``: one gradient and one evaluation of
  the IGR and heavy-ball modified flows (:func:`optlib.drift.modified_flow`; each one gradient plus one
  Hessian-vector product) on the digits MLP of :mod:`scale.bench.drift` (64-32-32-10 tanh, 1,000 examples, full
  batch, float64, 3,466 parameters).
* ``Cost.time_lambda_max``: λ_max by 20 Lanczos iterations (:func:`optlib.drift.lambda_max`) on the same MLP.
* ``Cost.track_flow_to_gradient_ratio``: time of one IGR flow evaluation over one gradient (target <= 3).
* ``Slopes.track_local_slope_gradient_flow`` / ``track_local_slope_igr_flow``: the log-log slope of the one-step
  distance between a GD step and the flow (DOP853, rtol 1e-13) on :math:`E = \\log\\cosh x + \\tfrac14(y - x^2)^2`
  from ``(0.5, 0.4)``, for h = 2^-4 .. 2^-8 (hλ_max <= 0.1): theory 2 and 3.
* ``Slopes.track_igr_bias_slope``: the slope of the final λ_max against h of ``scale.bench.drift``'s igr-bias
  experiment at its quick sizes (negative: larger steps end flatter).
* ``Slopes.track_dal_loss_ratio``: the DAL run's final loss over the best non-diverging constant step's, at the
  quick sizes of ``scale.bench.drift``'s dal experiment (at most 1 meets the target).

Single-threaded, as the report runs.
"""

from __future__ import annotations

import numpy as np
import torch

from ._commit import requires

drift = requires("optlib.drift")
bd = requires("scale.bench.drift")
common = requires("scale.bench.common")

THREADS = 1
LOCAL_STEPS = [2.0 ** -k for k in range(4, 9)]
LOCAL_START = (0.5, 0.4)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


class Cost:
    timeout = 300
    number = 1
    repeat = (5, 20, 20.0)

    def setup(self):
        common.pin_threads(THREADS)
        self.gradient, self.lambda_max, self.flow_cost = drift.gradient, drift.lambda_max, bd.flow_cost
        self.mlp = bd.DigitsMLP(1000, 32)
        self.theta = self.mlp.init(0)
        self.igr = drift.modified_flow(self.mlp, "igr", 0.01)
        self.momentum = drift.modified_flow(self.mlp, "momentum", 0.01, beta=0.9)

    def time_gradient(self):
        self.gradient(self.mlp, self.theta)

    def time_igr_flow(self):
        self.igr(self.theta)

    def time_momentum_flow(self):
        self.momentum(self.theta)

    def time_lambda_max(self):
        self.lambda_max(self.mlp, self.theta, steps=20)

    def track_flow_to_gradient_ratio(self):
        return self.flow_cost(self.mlp)["ratio"]

    track_flow_to_gradient_ratio.unit = "ratio"
    track_flow_to_gradient_ratio.better = "lower"


def local_slope(kind: str) -> float:
    """Slope of log ||GD step - flow at time h|| against log h (see the module docstring)."""
    theta0 = torch.tensor(LOCAL_START, dtype=torch.float64)
    errors = []
    for h in LOCAL_STEPS:
        step = theta0 - h * drift.gradient(bd.landscape_loss, theta0)
        flow = drift.integrate(drift.modified_flow(bd.landscape_loss, kind, h), theta0, h, rtol=1e-13, atol=1e-15)
        errors.append(float((step - flow).norm()))
    return float(np.polyfit(np.log(LOCAL_STEPS), np.log(errors), 1)[0])


class Slopes:
    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        common.pin_threads(THREADS)
        self.cfg = bd.Config(**bd.PRESETS["quick"])
        self.run_igr_bias, self.run_dal = bd.run_igr_bias, bd.run_dal
        drift.integrate  # noqa: B018 - the local slopes need the commit's integrator (absent: skipped)

    def track_local_slope_gradient_flow(self):
        return local_slope("gradient")

    def track_local_slope_igr_flow(self):
        return local_slope("igr")

    def track_igr_bias_slope(self):
        return self.run_igr_bias(self.cfg, _NoBar())["slope"]

    def track_dal_loss_ratio(self):
        return self.run_dal(self.cfg, _NoBar())["verdict"]["loss_ratio"]

    track_local_slope_gradient_flow.unit = "slope"
    track_local_slope_gradient_flow.better = "none"
    track_local_slope_igr_flow.unit = "slope"
    track_local_slope_igr_flow.better = "none"
    track_igr_bias_slope.unit = "slope"
    track_igr_bias_slope.better = "none"
    track_dal_loss_ratio.unit = "ratio"
    track_dal_loss_ratio.better = "lower"
