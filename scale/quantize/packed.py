r"""The packed W4A16 format: int4 codes two per byte, per-group scales and zeros, optional act-order ``g_idx``.

A :class:`~scale.quantize.quantizer.QuantizedWeight` of an ``nn.Linear`` (``W`` ``[N, K]``,
:math:`W_{nk} \approx S_{n,g(k)}(Q_{nk} - Z_{n,g(k)})`) is stored K-major, in the layout of the kernel
:mod:`kernels.w4a16`:

* ``qweight``: uint8 ``[ceil(K/2), N]``; byte ``[i, n]`` = code ``(n, 2i)`` in the low nibble, code ``(n, 2i+1)`` in
  the high nibble (an odd K is padded with a zero nibble);
* ``scales``, ``zeros``: ``[n_groups, N]`` (the transposes of the quantizer's ``[N, n_groups]``), in their float
  dtype, zeros in code units;
* ``g_idx``: int32 ``[K]`` when the groups come from act-order, absent otherwise (column ``k`` in group
  ``k // group_size``).

Codes of 2, 3 or 4 bits fit a nibble; 8-bit codes do not, and packing them is refused. Packing and unpacking are
exact inverses (codes, scales, zeros and ``g_idx`` come back bit for bit).

:class:`QuantLinear` runs from the packed form: the Triton kernel for CUDA activations, the PyTorch reference of the
same layout elsewhere. :func:`replace_linear_layers` swaps a model's ``nn.Linear`` modules for it.

Files: :func:`save_packed` writes safetensors (``<layer>.qweight``, ``.scales``, ``.zeros``, optional ``.g_idx`` and
``.bias``) with the format tag, the quantization config (``bits``, ``group_size``, ``sym`` and any extra keys such
as the method) and each layer's shape in the metadata. :func:`load_packed` checks all of it and refuses a file
whose config differs from the one the caller expects, naming each differing key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from kernels.w4a16 import MAX_PACKED_BITS, dequantize_packed, pack_int4, unpack_int4, w4a16_matmul
from scale.quantize.quantizer import QuantizedWeight

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "PackedWeight",
    "QuantLinear",
    "load_into_model",
    "load_packed",
    "packed_config",
    "replace_linear_layers",
    "save_packed",
]

FORMAT_NAME = "optlib-w4a16"
"""The ``format`` entry of a file's metadata."""
FORMAT_VERSION = "1"
CONFIG_KEYS = ("bits", "group_size", "sym")
"""The quantization settings every file records; other JSON-serializable keys (``method``, ...) may be added."""


