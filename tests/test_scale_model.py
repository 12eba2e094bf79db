"""The GPT of the training entry point (``scale.model``): shapes, causality, the loss at initialisation, the
options (z-loss, qk-norm, harmonic head, RMSNorm, PowerNorm) against formulas computed independently in numpy
float64, the truncated backward pass of Drop-Muon, FLOP accounting against ``torch.utils.flop_counter``,
sampling, and bad input. Every model here is tiny; nothing is timed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import logsumexp
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from optlib.optim import block_costs as hook_block_costs
from optlib.optim import muon_param_groups
from scale.model import (
    GPT,
    NORMS,
    CausalSelfAttention,
    GPTConfig,
    PowerNorm,
    RMSNorm,
    harmonic_log_probs,
)

TINY = dict(vocab_size=13, block_size=8, n_layer=3, n_head=2, n_embd=16)


def tiny(seed: int = 0, dtype=torch.float64, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**TINY, **kw})).to(dtype)


def tokens(b: int = 4, t: int = 8, vocab: int = 13, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (b, t), generator=g)


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


# ------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    "kw, words",
    [
        (dict(norm="batchnorm"), ["norm", "layernorm", "rmsnorm", "powernorm"]),
        (dict(head="sigmoid"), ["head", "softmax", "harmonic"]),
        (dict(n_embd=30, n_head=4), ["n_embd", "n_head", "divisible"]),
        (dict(harmonic_exponent=float("nan"), head="harmonic"), ["harmonic_exponent", "finite"]),
        (dict(harmonic_exponent=float("inf"), head="harmonic"), ["harmonic_exponent", "finite"]),
        (dict(harmonic_exponent=-1.0, head="harmonic"), ["harmonic_exponent"]),
        (dict(z_loss=-1e-4), ["z_loss"]),
        (dict(z_loss=float("nan")), ["z_loss"]),
        (dict(z_loss=1e-4, head="harmonic"), ["z_loss", "harmonic"]),
        (dict(dropout=1.0), ["dropout"]),
        (dict(n_layer=0), ["n_layer"]),
        (dict(vocab_size=0), ["vocab_size"]),
        (dict(powernorm_alpha=1.0), ["powernorm_alpha"]),
        (dict(norm_eps=0.0), ["norm_eps"]),
    ],
)
def test_bad_config_raises_naming_the_field(kw, words):
    with pytest.raises(ValueError) as err:
        GPT(GPTConfig(**{**TINY, **kw}))
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_config_type_errors_and_dict_round_trip():
    with pytest.raises(TypeError, match="n_layer"):
        GPTConfig(n_layer=2.0).validate()
    with pytest.raises(TypeError, match="qk_norm"):
        GPTConfig(qk_norm=1).validate()
    cfg = GPTConfig(**TINY, qk_norm=True, z_loss=1e-4)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown GPTConfig field"):
        GPTConfig.from_dict({**cfg.to_dict(), "n_embed": 3})


def test_bad_forward_input_raises_naming_it():
    m = tiny()
    idx = tokens()
    with pytest.raises(ValueError, match="block_size"):
        m(torch.zeros(2, TINY["block_size"] + 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 12\]"):
        m(idx.clone().index_fill_(1, torch.tensor([3]), 13))
    with pytest.raises(ValueError, match="token ids"):
        m(idx.clone().index_fill_(1, torch.tensor([0]), -2))
    with pytest.raises(TypeError, match="integer token ids"):
        m(idx.double())
    with pytest.raises(ValueError, match=r"shape \(batch, time\)"):
        m(idx[0])
    for bad in (-1, TINY["n_layer"], True, 1.0):
        with pytest.raises(ValueError, match="cutoff"):
            m(idx, cutoff=bad)
    with pytest.raises(ValueError, match="target ids"):
        m(idx, torch.full_like(idx, 13))
    with pytest.raises(ValueError, match="shape of idx"):
        m(idx, idx[:, :4])
    with pytest.raises(ValueError, match="harmonic exponent"):
        harmonic_log_probs(torch.zeros(2, 4), torch.ones(3, 4), float("inf"))
    with pytest.raises(ValueError, match="temperature"):
        m.generate(idx, 2, temperature=0.0)
    with pytest.raises(ValueError, match="top_k"):
        m.generate(idx, 2, top_k=0)


# ---------------------------------------------------------------------------------------- basic behaviour
@pytest.mark.parametrize("kw", [dict(), dict(norm="rmsnorm", qk_norm=True), dict(norm="powernorm"),
                                dict(head="harmonic"), dict(tie_weights=False, bias=False, z_loss=1e-4)])
def test_shapes_and_float64(kw):
    m = tiny(**kw)
    idx = tokens(3, 5)
    logits, loss = m(idx)
    assert logits.shape == (3, 5, TINY["vocab_size"]) and loss is None
    assert logits.dtype == torch.float64
    logits, loss = m(idx, tokens(3, 5, seed=2))
    assert loss.shape == () and loss.dtype == torch.float64 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(g.dtype == torch.float64 and torch.isfinite(g).all() for g in grads)
    assert set(m.loss_parts) == {"ce", "z"} and all(isinstance(v, float) for v in m.loss_parts.values())
    assert m.loss_parts["ce"] + m.loss_parts["z"] == pytest.approx(loss.item(), rel=1e-12)


@pytest.mark.parametrize("norm", NORMS)
def test_causal_masking(norm):
    """Changing the token at position t leaves the logits at positions < t unchanged (and changes position t).
    PowerNorm is checked in training mode too: it normalizes with the statistic of the previous batches, so
    no position sees the others through the batch statistics; its buffers are restored between the calls."""
    m = tiny(norm=norm, qk_norm=True)
    idx = tokens(2, 8)
    t = 5
    idx2 = idx.clone()
    idx2[:, t] = (idx2[:, t] + 1) % TINY["vocab_size"]
    for training in ([False, True] if norm == "powernorm" else [False]):
        m.train(training)
        state = {k: v.clone() for k, v in m.state_dict().items()}
        a, _ = m(idx)
        m.load_state_dict(state)
        b, _ = m(idx2)
        assert torch.equal(a[:, :t], b[:, :t])
        assert (a[:, t] - b[:, t]).abs().max() > 1e-6


@pytest.mark.parametrize("kw", [dict(), dict(head="harmonic"), dict(norm="rmsnorm"), dict(tie_weights=False)])
def test_loss_at_init_is_close_to_log_vocab(kw):
    """GPT-2 initialisation gives near-uniform predictions: with independent random targets the loss is within
    0.05 of log V (the logits have standard deviation about 0.02 sqrt(C) = 0.08, adding about 0.003). Would
    catch: an embedding initialised with std 1 instead of 0.02."""
    cfg = dict(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=16)
    m = tiny(**cfg, **kw)
    idx, tgt = tokens(16, 16, 50, seed=3), tokens(16, 16, 50, seed=4)
    _, loss = m(idx, tgt)
    assert abs(loss.item() - math.log(50)) < 0.05
    with torch.no_grad():
        m.wte.weight.normal_(0.0, 1.0)
        if not kw.get("tie_weights", True):
            m.lm_head.weight.normal_(0.0, 1.0)
    _, bad = m(idx, tgt)
    assert abs(bad.item() - math.log(50)) > 0.05


def test_gpt2_initialisation():
    """Weights N(0, 0.02^2), residual projections N(0, (0.02/sqrt(2L))^2), biases zero: the sample standard
    deviations of the 128-wide model match to 3% (16k+ entries each)."""
    m = tiny(dtype=torch.float32, n_embd=128, n_head=4, n_layer=4)
    blk = m.blocks[1]
    assert blk.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.03)
    assert blk.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.03)
    for w in (blk.attn.c_proj.weight, blk.mlp.c_proj.weight):
        assert w.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.03)
    assert blk.mlp.c_fc.bias.abs().max().item() == 0.0
    assert m.lm_head.weight is m.wte.weight


def test_bias_and_tie_options():
    m = tiny(bias=False, tie_weights=False)
    assert all(mod.bias is None for mod in m.modules() if isinstance(mod, (torch.nn.Linear, torch.nn.LayerNorm)))
    assert m.lm_head.weight is not m.wte.weight
    tied = tiny()
    c, v, t = TINY["n_embd"], TINY["vocab_size"], TINY["block_size"]
    n_bias = sum(p.numel() for n, p in tied.named_parameters() if n.endswith("bias"))
    assert tied.num_params(non_embedding=False) - m.num_params(non_embedding=False) == n_bias - v * c
    assert tied.num_params(non_embedding=False) - tied.num_params() == t * c
    assert m.num_params(non_embedding=False) - m.num_params() == t * c + v * c


def test_dropout_only_in_training():
    m = tiny(dropout=0.3)
    idx = tokens()
    m.train()
    assert not torch.equal(m(idx)[0], m(idx)[0])
    m.eval()
    assert torch.equal(m(idx)[0], m(idx)[0])
    m0 = tiny(dropout=0.0)
    assert torch.equal(m0(idx)[0], m0(idx)[0])


def test_state_dict_round_trip():
    for kw in (dict(norm="powernorm", qk_norm=True), dict(tie_weights=False, head="harmonic")):
        m = tiny(**kw)
        m(tokens())[0].sum().backward()  # moves PowerNorm's running statistics
        state = m.state_dict()
        if kw.get("norm") == "powernorm":
            assert "blocks.0.ln_1.running_phi" in state and "blocks.0.ln_1.running_nu" in state
            assert not torch.equal(state["blocks.0.ln_1.running_phi"], torch.ones(TINY["n_embd"], dtype=torch.float64))
        m2 = tiny(seed=99, **kw)
        m2.load_state_dict(state)
        m.eval(), m2.eval()
        assert torch.equal(m(tokens())[0], m2(tokens())[0])
        assert (m2.lm_head.weight is m2.wte.weight) == (kw.get("tie_weights", True))


def test_muon_routing_of_the_model():
    """The routing rule of optlib sends the matrices of the blocks to Muon and the embeddings, the head (tied or
    not) and the 1-D parameters to AdamW."""
    for tie in (True, False):
        groups = {g["use_muon"]: set(g["param_names"]) for g in muon_param_groups(tiny(tie_weights=tie))}
        assert {"wte.weight", "wpe.weight"} <= groups[False]
        assert ("lm_head.weight" in groups[False]) or tie
        assert all(n.startswith("blocks.") and n.endswith("weight") for n in groups[True])
        assert len(groups[True]) == 4 * TINY["n_layer"]


# ------------------------------------------------------------------------------------------------ z-loss
def test_z_loss_hand_case_zero_head():
    """Hand case: with a zero head every logit is 0, so log Z = log V and the loss is log V + c (log V)^2."""
    c = 1e-2
    m = tiny(z_loss=c, tie_weights=False)
    with torch.no_grad():
        m.lm_head.weight.zero_()
    _, loss = m(tokens(), tokens(seed=5))
    lv = math.log(TINY["vocab_size"])
    assert loss.item() == pytest.approx(lv + c * lv**2, rel=1e-13)
    assert m.loss_parts["z"] == pytest.approx(c * lv**2, rel=1e-13)


def test_z_loss_equals_coef_times_mean_logsumexp_squared():
    """Against numpy/scipy on the model's own logits, ignored targets (-1) left out. Would catch: the square of
    the mean instead of the mean of the square, and a sum instead of a mean."""
    c = 1e-1
    m = tiny(z_loss=c)
    with torch.no_grad():  # spread the logits so that log Z is far from log V
        m.wte.weight.mul_(20.0)
    idx, tgt = tokens(), tokens(seed=6)
    tgt[0, :3] = -1
    logits, loss = m(idx, tgt)
    z = np64(logits).reshape(-1, TINY["vocab_size"])
    y = tgt.reshape(-1).numpy()
    keep = y != -1
    lse = logsumexp(z, axis=-1)[keep]
    ce = np.mean(lse - z[keep, y[keep]])
    expected = ce + c * np.mean(lse**2)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    assert m.loss_parts["ce"] == pytest.approx(ce, rel=1e-12)
    assert abs((ce + c * np.mean(lse) ** 2) - expected) > 1e-6
    assert abs((ce + c * np.sum(lse**2)) - expected) > 1e-6

    m.config.z_loss = 0.0  # coefficient 0: plain cross-entropy, and the z part is exactly 0
    _, plain = m(idx, tgt)
    assert plain.item() == pytest.approx(ce, rel=1e-12)
    assert m.loss_parts["z"] == 0.0


# ------------------------------------------------------------------------------------------------ qk-norm
@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_qk_norm_output_invariant_to_scaling_q_and_k(norm):
    """Multiplying the query and key projections (weights and biases) by 7 leaves the attention output unchanged
    with qk-norm (norm epsilon set to 1e-300, float64). Would catch: no qk-norm, where the same scaling changes
    the output."""
    x = torch.randn(2, 8, TINY["n_embd"], dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    c = TINY["n_embd"]
    for qk in (True, False):
        attn = tiny(norm=norm, qk_norm=qk).blocks[0].attn
        assert isinstance(attn, CausalSelfAttention)
        if qk:
            attn.q_norm.eps = attn.k_norm.eps = 1e-300
            assert isinstance(attn.q_norm, RMSNorm if norm == "rmsnorm" else torch.nn.LayerNorm)
        before = attn(x)
        with torch.no_grad():
            attn.c_attn.weight[: 2 * c].mul_(7.0)
            attn.c_attn.bias[: 2 * c].mul_(7.0)
        after = attn(x)
        diff = (after - before).abs().max().item()
        if qk:
            assert diff < 1e-12
        else:
            assert diff > 1e-3


# ---------------------------------------------------------------------------------------------- harmonic
def test_harmonic_head_against_naive_float64_formula():
    """p_i = d_i^-n / sum_j d_j^-n with d_i = ||w_i - x|| computed directly in numpy; probabilities sum to 1;
    the loss is the mean of -log p_y. Would catch: the exponent n used on d^2 (that is, 2n on d)."""
    m = tiny(head="harmonic", harmonic_exponent=3.0)
    idx, tgt = tokens(), tokens(seed=8)
    logp, loss = m(idx, tgt)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(logp.shape[:-1], dtype=torch.float64), atol=1e-13)
    h = np64(m.hidden_states(idx)).reshape(-1, TINY["n_embd"])
    w = np64(m.lm_head.weight)
    d = np.linalg.norm(w[None, :, :] - h[:, None, :], axis=-1)
    p = d**-3.0 / np.sum(d**-3.0, axis=-1, keepdims=True)
    assert np.allclose(np64(logp).reshape(p.shape), np.log(p), rtol=0, atol=1e-12)
    y = tgt.reshape(-1).numpy()
    assert loss.item() == pytest.approx(-np.mean(np.log(p[np.arange(len(y)), y])), rel=1e-12)
    wrong = d**-6.0 / np.sum(d**-6.0, axis=-1, keepdims=True)
    assert np.abs(np.log(wrong) - np.log(p)).max() > 1e-3


def test_harmonic_exponent_default_is_sqrt_width():
    m = tiny(head="harmonic")
    assert m.config.exponent == pytest.approx(math.sqrt(TINY["n_embd"]))
    x = torch.randn(5, TINY["n_embd"], dtype=torch.float64)
    ref = harmonic_log_probs(x, m.lm_head.weight, math.sqrt(TINY["n_embd"]))
    assert torch.equal(m._head(x), ref)


# ------------------------------------------------------------------------------------------------ norms
def test_rmsnorm_closed_form():
    torch.manual_seed(0)
    norm = RMSNorm(6, eps=1e-5, bias=True).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    xn = np64(x)
    ref = xn / np.sqrt(np.mean(xn**2, axis=-1, keepdims=True) + 1e-5) * np64(norm.weight) + np64(norm.bias)
    assert np.allclose(np64(norm(x)), ref, rtol=0, atol=1e-13)


def _powernorm(alpha=0.9, eps=1e-5):
    torch.manual_seed(0)
    pn = PowerNorm(5, alpha=alpha, eps=eps).double()
    with torch.no_grad():
        pn.weight.uniform_(0.5, 1.5)
        pn.bias.uniform_(-1, 1)
        pn.running_phi.uniform_(0.5, 2.0)
    return pn


def test_powernorm_eval_closed_form_and_buffers():
    pn = _powernorm().eval()
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    phi = np64(pn.running_phi).copy()
    ref = np64(pn.weight) * np64(x) / np.sqrt(phi + 1e-5) + np64(pn.bias)
    assert np.allclose(np64(pn(x)), ref, rtol=0, atol=1e-13)
    assert np.array_equal(np64(pn.running_phi), phi)  # eval moves nothing
    assert {"running_phi", "running_nu"} <= set(pn.state_dict())


def test_powernorm_training_forward_and_running_quadratic_mean():
    """Training forward: Y = gamma X / psi_{B-1} + beta with the statistic from before this batch, then
    psi^2 <- alpha psi^2 + (1 - alpha) mean_batch(x^2) (per channel, all tokens of the batch). Would catch:
    normalizing with the updated statistic."""
    alpha, eps = 0.9, 1e-5
    pn = _powernorm(alpha, eps).train()
    x = 3.0 * torch.randn(2, 6, 5, dtype=torch.float64)
    phi0 = np64(pn.running_phi).copy()
    y = pn(x)
    xs = np64(x).reshape(-1, 5)
    ref = np64(pn.weight) * xs / np.sqrt(phi0 + eps) + np64(pn.bias)
    assert np.allclose(np64(y).reshape(-1, 5), ref, rtol=0, atol=1e-13)
    phi1 = alpha * phi0 + (1 - alpha) * np.mean(xs**2, axis=0)
    assert np.allclose(np64(pn.running_phi), phi1, rtol=1e-14, atol=0)
    wrong = np64(pn.weight) * xs / np.sqrt(phi1 + eps) + np64(pn.bias)
    assert np.abs(wrong - ref).max() > 1e-3


def test_powernorm_approximate_backward():
    """Backward of Algorithm 1: g = gamma dL/dY, dL/dX = (g - nu_{B-1} xhat) / psi_{B-1},
    nu_B = nu_{B-1} (1 - (1 - alpha) Gamma_B) + (1 - alpha) Lambda_B, Gamma_B = mean(xhat^2),
    Lambda_B = mean(xhat g); exact gradients for gamma and beta. Two steps, so that nu_{B-1} != 0 in the
    second. Would catch: the exact gradient g / psi of the forward (no nu correction)."""
    alpha, eps = 0.8, 1e-5
    pn = _powernorm(alpha, eps).train()
    gen = torch.Generator().manual_seed(3)
    nu = np.zeros(5)
    for step in range(2):
        x = torch.randn(7, 5, dtype=torch.float64, generator=gen).requires_grad_()
        gy = torch.randn(7, 5, dtype=torch.float64, generator=gen)
        phi = np64(pn.running_phi).copy()
        pn.weight.grad = pn.bias.grad = None
        pn(x).backward(gy)
        psi = np.sqrt(phi + eps)
        xhat = np64(x) / psi
        g = np64(pn.weight) * np64(gy)
        gx = (g - nu * xhat) / psi
        assert np.allclose(np64(x.grad), gx, rtol=0, atol=1e-13)
        assert np.allclose(np64(pn.weight.grad), np.sum(np64(gy) * xhat, axis=0), atol=1e-13)
        assert np.allclose(np64(pn.bias.grad), np.sum(np64(gy), axis=0), atol=1e-13)
        nu = nu * (1 - (1 - alpha) * np.mean(xhat**2, axis=0)) + (1 - alpha) * np.mean(xhat * g, axis=0)
        assert np.allclose(np64(pn.running_nu), nu, rtol=1e-13, atol=1e-15)
        if step == 1:
            assert np.abs(g / psi - gx).max() > 1e-3


@pytest.mark.parametrize("norm", NORMS)
def test_training_a_few_steps_is_stable(norm):
    """Thirty AdamW steps on one fixed batch: every loss finite and the last one well below the first."""
    m = tiny(dtype=torch.float32, norm=norm, qk_norm=True)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    idx, tgt = tokens(8, 8, seed=10), tokens(8, 8, seed=11)
    losses = []
    for _ in range(30):
        opt.zero_grad(set_to_none=True)
        _, loss = m(idx, tgt)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0] - 0.5, losses


# ------------------------------------------------------------------------------------ truncated backward
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("s", [1, 2])
def test_cutoff_truncates_backward(s, tie):
    """With cutoff s: wpe and blocks[:s] keep grad None; every other gradient equals that of a full pass whose
    input to block s is detached (computed here by hand). Would catch: a full backward (cutoff 0), which fills
    the lower blocks' gradients."""
    m = tiny(tie_weights=tie, norm="powernorm")
    m.eval()  # fixed normalization statistics so that both passes see the same function
    idx, tgt = tokens(), tokens(seed=12)
    _, loss = m(idx, tgt, cutoff=s)
    loss.backward()
    got = {n: (None if p.grad is None else p.grad.clone()) for n, p in m.named_parameters()}
    lower = ["wpe.weight"] + [n for n in got if any(n.startswith(f"blocks.{j}.") for j in range(s))]
    assert all(got[n] is None for n in lower)
    assert all(got[n] is not None for n in got if n not in lower and not (n == "wte.weight" and not tie))

    m.zero_grad(set_to_none=True)
    with torch.no_grad():
        x = m.wte(idx) + m.wpe(torch.arange(idx.shape[1]))
        for blk in m.blocks[:s]:
            x = blk(x)
    for blk in m.blocks[s:]:
        x = blk(x)
    ref_loss = F.cross_entropy(m.lm_head(m.ln_f(x)).reshape(-1, TINY["vocab_size"]), tgt.reshape(-1))
    ref_loss.backward()
    assert ref_loss.item() == pytest.approx(loss.item(), rel=1e-14)
    for n, p in m.named_parameters():
        if got[n] is None:
            assert p.grad is None, n
        else:
            assert torch.allclose(got[n], p.grad, rtol=1e-12, atol=1e-15), n

    m.zero_grad(set_to_none=True)
    m(idx, tgt, cutoff=0)[1].backward()
    assert any(p.grad is not None for n, p in m.named_parameters() if n in lower)


