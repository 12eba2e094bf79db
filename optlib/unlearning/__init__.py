r"""Machine unlearning by uphill Gauss–Newton steps (K-FADE, McKinney et al. 2026, arXiv:2602.10568) and its
baselines, on any ``nn.Module`` with a forget/retain split.

* :func:`kfade` / :class:`KFADE`: :math:`\theta \leftarrow \theta + \eta\,(G_r+\lambda I)^{-1}\nabla L_f(\theta)`
  with the retain-set GGN :math:`G_r` from :mod:`optlib.curvature` (K-FAC, EK-FAC, GGN, or a dense matrix) and the
  KL trust-region step :math:`\eta = \sqrt{2\varepsilon/g^\top\delta}`;
* :func:`gradient_ascent` / :class:`GradientAscent`: :math:`\theta \leftarrow \theta + \eta\nabla L_f(\theta)`;
* :func:`newton_unlearning` / :class:`NewtonUnlearning`: the one-step influence update
  :math:`\theta_0 + \frac{N_f}{N_r}H_r^{-1}\nabla L_f(\theta_0)`;
* :func:`retrain`: the retrained reference;
* metrics: :func:`forget_loss`, :func:`forget_loss_increase`, :func:`retain_kl`, :func:`output_kl`,
  :func:`distance_to_retrained`, :func:`accuracy`.

Every method returns an :class:`UnlearningDelta` (:math:`\theta_T-\theta_0` per parameter, the per-step record,
and :meth:`UnlearningDelta.apply` to add it to a later, fine-tuned model).
"""

from .delta import UnlearningDelta
from .methods import (
    KFADE,
    METHODS,
    GradientAscent,
    NewtonUnlearning,
    Unlearner,
    gradient_ascent,
    kfade,
    newton_unlearning,
    unlearn,
)
from .metrics import (
    accuracy,
    distance_to_retrained,
    forget_loss,
    forget_loss_increase,
    kl_to_reference,
    output_kl,
    reference_log_probs,
    retain_kl,
)
from .retraining import retrain

__all__ = [
    "KFADE",
    "METHODS",
    "GradientAscent",
    "NewtonUnlearning",
    "Unlearner",
    "UnlearningDelta",
    "accuracy",
    "distance_to_retrained",
    "forget_loss",
    "forget_loss_increase",
    "gradient_ascent",
    "kfade",
    "kl_to_reference",
    "newton_unlearning",
    "output_kl",
    "reference_log_probs",
    "retain_kl",
    "retrain",
    "unlearn",
]