def _check_packable_bits(bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_PACKED_BITS:
        raise ValueError(f"the packed format stores codes of 1 to {MAX_PACKED_BITS} bits in nibbles (two per byte); "
                         f"bits={bits!r} is not supported by the packer")
    return bits


@dataclass
class PackedWeight:
    """One linear layer's weight in the packed layout (module docstring).

    ``group_size`` is the configured value (``-1``: one group per row); :attr:`effective_group_size` is what the
    kernel uses.
    """

    qweight: Tensor
    scales: Tensor
    zeros: Tensor
    g_idx: Tensor | None
    in_features: int
    out_features: int
    bits: int
    group_size: int
    sym: bool

    def __post_init__(self) -> None:
        _check_packable_bits(self.bits)
        k, n = self.in_features, self.out_features
        if self.qweight.dtype != torch.uint8 or tuple(self.qweight.shape) != ((k + 1) // 2, n):
            raise ValueError(f"qweight must be uint8 of shape {((k + 1) // 2, n)} for a {n}x{k} layer, got "
                             f"{self.qweight.dtype} {tuple(self.qweight.shape)}")
        if self.scales.shape != self.zeros.shape or self.scales.ndim != 2 or self.scales.shape[1] != n:
            raise ValueError(f"scales {tuple(self.scales.shape)} and zeros {tuple(self.zeros.shape)} must both be "
                             f"[n_groups, {n}]")
        if self.g_idx is None and self.scales.shape[0] != math.ceil(k / self.effective_group_size):
            raise ValueError(f"in_features={k} with group_size={self.group_size} needs "
                             f"{math.ceil(k / self.effective_group_size)} groups, scales has {self.scales.shape[0]}")
        if self.g_idx is not None:
            if self.g_idx.shape != (k,) or self.g_idx.dtype != torch.int32:
                raise ValueError(f"g_idx must be int32 of shape ({k},), got {self.g_idx.dtype} "
                                 f"{tuple(self.g_idx.shape)}")
            if k and (int(self.g_idx.min()) < 0 or int(self.g_idx.max()) >= self.scales.shape[0]):
                raise ValueError(f"g_idx values must lie in [0, {self.scales.shape[0]}), got "
                                 f"[{int(self.g_idx.min())}, {int(self.g_idx.max())}]")

    @property
    def effective_group_size(self) -> int:
        return self.in_features if self.group_size == -1 else self.group_size

    @classmethod
    def from_quantized(cls, qw: QuantizedWeight) -> PackedWeight:
        """Pack a quantized weight; refused for bits the nibble layout cannot hold or codes outside the range."""
        bits = _check_packable_bits(qw.bits)
        codes = qw.qweight
        maxq = 2**bits - 1
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > maxq):
            raise ValueError(f"codes must lie in [0, {maxq}] for bits={bits}, got [{int(codes.min())}, "
                             f"{int(codes.max())}]")
        n, k = codes.shape
        g_idx = None if qw.g_idx is None else qw.g_idx.to(torch.int32).contiguous()
        return cls(pack_int4(codes.T), qw.scales.T.contiguous(), qw.zeros.T.contiguous(), g_idx, k, n, bits,
                   qw.group_size, qw.sym)

    def to_quantized(self) -> QuantizedWeight:
        """The exact inverse of :meth:`from_quantized` (codes as int16, ``g_idx`` as int64)."""
        codes = unpack_int4(self.qweight, self.in_features).T.to(torch.int16).contiguous()
        g_idx = None if self.g_idx is None else self.g_idx.long()
        return QuantizedWeight(codes, self.scales.T.contiguous(), self.zeros.T.contiguous(), g_idx, self.bits,
                               self.group_size, self.sym)

    def dequantize(self) -> Tensor:
        """The fp32 weight ``[out, in]`` (``nn.Linear`` convention)."""
        return dequantize_packed(self.qweight, self.scales, self.zeros, self.in_features,
                                 self.effective_group_size, self.g_idx).T

    def matmul(self, x: Tensor, backend: str = "auto") -> Tensor:
        """``x @ dequantize().T`` from the packed form (:func:`kernels.w4a16.w4a16_matmul`)."""
        return w4a16_matmul(x, self.qweight, self.scales, self.zeros, self.effective_group_size, self.g_idx,
                            backend=backend)

    def config(self) -> dict[str, Any]:
        return {"bits": self.bits, "group_size": self.group_size, "sym": self.sym}

    def nbytes(self) -> int:
        """Bytes of the stored tensors."""
        extra = 0 if self.g_idx is None else self.g_idx.numel() * self.g_idx.element_size()
        return sum(t.numel() * t.element_size() for t in (self.qweight, self.scales, self.zeros)) + extra


class QuantLinear(nn.Module):
    """A linear layer ``y = x Ŵᵀ + b`` that runs from the packed int4 form (``Ŵ`` never materialized on CUDA).

    ``backend``: ``"auto"`` (the Triton kernel for CUDA activations, the PyTorch reference elsewhere), ``"triton"``
    or ``"torch"`` (see :func:`kernels.w4a16.w4a16_matmul`). The packed tensors are buffers, so ``.to(device)`` and
    ``state_dict`` carry them.
    """

    def __init__(self, packed: PackedWeight, bias: Tensor | None = None, backend: str = "auto") -> None:
        super().__init__()
        if backend not in ("auto", "triton", "torch"):
            raise ValueError(f"backend must be 'auto', 'triton' or 'torch', got {backend!r}")
        self.in_features = packed.in_features
        self.out_features = packed.out_features
        self.bits = packed.bits
        self.group_size = packed.group_size
        self.sym = packed.sym
        self.backend = backend
        self.register_buffer("qweight", packed.qweight)
        self.register_buffer("scales", packed.scales)
        self.register_buffer("zeros", packed.zeros)
        self.register_buffer("g_idx", packed.g_idx)
        if bias is not None and bias.shape != (packed.out_features,):
            raise ValueError(f"bias must have shape ({packed.out_features},), got {tuple(bias.shape)}")
        self.register_buffer("bias", None if bias is None else bias.detach().clone())

    @classmethod
    def from_quantized(cls, qw: QuantizedWeight, bias: Tensor | None = None, backend: str = "auto") -> QuantLinear:
        return cls(PackedWeight.from_quantized(qw), bias, backend)

    def packed(self) -> PackedWeight:
        return PackedWeight(self.qweight, self.scales, self.zeros, self.g_idx, self.in_features, self.out_features,
                            self.bits, self.group_size, self.sym)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"QuantLinear expects inputs with {self.in_features} features, got {x.shape[-1]}")
        group_size = self.in_features if self.group_size == -1 else self.group_size
        y = w4a16_matmul(x, self.qweight, self.scales, self.zeros, group_size, self.g_idx, backend=self.backend)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group_size={self.group_size}, sym={self.sym}, act_order={self.g_idx is not None}, "
                f"bias={self.bias is not None}")


