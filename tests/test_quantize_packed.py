"""The packed W4A16 format (scale/quantize/packed.py): exact pack/unpack and safetensors round trips, QuantLinear
against ``X @ dequantize().T``, model-level swapping, and the refusals (unsupported bits, mismatched config, wrong
files).

The quantized weights come from the group quantizer (RTN) and from GPTQ with act-order (a real ``g_idx``), so the
format is exercised on what the methods produce. QuantLinear on CPU runs the PyTorch reference of the packed layout;
the Triton kernel itself is checked against that reference in tests/test_kernels_w4a16.py. The dequantized weight
is compared bit for bit (the same fp32 operations on both sides); layer outputs to 1e-6 relative (two matmuls that
may sum in different orders).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from scale.quantize import QuantizedWeight
from scale.quantize.gptq import gptq, hessian_from_inputs
from scale.quantize.packed import (
    FORMAT_NAME,
    PackedWeight,
    QuantLinear,
    load_into_model,
    load_packed,
    replace_linear_layers,
    save_packed,
)
from scale.quantize.rtn import rtn


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rtn(out_f=24, in_f=64, bits=4, group_size=16, sym=False, seed=0, allow_ragged=False) -> QuantizedWeight:
    W = torch.randn(out_f, in_f, generator=_gen(seed))
    return rtn(W, bits=bits, group_size=group_size, sym=sym, allow_ragged=allow_ragged)


def _act_order(out_f=16, in_f=48, group_size=16, seed=1) -> QuantizedWeight:
    g = _gen(seed)
    X = torch.randn(256, in_f, generator=g) * torch.linspace(0.1, 3.0, in_f)  # unequal column scales
    W = torch.randn(out_f, in_f, generator=g)
    qw = gptq(W, hessian_from_inputs(X), bits=4, group_size=group_size, act_order=True)
    assert qw.g_idx is not None and not torch.equal(qw.g_idx, torch.arange(in_f) // group_size)
    return qw


def _same(a: QuantizedWeight, b: QuantizedWeight) -> None:
    assert torch.equal(a.qweight.long(), b.qweight.long())
    assert torch.equal(a.scales, b.scales) and a.scales.dtype == b.scales.dtype
    assert torch.equal(a.zeros, b.zeros) and a.zeros.dtype == b.zeros.dtype
    assert (a.g_idx is None) == (b.g_idx is None)
    if a.g_idx is not None:
        assert torch.equal(a.g_idx.long(), b.g_idx.long())
    assert (a.bits, a.group_size, a.sym) == (b.bits, b.group_size, b.sym)


CASES = {
    "rtn-g16": lambda: _rtn(),
    "rtn-3bit-sym": lambda: _rtn(bits=3, sym=True, seed=2),
    "rtn-2bit-row": lambda: _rtn(bits=2, group_size=-1, seed=3),
    "rtn-odd-ragged": lambda: _rtn(in_f=37, group_size=16, allow_ragged=True, seed=4),
    "gptq-act-order": _act_order,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_pack_unpack_round_trip_is_exact(case):
    qw = CASES[case]()
    packed = PackedWeight.from_quantized(qw)
    out_f, in_f = qw.shape
    assert packed.qweight.dtype == torch.uint8 and packed.qweight.shape == ((in_f + 1) // 2, out_f)
    expected_bytes = ((in_f + 1) // 2) * out_f + 2 * qw.scales.numel() * qw.scales.element_size() \
        + (0 if qw.g_idx is None else 4 * in_f)  # two codes per byte, scales and zeros, int32 g_idx
    assert packed.nbytes() == expected_bytes
    _same(packed.to_quantized(), qw)
    assert torch.equal(packed.dequantize(), qw.dequantize().float())


@pytest.mark.parametrize("case", sorted(CASES))
def test_safetensors_round_trip_is_exact(case, tmp_path):
    qw = CASES[case]()
    bias = torch.randn(qw.shape[0], generator=_gen(9))
    layer = QuantLinear.from_quantized(qw, bias)
    path = save_packed(tmp_path / "m.safetensors", {"blocks.0.fc": layer}, method="test")
    layers, config = load_packed(path, {"bits": qw.bits, "group_size": qw.group_size, "sym": qw.sym})
    assert config == {"bits": qw.bits, "group_size": qw.group_size, "sym": qw.sym, "method": "test"}
    packed, loaded_bias = layers["blocks.0.fc"]
    _same(packed.to_quantized(), qw)
    assert torch.equal(loaded_bias, bias)


@pytest.mark.parametrize("case", ["rtn-g16", "rtn-odd-ragged", "gptq-act-order"])
def test_quant_linear_equals_x_times_dequantized_weight(case):
    qw = CASES[case]()
    bias = torch.randn(qw.shape[0], generator=_gen(10))
    layer = QuantLinear.from_quantized(qw, bias)
    x = torch.randn(3, 5, qw.shape[1], generator=_gen(11))
    W = qw.dequantize()
    expected = x @ W.T + bias
    torch.testing.assert_close(layer(x), expected, rtol=1e-6, atol=1e-6 * float(expected.abs().max()))
    # fp16 activations: the same numbers rounded once to fp16 at the end (fp32 accumulation)
    torch.testing.assert_close(layer(x.half()).float(), (x.half().float() @ W.half().float().T + bias),
                               rtol=2**-10, atol=2**-10 * float(expected.abs().max()))


def test_quant_linear_would_catch_a_wrong_g_idx():
    """The equality above fails when the act-order groups are replaced by consecutive ones."""
    qw = _act_order()
    wrong = QuantizedWeight(qw.qweight, qw.scales, qw.zeros, None, qw.bits, qw.group_size, qw.sym)
    x = torch.randn(4, qw.shape[1], generator=_gen(12))
    expected = x @ qw.dequantize().T
    with pytest.raises(AssertionError):
        torch.testing.assert_close(QuantLinear.from_quantized(wrong)(x), expected, rtol=1e-6,
                                   atol=1e-6 * float(expected.abs().max()))


def test_unsupported_bits_are_refused_by_the_packer():
    qw8 = _rtn(bits=8)
    with pytest.raises(ValueError, match="bits=8 is not supported by the packer"):
        PackedWeight.from_quantized(qw8)
    with pytest.raises(ValueError, match="bits=8 is not supported by the packer"):
        QuantLinear.from_quantized(qw8)
    # codes outside the declared width are refused rather than silently truncated
    qw = _rtn(bits=2)
    bad = QuantizedWeight(qw.qweight + 4, qw.scales, qw.zeros, None, 2, qw.group_size, qw.sym)
    with pytest.raises(ValueError, match=r"\[0, 3\] for bits=2"):
        PackedWeight.from_quantized(bad)


def test_mismatched_config_is_refused_with_the_reason(tmp_path):
    path = save_packed(tmp_path / "m.safetensors", {"fc": PackedWeight.from_quantized(_rtn())}, method="rtn")
    with pytest.raises(ValueError, match="group_size is 16 in the file, 128 expected"):
        load_packed(path, {"bits": 4, "group_size": 128})
    with pytest.raises(ValueError, match="sym is False in the file, True expected"):
        load_packed(path, {"sym": True})
    with pytest.raises(ValueError, match="method is 'rtn' in the file, 'gptq' expected"):
        load_packed(path, {"method": "gptq"})
    with pytest.raises(ValueError, match="damp is not recorded"):
        load_packed(path, {"damp": 0.01})
    model = nn.Sequential(nn.Linear(64, 24))
    with pytest.raises(ValueError, match="group_size"):
        load_into_model(model, path, {"group_size": 32}, )
    assert isinstance(model[0], nn.Linear)  # nothing was replaced


def test_foreign_and_malformed_files_are_refused(tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="metadata format is 'pt'"):
        load_packed(other)
    not_st = tmp_path / "x.safetensors"
    not_st.write_text("hello")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_packed(not_st)
    with pytest.raises(FileNotFoundError):
        load_packed(tmp_path / "missing.safetensors")
    # mixed configs cannot share one file
    with pytest.raises(ValueError, match="share one quantization config"):
        save_packed(tmp_path / "m.safetensors", {"a": PackedWeight.from_quantized(_rtn()),
                                                  "b": PackedWeight.from_quantized(_rtn(group_size=32))})
    # a file whose metadata says version 2 is refused
    good = save_packed(tmp_path / "g.safetensors", {"fc": PackedWeight.from_quantized(_rtn())})
    tensors = load_file(str(good))
    meta = {"format": FORMAT_NAME, "format_version": "2", "quantization_config": json.dumps({"bits": 4}),
            "layers": "{}"}
    save_file(tensors, str(tmp_path / "v2.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match="format version '2'"):
        load_packed(tmp_path / "v2.safetensors")


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(32, 48)
        self.block = nn.Sequential(nn.GELU(), nn.Linear(48, 48, bias=False))
        self.out = nn.Linear(48, 8)

    def forward(self, x):
        return self.out(self.block(self.inp(x)))


def test_replace_linear_layers_and_reload_from_file(tmp_path):
    torch.manual_seed(0)
    model = _Tiny()
    weights = {name: rtn(m.weight.detach(), bits=4, group_size=16) for name, m in model.named_modules()
               if isinstance(m, nn.Linear)}
    reference = _Tiny()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, qw in weights.items():
            reference.get_submodule(name).weight.copy_(qw.dequantize())
    x = torch.randn(7, 32, generator=_gen(13))
    replaced = replace_linear_layers(model, weights)
    assert set(replaced) == {"inp", "block.1", "out"}
    assert isinstance(model.block[1], QuantLinear) and model.block[1].bias is None
    expected = reference(x)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
    path = save_packed(tmp_path / "tiny.safetensors", replaced, method="rtn")
    fresh = _Tiny()
    fresh.load_state_dict(reference.state_dict())
    load_into_model(fresh, path, {"bits": 4, "group_size": 16, "method": "rtn"})
    assert all(isinstance(fresh.get_submodule(n), QuantLinear) for n in replaced)
    assert torch.equal(fresh(x), model(x))


def test_replace_linear_layers_refusals():
    model = _Tiny()
    qw = rtn(torch.randn(48, 32), group_size=16)
    with pytest.raises(KeyError, match="'inpt' is not a module"):
        replace_linear_layers(model, {"inpt": qw})
    with pytest.raises(TypeError, match="'block.0' is a GELU, not an nn.Linear"):
        replace_linear_layers(model, {"block.0": qw})
    with pytest.raises(ValueError, match=r"shape \(48, 32\), the layer \(8, 48\)"):
        replace_linear_layers(model, {"out": qw})
    with pytest.raises(ValueError, match="no nn.Linear layers"):
        replace_linear_layers(nn.Sequential(nn.ReLU()), {"0": qw})
    with pytest.raises(ValueError, match="no quantized weights"):
        replace_linear_layers(model, {})
    assert isinstance(model.inp, nn.Linear)