def test_flops_of_truncated_steps_match_a_flop_counter():
    """Matmul FLOPs counted by torch.utils.flop_counter (math attention kernel, so that the attention products
    are counted too) equal the analytic count: forward = sum(block_costs.forward) + head, backward with cutoff s
    = block_costs.backward(s) + head weight and input gradients. Would catch: the textbook split in which the
    lowest trained block skips its input gradients (it cannot here: its first norm has a trainable gain)."""
    b = 3
    m = tiny(dtype=torch.float32)
    idx = tokens(b, TINY["block_size"])
    parts, costs = m.flop_breakdown(b), m.block_costs(b)
    head_bwd = parts["head_weight_grad"] + parts["head_input_grad"]
    for s in range(TINY["n_layer"]):
        m.zero_grad(set_to_none=True)
        with sdpa_kernel(SDPBackend.MATH):
            with FlopCounterMode(display=False) as fwd:
                _, loss = m(idx, idx, cutoff=s)
            with FlopCounterMode(display=False) as bwd:
                loss.backward()
        assert fwd.get_total_flops() == sum(costs.forward) + parts["head_forward"]
        assert bwd.get_total_flops() == costs.backward(s) + head_bwd
        textbook = sum(
            parts["linear_weight_grad"] + (parts["linear_input_grad"] + parts["attention_backward"]) * (j > s)
            for j in range(s, TINY["n_layer"]))
        assert (bwd.get_total_flops() != textbook + head_bwd) == (s < TINY["n_layer"])