def replace_linear_layers(model: nn.Module, weights: Mapping[str, QuantizedWeight], *,
                          backend: str = "auto") -> dict[str, QuantLinear]:
    """Swap each named ``nn.Linear`` of ``model`` for a :class:`QuantLinear` built from ``weights[name]``.

    Names are those of ``model.named_modules()``. The bias is kept (in its dtype); shapes must match. Returns the
    new modules by name. Refused, before anything is changed: an empty ``weights``, a model without ``nn.Linear``
    layers, a name that is not a module of ``model`` or not an ``nn.Linear``, a shape mismatch.
    """
    modules = dict(model.named_modules())
    linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layers to replace")
    if not weights:
        raise ValueError("no quantized weights given: pass a dict {layer name: QuantizedWeight}")
    for name, qw in weights.items():
        if name not in modules:
            close = [c for c in linears if c.endswith(name.split(".")[-1])][:3]
            raise KeyError(f"{name!r} is not a module of the model" + (f" (linear layers like it: {close})"
                                                                        if close else ""))
        module = modules[name]
        if not isinstance(module, nn.Linear):
            raise TypeError(f"{name!r} is a {type(module).__name__}, not an nn.Linear")
        if tuple(qw.shape) != tuple(module.weight.shape):
            raise ValueError(f"{name!r}: the quantized weight has shape {tuple(qw.shape)}, the layer "
                             f"{tuple(module.weight.shape)}")
    new = {name: QuantLinear.from_quantized(qw, modules[name].bias, backend=backend) for name, qw in weights.items()}
    return _install(model, modules, new)


def _install(model: nn.Module, modules: Mapping[str, nn.Module], new: Mapping[str, QuantLinear]
             ) -> dict[str, QuantLinear]:
    replaced = {}
    for name, layer in new.items():
        layer = layer.to(modules[name].weight.device)
        parent_name, _, child = name.rpartition(".")
        setattr(modules[parent_name] if parent_name else model, child, layer)
        replaced[name] = layer
    return replaced


def load_into_model(model: nn.Module, path: str | Path, expected_config: Mapping[str, Any] | None = None, *,
                    backend: str = "auto") -> dict[str, QuantLinear]:
    """Swap the ``nn.Linear`` layers named in a :func:`save_packed` file for :class:`QuantLinear` modules built
    from it. Refused (nothing changed) as in :func:`load_packed`, and when a named layer is missing from
    ``model``, is not an ``nn.Linear`` or has another shape."""
    layers, _ = load_packed(path, expected_config)
    modules = dict(model.named_modules())
    for name, (p, _) in layers.items():
        module = modules.get(name)
        if not isinstance(module, nn.Linear):
            raise ValueError(f"{path}: layer {name!r} is "
                             f"{'not a module of the model' if module is None else 'a ' + type(module).__name__}"
                             f", not an nn.Linear")
        if tuple(module.weight.shape) != (p.out_features, p.in_features):
            raise ValueError(f"{path}: layer {name!r} is {p.out_features}x{p.in_features} in the file, "
                             f"{tuple(module.weight.shape)} in the model")
    new = {name: QuantLinear(p, bias, backend=backend) for name, (p, bias) in layers.items()}
    return _install(model, modules, new)


# ----------------------------------------------------------------------------------------------------------------
# safetensors
# ----------------------------------------------------------------------------------------------------------------


