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

from optlib.drift import gradient, integrate, lambda_max, modified_flow
from scale.bench import drift as bd
from scale.bench.common import pin_threads

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
        pin_threads(THREADS)
        self.mlp = bd.DigitsMLP(1000, 32)
        self.theta = self.mlp.init(0)
        self.igr = modified_flow(self.mlp, "igr", 0.01)
        self.momentum = modified_flow(self.mlp, "momentum", 0.01, beta=0.9)

    def time_gradient(self):
        gradient(self.mlp, self.theta)

    def time_igr_flow(self):
        self.igr(self.theta)

    def time_momentum_flow(self):
        self.momentum(self.theta)

    def time_lambda_max(self):
        lambda_max(self.mlp, self.theta, steps=20)

    def track_flow_to_gradient_ratio(self):
        return bd.flow_cost(self.mlp)["ratio"]

    track_flow_to_gradient_ratio.unit = "ratio"


def local_slope(kind: str) -> float:
    """Slope of log ||GD step - flow at time h|| against log h (see the module docstring)."""
    theta0 = torch.tensor(LOCAL_START, dtype=torch.float64)
    errors = []
    for h in LOCAL_STEPS:
        step = theta0 - h * gradient(bd.landscape_loss, theta0)
        flow = integrate(modified_flow(bd.landscape_loss, kind, h), theta0, h, rtol=1e-13, atol=1e-15)
        errors.append(float((step - flow).norm()))
    return float(np.polyfit(np.log(LOCAL_STEPS), np.log(errors), 1)[0])


class Slopes:
    timeout = 600
    number = 1
    repeat = 1

    def setup(self):
        pin_threads(THREADS)
        self.cfg = bd.Config(**bd.PRESETS["quick"])

    def track_local_slope_gradient_flow(self):
        return local_slope("gradient")

    def track_local_slope_igr_flow(self):
        return local_slope("igr")

    def track_igr_bias_slope(self):
        return bd.run_igr_bias(self.cfg, _NoBar())["slope"]

    def track_dal_loss_ratio(self):
        return bd.run_dal(self.cfg, _NoBar())["verdict"]["loss_ratio"]

    track_local_slope_gradient_flow.unit = "slope"
    track_local_slope_igr_flow.unit = "slope"
    track_igr_bias_slope.unit = "slope"
    track_dal_loss_ratio.unit = "ratio"