def test_block_costs_against_the_hook_based_estimate():
    """Where they overlap (the nn.Linear layers), the analytic costs equal optlib.optim.block_costs measured with
    forward hooks on one batch."""
    b = 2
    m = tiny(dtype=torch.float32)
    x = torch.randn(b, TINY["block_size"], TINY["n_embd"])
    hook = hook_block_costs(m.blocks, x)
    parts, costs = m.flop_breakdown(b), m.block_costs(b)
    for j in range(TINY["n_layer"]):
        assert costs.forward[j] - parts["attention_forward"] == hook.forward[j]
        assert (costs.weight_grad[j] + costs.input_grad[j] - parts["attention_backward"]
                == hook.weight_grad[j] + hook.input_grad[j])
    assert costs.step(0) > costs.step(TINY["n_layer"] - 1)


def test_flops_per_token_is_palm_6n_plus_attention():
    """6N + 12 L C T equals the analytic matmul count per token of a full step plus 6 FLOPs per 1-D parameter
    (biases and gains, which 6N counts and the matmul count does not)."""
    for kw in (dict(), dict(tie_weights=False)):
        m = tiny(**kw)
        b = 2
        parts, costs = m.flop_breakdown(b), m.block_costs(b)
        head = parts["head_forward"] + parts["head_weight_grad"] + parts["head_input_grad"]
        one_d = sum(p.numel() for p in m.parameters() if p.ndim == 1)
        assert m.flops_per_token() == pytest.approx((costs.step(0) + head) / parts["tokens"] + 6 * one_d, rel=1e-14)


# ------------------------------------------------------------------------------------------------ sampling
def test_generate_deterministic_for_a_seeded_generator():
    m = tiny(dropout=0.2)
    m.train()
    start = tokens(2, 3)
    a = m.generate(start, 12, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(0))
    b = m.generate(start, 12, temperature=0.8, top_k=5, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 15) and torch.equal(a, b) and torch.equal(a[:, :3], start)
    assert m.training  # the mode is restored
    c = m.generate(start, 12, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a, c)
    # top_k = 1 is greedy decoding: the argmax of the last position, step by step
    g = m.generate(start, 4, top_k=1)
    m.eval()
    ref = start
    for _ in range(4):
        ref = torch.cat((ref, m(ref[:, -TINY["block_size"]:])[0][:, -1].argmax(-1, keepdim=True)), dim=1)
    assert torch.equal(g, ref)
