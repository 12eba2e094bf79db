"""Post-training weight quantization of the GPT (spec 60): one group quantizer and the methods built on it.

The algorithms are pure functions on tensors, one module per method: :mod:`~scale.quantize.quantizer` (the
group quantizer and :class:`QuantizedWeight`), :mod:`~scale.quantize.rtn`, :mod:`~scale.quantize.gptq`,
:mod:`~scale.quantize.foem` (FOEM and GPTAQ as deltas on the GPTQ sweep), :mod:`~scale.quantize.smoothquant`
(SmoothQuant+) and :mod:`~scale.quantize.awq`. The model plumbing (calibration windows, Hessians by hooks,
smoothing folds, sequential quantization, perplexity) is :mod:`~scale.quantize.calibration`; the command line is
``python -m scale.quantize`` (:mod:`~scale.quantize.__main__`).
"""

from scale.quantize.awq import AWQSearch, awq, awq_scales, awq_search, weight_group_mean
from scale.quantize.calibration import (
    METHODS,
    MethodSpec,
    QuantizedModel,
    QuantSettings,
    SmoothingMapping,
    apply_smoothing,
    calibration_loss,
    calibration_windows,
    input_statistics,
    layer_hessians,
    model_size_bytes,
    perplexity,
    quantizable_linears,
    quantize_model,
    smoothing_mappings,
)
from scale.quantize.foem import FOEMSweep, foem
from scale.quantize.gptq import GPTQSweep, HessianError, SweepResult, gptq, hessian_from_inputs
from scale.quantize.quantizer import (
    SUPPORTED_BITS,
    QuantizedWeight,
    check_bits,
    check_group_size,
    default_g_idx,
    fit_groups,
    fit_range,
    quantize_codes,
    quantize_with,
)
from scale.quantize.rtn import rtn
from scale.quantize.smoothquant import ScaledQuantizedWeight, smoothing_scales, smoothquant_plus

__all__ = [
    "AWQSearch",
    "FOEMSweep",
    "GPTQSweep",
    "HessianError",
    "METHODS",
    "MethodSpec",
    "QuantSettings",
    "QuantizedModel",
    "QuantizedWeight",
    "SUPPORTED_BITS",
    "ScaledQuantizedWeight",
    "SmoothingMapping",
    "SweepResult",
    "apply_smoothing",
    "awq",
    "awq_scales",
    "awq_search",
    "calibration_loss",
    "calibration_windows",
    "check_bits",
    "check_group_size",
    "default_g_idx",
    "fit_groups",
    "fit_range",
    "foem",
    "gptq",
    "hessian_from_inputs",
    "input_statistics",
    "layer_hessians",
    "model_size_bytes",
    "perplexity",
    "quantizable_linears",
    "quantize_codes",
    "quantize_model",
    "quantize_with",
    "rtn",
    "smoothing_mappings",
    "smoothing_scales",
    "smoothquant_plus",
    "weight_group_mean",
]