def packed_config(layers: Mapping[str, PackedWeight], **extra: Any) -> dict[str, Any]:
    """The file-level quantization config of ``layers`` (they must agree on bits, group_size and sym) plus
    ``extra`` keys (JSON-serializable)."""
    configs = {name: p.config() for name, p in layers.items()}
    distinct = {json.dumps(c, sort_keys=True) for c in configs.values()}
    if len(distinct) > 1:
        raise ValueError(f"all layers of one file share one quantization config; got {sorted(distinct)}")
    if not configs:
        raise ValueError("no layers to save")
    config = dict(next(iter(configs.values())))
    clash = set(extra) & set(CONFIG_KEYS)
    if clash:
        raise ValueError(f"extra config keys may not override {sorted(clash)}")
    config.update(extra)
    json.dumps(config)  # TypeError now, naming the value, rather than at save time
    return config


def save_packed(path: str | Path, layers: Mapping[str, PackedWeight | QuantLinear], **extra_config: Any) -> Path:
    """Write ``layers`` to a safetensors file; the metadata holds the format, the config and each layer's shape.

    ``extra_config`` adds keys to the recorded config (for example ``method="gptq"``).
    """
    packed: dict[str, PackedWeight] = {}
    biases: dict[str, Tensor] = {}
    for name, layer in layers.items():
        if isinstance(layer, QuantLinear):
            packed[name] = layer.packed()
            if layer.bias is not None:
                biases[name] = layer.bias
        elif isinstance(layer, PackedWeight):
            packed[name] = layer
        else:
            raise TypeError(f"layer {name!r}: expected a PackedWeight or QuantLinear, got {type(layer).__name__}")
    config = packed_config(packed, **extra_config)
    tensors: dict[str, Tensor] = {}
    shapes = {}
    for name, p in packed.items():
        tensors[f"{name}.qweight"] = p.qweight.contiguous().cpu()
        tensors[f"{name}.scales"] = p.scales.contiguous().cpu()
        tensors[f"{name}.zeros"] = p.zeros.contiguous().cpu()
        if p.g_idx is not None:
            tensors[f"{name}.g_idx"] = p.g_idx.contiguous().cpu()
        if name in biases:
            tensors[f"{name}.bias"] = biases[name].detach().contiguous().cpu()
        shapes[name] = [p.out_features, p.in_features]
    metadata = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "quantization_config": json.dumps(config),
                "layers": json.dumps(shapes)}
    path = Path(path)
    save_file(tensors, str(path), metadata=metadata)
    return path


def _config_mismatch(stored: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    out = []
    for key, want in expected.items():
        if key not in stored:
            out.append(f"{key} is not recorded in the file (expected {want!r})")
        elif stored[key] != want or type(stored[key]) is not type(want):
            out.append(f"{key} is {stored[key]!r} in the file, {want!r} expected")
    return out


def load_packed(path: str | Path, expected_config: Mapping[str, Any] | None = None
                ) -> tuple[dict[str, tuple[PackedWeight, Tensor | None]], dict[str, Any]]:
    """Read a file written by :func:`save_packed`: ``({name: (PackedWeight, bias or None)}, config)``.

    Refused with the reason: a file that is not in this format (or of another format version), and, when
    ``expected_config`` is given, a recorded config that differs from it in any of its keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no packed model at {path}")
    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as exc:
        raise ValueError(f"{path} is not a safetensors file: {exc}") from exc
    with handle as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT_NAME:
            raise ValueError(f"refusing to load {path}: its metadata format is {meta.get('format')!r}, not "
                             f"{FORMAT_NAME!r} (not written by save_packed)")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"refusing to load {path}: format version {meta.get('format_version')!r}, this code "
                             f"reads version {FORMAT_VERSION}")
        config = json.loads(meta["quantization_config"])
        if expected_config is not None:
            problems = _config_mismatch(config, expected_config)
            if problems:
                raise ValueError(f"refusing to load {path}: quantization config mismatch: " + "; ".join(problems))
        shapes = json.loads(meta["layers"])
        keys = set(f.keys())
        layers = {}
        for name, (out_f, in_f) in shapes.items():
            def get(suffix: str, name: str = name) -> Tensor | None:
                key = f"{name}.{suffix}"
                return f.get_tensor(key) if key in keys else None

            missing = [s for s in ("qweight", "scales", "zeros") if f"{name}.{s}" not in keys]
            if missing:
                raise ValueError(f"{path}: layer {name!r} lacks tensors {missing}")
            packed = PackedWeight(get("qweight"), get("scales"), get("zeros"), get("g_idx"), in_f, out_f,
                                  config["bits"], config["group_size"], config["sym"])
            layers[name] = (packed, get("bias"))
    return layers, config
