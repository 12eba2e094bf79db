r"""Orthogonalization of matrices: the Newton–Schulz iteration and the exact polar factor.

For a matrix :math:`G = U \Sigma V^\top` (reduced SVD) Muon steps along :math:`U V^\top`, the polar factor
of :math:`G`. Up to the sign and a radius :math:`t`, this is the linear minimization oracle over the
spectral-norm ball: :math:`\arg\min_{\|Z\|_{2\to 2} \le t} \langle G, Z\rangle = -t\,U V^\top`.

:func:`newton_schulz` approximates it with an odd matrix polynomial applied ``steps`` times. The input is
first scaled to :math:`X_0 = G / (\|G\|_F + \varepsilon)`, so that its spectral norm is at most 1. Each
step then computes

.. math::

    A = X_k X_k^\top, \qquad X_{k+1} = a_k X_k + (b_k A + c_k A^2) X_k ,

which maps every singular value :math:`\sigma` of :math:`X_k` to :math:`p_k(\sigma) = a_k\sigma + b_k\sigma^3
+ c_k\sigma^5` and leaves the singular vectors alone. With Keller Jordan's coefficients
:data:`KELLER_COEFFICIENTS` the polynomial has slope 3.4445 at zero, so small singular values grow fast,
but the fixed point is not 1: after five steps the singular values lie in a band around 1 (the blog
reports roughly :math:`[0.5, 1.5]`; ``tests/test_newton_schulz.py`` measures the band for our inputs),
not at 1 exactly. The classical cubic Newton–Schulz iteration :math:`(a, b, c) = (3/2, -1/2, 0)` converges
to :math:`U V^\top` quadratically once the singular values are close to 1, and is used in the tests to
show the iteration converges to :func:`polar`.

The rectangular case is handled on the short side: when ``rows > cols`` the matrix is transposed first,
so :math:`A` is ``min(rows, cols)`` square, and transposed back at the end.

:func:`matrix_view` is the reshape rule every Muon-type optimizer in optlib uses to turn a parameter into
the matrix (or batch of matrices) it orthogonalizes:

==============================  ==========================================================
parameter shape                 matrix view
==============================  ==========================================================
``(n,)`` or a scalar            ``ValueError``: route biases and gains to AdamW
``(m, n)``                      itself
``(E, m, n)``                   itself: a stack of ``E`` matrices (MoE experts), batched
``(out, in, k1, ..., kd)``      ``(out, in * k1 * ... * kd)``: a convolution filter
==============================  ==========================================================

Sources: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (blog, 2024,
https://kellerjordan.github.io/posts/muon/) and the reference code KellerJordan/Muon ``muon.py``;
``torch.optim.Muon`` (torch >= 2.9). The conv rule is the one in Keller Jordan's reference
(filters flattened to ``out x (in*kh*kw)``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from numbers import Real

import torch

Tensor = torch.Tensor

__all__ = [
    "KELLER_COEFFICIENTS",
    "NS_MATMULS_PER_STEP",
    "matrix_view",
    "newton_schulz",
    "ns_coefficient_schedule",
    "polar",
]

#: Keller Jordan's quintic coefficients (a, b, c): the default of KellerJordan/Muon and torch.optim.Muon.
KELLER_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)

#: Matrix products per Newton–Schulz step: ``X X^T``, ``A A`` and ``(bA + cA^2) X``.
NS_MATMULS_PER_STEP = 3


def ns_coefficient_schedule(coefficients, steps: int) -> list[tuple[float, float, float]]:
    """The per-step list of ``(a, b, c)`` triples.

    ``coefficients`` is either one triple, used at every step, or a sequence of exactly ``steps``
    triples (a per-iteration schedule such as the "polar express" or Dion coefficients).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    coefficients = tuple(coefficients)
    if len(coefficients) == 3 and all(isinstance(v, Real) for v in coefficients):
        return [tuple(float(v) for v in coefficients)] * steps
    triples = []
    for i, triple in enumerate(coefficients):
        if not isinstance(triple, Sequence) or len(triple) != 3 or not all(isinstance(v, Real) for v in triple):
            raise ValueError(
                "coefficients must be one (a, b, c) triple or a sequence of `steps` triples; "
                f"entry {i} is {triple!r}"
            )
        triples.append(tuple(float(v) for v in triple))
    if len(triples) != steps:
        raise ValueError(f"a coefficient schedule must have one triple per step: got {len(triples)} for steps={steps}")
    return triples


def _schedule(coefficients, steps: int) -> list[tuple[float, float, float]]:
    """:func:`ns_coefficient_schedule`, validated once per distinct (coefficients, steps): an
    optimizer calls it for every matrix at every step."""
    try:
        key = tuple(tuple(c) if isinstance(c, Sequence) else c for c in coefficients)
        return _schedule_cached(key, steps)
    except TypeError:  # unhashable entries: validate without the cache
        return ns_coefficient_schedule(coefficients, steps)


@functools.lru_cache(maxsize=64)
def _schedule_cached(coefficients: tuple, steps: int) -> list[tuple[float, float, float]]:
    return ns_coefficient_schedule(coefficients, steps)


def newton_schulz(
    G: Tensor,
    steps: int = 5,
    coefficients=KELLER_COEFFICIENTS,
    eps: float = 1e-7,
    compute_dtype: torch.dtype | None = None,
    cast_back: bool = True,
) -> Tensor:
    r"""``steps`` Newton–Schulz iterations towards the polar factor of each matrix in ``G``.

    Parameters
    ----------
    G : Tensor
        Shape ``(..., m, n)`` with ``G.ndim >= 2``; leading dimensions are a batch, each matrix is
        normalized and iterated on its own.
    steps : int
        Number of iterations ``k``.
    coefficients : triple or sequence of triples
        ``(a, b, c)`` used at every step, or one triple per step.
    eps : float
        :math:`X_0 = G / (\|G\|_F + \varepsilon)` per matrix; a zero matrix maps to zero.
    compute_dtype : torch.dtype, optional
        Dtype of the iteration (Keller Jordan's reference uses ``torch.bfloat16``); the default is
        ``G``'s dtype. The result is returned in ``G``'s dtype.
    cast_back : bool
        ``False`` returns the result in ``compute_dtype`` (saving a conversion pass when the caller
        adds it into a parameter anyway, as an optimizer step does).

    Returns
    -------
    Tensor
        Same shape and dtype as ``G``: :math:`U\,p(\Sigma/(\|G\|_F+\varepsilon))\,V^\top` where ``p`` is the
        composition of the step polynomials.
    """
    if G.ndim < 2:
        raise ValueError(
            f"newton_schulz needs a matrix or a batch of matrices (ndim >= 2), got shape {tuple(G.shape)}; "
            "use matrix_view() for conv filters, and route 1-D parameters to AdamW"
        )
    schedule = _schedule(coefficients, steps)
    X = G.to(compute_dtype) if compute_dtype is not None else G
    transposed = G.shape[-2] > G.shape[-1]
    if transposed:
        X = X.mT
    if X.ndim == 2:
        X = X / (X.norm() + eps)
        for a, b, c in schedule:
            A = X @ X.mT
            B = torch.addmm(A, A, A, beta=b, alpha=c)  # b A + c A^2
            X = torch.addmm(X, B, X, beta=a)  # a X + B X
    else:
        batch = X.shape[:-2]
        X = X.reshape(-1, *X.shape[-2:])
        X = X / (torch.linalg.matrix_norm(X, keepdim=True) + eps)
        for a, b, c in schedule:
            A = X @ X.mT
            B = torch.baddbmm(A, A, A, beta=b, alpha=c)
            X = torch.baddbmm(X, B, X, beta=a)
        X = X.reshape(*batch, *X.shape[-2:])
    if transposed:
        X = X.mT
    return X.to(G.dtype) if cast_back else X


def polar(G: Tensor, rtol: float | None = None) -> Tensor:
    r"""The exact orthogonal polar factor :math:`U V^\top` of each matrix in ``G``, by SVD.

    ``G = U \Sigma V^\top`` is the reduced SVD (batched over leading dimensions). Singular values at or
    below ``rtol * sigma_max`` are treated as zero and their singular vectors dropped, so a
    rank-deficient ``G`` gives the partial isometry on its range (which is also what Newton–Schulz
    converges to) and a zero matrix gives zero. ``rtol`` defaults to ``max(m, n)`` times the machine
    epsilon of ``G``'s dtype, the usual numerical-rank rule. For full-rank ``G`` this is exactly
    :math:`U V^\top = G (G^\top G)^{-1/2}`, the LMO direction over the unit spectral-norm ball (with a
    minus sign).
    """
    if G.ndim < 2:
        raise ValueError(f"polar needs a matrix or a batch of matrices (ndim >= 2), got shape {tuple(G.shape)}")
    U, S, Vh = torch.linalg.svd(G, full_matrices=False)
    if rtol is None:
        rtol = max(G.shape[-2], G.shape[-1]) * torch.finfo(S.dtype).eps
    keep = S > rtol * S.amax(dim=-1, keepdim=True)
    return (U * keep.unsqueeze(-2).to(U.dtype)) @ Vh


def matrix_view(t: Tensor) -> Tensor:
    """The matrix (or batch of matrices) a Muon-type optimizer orthogonalizes for the tensor ``t``.

    The rule (a view, no copy, when ``t`` is contiguous; see the module docstring): 2-D as is;
    3-D ``(E, m, n)`` as is, a batch of ``E`` matrices; ``ndim >= 4`` convolution filters
    ``(out, in, *kernel)`` flattened to ``(out, in * prod(kernel))``; 0-D and 1-D raise ``ValueError``.
    Use ``orthogonalized.reshape(t.shape)`` to restore the parameter's shape.
    """
    if t.ndim < 2:
        raise ValueError(
            f"cannot orthogonalize a {t.ndim}-D tensor of shape {tuple(t.shape)}: Muon updates matrices only; "
            "1-D parameters (biases, gains) belong in an AdamW group (see optlib.optim.muon_param_groups)"
        )
    if t.ndim <= 3:
        return t
    return t.reshape(t.shape[0], math.prod(t.shape[1:]))
