r"""A small decoder-only GPT for the training entry point, with the training-side ablations as options.

The architecture follows nanoGPT (A. Karpathy, ``model.py``) and GPT-2 (Radford et al. 2019): learned token and
position embeddings, ``n_layer`` pre-norm blocks

.. math::

    x \leftarrow x + \mathrm{Attn}(\mathrm{Norm}_1(x)),\qquad
    x \leftarrow x + W_2\,\mathrm{GELU}(W_1\,\mathrm{Norm}_2(x)),\qquad W_1 \in \mathbb{R}^{4C\times C},

a final norm and a linear head whose weight is, by default, the token embedding (weight tying, Press & Wolf
2017). Attention is causal multi-head attention through
:func:`torch.nn.functional.scaled_dot_product_attention` with ``is_causal=True``. Initialisation is GPT-2's:
every ``Linear`` and ``Embedding`` weight :math:`\mathcal{N}(0, 0.02^2)`, biases zero, norm gains one, and the two
residual projections of each block (attention output and MLP output) :math:`\mathcal{N}(0, (0.02/\sqrt{2L})^2)`
with :math:`L` = ``n_layer``.

Options (all in :class:`GPTConfig`; the formulas are in the docstrings of the pieces that implement them):

* ``norm``: ``"layernorm"`` (Ba et al. 2016), ``"rmsnorm"`` (:class:`RMSNorm`, Zhang & Sennrich 2019) or
  ``"powernorm"`` (:class:`PowerNorm`, Shen et al. 2020, arXiv:2003.07845).
* ``qk_norm``: a norm over the head dimension on queries and keys (Dehghani et al. 2023; Wortsman et al. 2023,
  arXiv:2309.14322), see :class:`CausalSelfAttention`.
* ``z_loss``: the PaLM auxiliary loss :math:`c\,(\log Z)^2` (Chowdhery et al. 2022, arXiv:2204.02311), see
  :meth:`GPT.forward`.
* ``head="harmonic"``: the harmonic head of Baek et al. 2025 (arXiv:2502.01628), see :func:`harmonic_log_probs`.
* ``cutoff`` (an argument of :meth:`GPT.forward`): the truncated backward pass of Drop-Muon
  (Gruntkowska et al. 2025, arXiv:2510.02239) through :func:`optlib.optim.progressive_forward`.

Layout: ``wte``, ``wpe``, ``drop``, ``blocks`` (the ``n_layer`` blocks, input side first), ``ln_f``, ``lm_head``,
registered in that order, so :func:`optlib.optim.muon_param_groups` finds the head as the last ``nn.Linear``
(with tied weights the head weight *is* ``wte.weight`` and goes to AdamW either way).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from optlib.optim.progressive import BlockCosts, progressive_forward

__all__ = [
    "HEADS",
    "NORMS",
    "GPT",
    "Block",
    "CausalSelfAttention",
    "GPTConfig",
    "MLP",
    "PowerNorm",
    "RMSNorm",
    "harmonic_log_probs",
    "make_norm",
]

NORMS = ("layernorm", "rmsnorm", "powernorm")
HEADS = ("softmax", "harmonic")
IGNORE_INDEX = -1
"""Target value that is left out of the loss (nanoGPT's convention)."""
HARMONIC_EPS = 1e-12
"""Lower clamp of the squared distances of the harmonic head."""


# ----------------------------------------------------------------------------------------------- configuration
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass
class GPTConfig:
    """Shape and options of the GPT model (scale.model.GPT).

    Attributes
    ----------
    vocab_size, block_size, n_layer, n_head, n_embd : int
        Vocabulary size :math:`V`, context length :math:`T`, blocks :math:`L`, heads :math:`h`, width :math:`C`
        (``n_embd`` must be divisible by ``n_head``; the head dimension is :math:`C/h`).
    dropout : float
        Dropout probability in ``[0, 1)`` after the embeddings, on the attention weights and after each residual
        projection (training mode only).
    bias : bool
        Biases in every ``Linear`` but the head, and in the norms (RMSNorm and PowerNorm then add a learned
        shift :math:`\\beta`).
    norm : {"layernorm", "rmsnorm", "powernorm"}
        The norm of the blocks and of the final norm (see :func:`make_norm`).
    qk_norm : bool
        Normalize queries and keys per head before the dot product (LayerNorm, or RMSNorm when
        ``norm="rmsnorm"``).
    z_loss : float
        Coefficient :math:`c \\ge 0` of :math:`c\\,(\\log Z)^2`; 1e-4 in PaLM. Softmax head only.
    head : {"softmax", "harmonic"}
        Output head.
    harmonic_exponent : float or None
        The exponent :math:`n > 0` of the harmonic head; ``None`` means :math:`\\sqrt{C}`.
    tie_weights : bool
        Use the token embedding as the head weight (otherwise a separate ``Linear``).
    norm_eps : float
        The :math:`\\epsilon` of every norm (added to the variance or mean square).
    powernorm_alpha : float
        The running-average factor :math:`\\alpha \\in [0, 1)` of :class:`PowerNorm` (0.9 in the paper).
    """

    vocab_size: int = 65
    block_size: int = 64
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    norm: str = "layernorm"
    qk_norm: bool = False
    z_loss: float = 0.0
    head: str = "softmax"
    harmonic_exponent: float | None = None
    tie_weights: bool = True
    norm_eps: float = 1e-5
    powernorm_alpha: float = 0.9

    def validate(self) -> None:
        """Raise ``ValueError`` (``TypeError`` for a value of the wrong type) naming the field at fault and the
        values it accepts."""
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            v = getattr(self, name)
            if not _is_int(v):
                raise TypeError(f"GPTConfig.{name} must be an int, got {type(v).__name__} {v!r}")
            if v < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1, got {v}")
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by GPTConfig.n_head ({self.n_head})")
        for name in ("bias", "qk_norm", "tie_weights"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"GPTConfig.{name} must be True or False, got {getattr(self, name)!r}")
        if not _is_real(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be a probability in [0, 1), got {self.dropout!r}")
        if self.norm not in NORMS:
            raise ValueError(f"GPTConfig.norm must be one of {', '.join(map(repr, NORMS))}; got {self.norm!r}")
        if self.head not in HEADS:
            raise ValueError(f"GPTConfig.head must be one of {', '.join(map(repr, HEADS))}; got {self.head!r}")
        if not _is_real(self.z_loss) or not math.isfinite(self.z_loss) or self.z_loss < 0:
            raise ValueError(f"GPTConfig.z_loss must be a finite number >= 0 (1e-4 typical), got {self.z_loss!r}")
        if self.head == "harmonic" and self.z_loss != 0:
            raise ValueError(
                "GPTConfig.z_loss acts on the softmax head's logits; with head='harmonic' set z_loss=0 "
                "(the harmonic head's scores are normalized distances with no free shift for z-loss to pin)")
        if self.harmonic_exponent is not None and (
                not _is_real(self.harmonic_exponent) or not math.isfinite(self.harmonic_exponent)
                or self.harmonic_exponent <= 0):
            raise ValueError(
                f"GPTConfig.harmonic_exponent must be None (sqrt(n_embd)) or a finite number > 0, "
                f"got {self.harmonic_exponent!r}")
        if not _is_real(self.norm_eps) or not math.isfinite(self.norm_eps) or self.norm_eps <= 0:
            raise ValueError(f"GPTConfig.norm_eps must be a finite number > 0, got {self.norm_eps!r}")
        if not _is_real(self.powernorm_alpha) or not 0.0 <= self.powernorm_alpha < 1.0:
            raise ValueError(f"GPTConfig.powernorm_alpha must lie in [0, 1), got {self.powernorm_alpha!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def exponent(self) -> float:
        """The harmonic exponent in use: ``harmonic_exponent`` or :math:`\\sqrt{C}`."""
        return float(self.harmonic_exponent) if self.harmonic_exponent is not None else math.sqrt(self.n_embd)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)


# ----------------------------------------------------------------------------------------------------- norms
class RMSNorm(nn.Module):
    r"""RMSNorm (Zhang & Sennrich, "Root Mean Square Layer Normalization", NeurIPS 2019, eq. 4) over the last
    dimension:

    .. math::

        y = \frac{x}{\sqrt{\tfrac{1}{C}\sum_{i=1}^{C} x_i^2 + \epsilon}} \odot g \;(+\, b),

    with gain :math:`g` (init 1) and, when ``bias``, a shift :math:`b` (init 0). The paper writes
    :math:`\epsilon` outside the root's argument as an implementation detail; here it sits inside, as in
    ``torch.nn.RMSNorm``.
    """

    def __init__(self, dim: int, eps: float = 1e-5, bias: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, bias={self.bias is not None}"


class _PowerNormFunction(torch.autograd.Function):
    """Algorithm 1 of Shen et al. (2020) for a ``(N, C)`` input: the forward with the running quadratic mean and
    the approximate backward with the running statistic :math:`\\nu`. See :class:`PowerNorm`."""

    @staticmethod
    def forward(ctx, x, weight, bias, psi, running_nu, alpha):
        xhat = x / psi  # psi = psi_{B-1}, the statistic before this batch
        y = xhat * weight
        if bias is not None:
            y = y + bias
        ctx.save_for_backward(xhat, psi, weight)
        ctx.running_nu = running_nu
        ctx.alpha = alpha
        ctx.has_bias = bias is not None
        return y

    @staticmethod
    def backward(ctx, grad_y):
        xhat, psi, weight = ctx.saved_tensors
        nu_buf = ctx.running_nu
        alpha = ctx.alpha
        g = grad_y * weight  # dL/dXhat
        nu = nu_buf.to(g.dtype)  # nu_{B-1}
        g_tilde = g - nu * xhat  # the intermediate gradient dL/dXhat'
        gamma_b = xhat.square().mean(dim=0)  # Gamma_B
        lambda_b = (xhat * g).mean(dim=0)  # Lambda_B
        new_nu = nu * (1.0 - (1.0 - alpha) * gamma_b) + (1.0 - alpha) * lambda_b
        nu_buf.copy_(new_nu.detach().to(nu_buf.dtype))
        grad_x = g_tilde / psi
        grad_w = (grad_y * xhat).sum(dim=0) if ctx.needs_input_grad[1] else None
        grad_b = grad_y.sum(dim=0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None


class PowerNorm(nn.Module):
    r"""Power Normalization (Shen, Yao, Gholami, Mahoney & Keutzer, "PowerNorm: Rethinking Batch Normalization in
    Transformers", ICML 2020, arXiv:2003.07845), Algorithm 1, over the channel (last) dimension.

    For a batch :math:`X \in \mathbb{R}^{B\times C}` (here :math:`B` = every token of the batch: all leading
    dimensions are flattened) with per-channel statistics (vectors of length :math:`C`, products elementwise):

    Forward (training):

    .. math::

        \psi_B^2 = \tfrac{1}{B}\sum_{i=1}^{B} x_i^2,\qquad
        \hat X = X / \psi_{B-1},\qquad Y = \gamma \odot \hat X + \beta,\qquad
        \psi^2 \leftarrow \alpha\,\psi^2 + (1-\alpha)\,\psi_B^2 .

    The batch is normalized by the running quadratic mean **before** it is updated with this batch
    (:math:`\psi_{B-1}`), so the output never depends on the other samples of the same batch.

    Backward (the paper's approximate backpropagation, with :math:`g = \partial L/\partial \hat X = \gamma\odot
    \partial L/\partial Y`):

    .. math::

        \tilde g = g - \nu_{B-1}\odot \hat X,\qquad
        \nu_B = \nu_{B-1}\bigl(1 - (1-\alpha)\Gamma_B\bigr) + (1-\alpha)\Lambda_B,\qquad
        \frac{\partial L}{\partial X} = \tilde g / \psi_{B-1},

    :math:`\Gamma_B = \tfrac1B\sum_i \hat x_i \odot \hat x_i`,
    :math:`\Lambda_B = \tfrac1B\sum_i \hat x_i \odot g_i`. The parameter gradients are the exact ones,
    :math:`\partial L/\partial\gamma = \sum_i \hat x_i \odot \partial L/\partial y_i`,
    :math:`\partial L/\partial\beta = \sum_i \partial L/\partial y_i`.

    Inference (eval mode): :math:`Y = \gamma\odot X/\psi + \beta`, no statistic moves.

    Here :math:`\psi = \sqrt{\psi^2 + \epsilon}` everywhere (the :math:`\epsilon` of BatchNorm). The running
    statistics are buffers, so they are in ``state_dict``: ``running_phi`` (:math:`\psi^2`, init 1) and
    ``running_nu`` (:math:`\nu`, init 0). :math:`\nu` moves only when a backward pass runs through the layer.

    Provenance: the steps above are the paper's Algorithm 1 as we know it, not re-checked line by line against
    the paper's text for this implementation; they agree with the authors' code (``sIncerass/powernorm``,
    ``fairseq/modules/norms/mask_powernorm.py``, read) up to the points below. Choices where the paper leaves
    room, and differences from that code:

    * One :math:`\alpha` for both running statistics (the code has separate forward/backward factors, both
      0.9 by default). The code keeps :math:`\nu/(1-\alpha)` in its buffer; the update is the same.
    * The code divides the input gradient by the *batch* quadratic mean :math:`\sqrt{\psi_B^2+\epsilon}`; we divide
      by :math:`\psi_{B-1}`, the statistic the forward used, as Algorithm 1 is written.
    * The code also uses batch statistics during a warm-up (10,000 iterations by default) and puts a per-token
      "group scaling" (division by each token's own root mean square over channel groups) in front of the
      layer; neither is part of Algorithm 1 and neither is done here.
    * Padding masks do not exist for this decoder (every position is a token), so every token of the batch
      enters :math:`\psi_B^2`, :math:`\Gamma_B` and :math:`\Lambda_B`.
    * Under :func:`torch.no_grad` in training mode (the frozen blocks of a truncated Drop-Muon step) the forward
      still updates :math:`\psi^2`, like ``nn.BatchNorm``'s running statistics; :math:`\nu` does not move
      because no backward pass reaches the layer. Under DDP each rank keeps its own statistics.
    """

    def __init__(self, dim: int, alpha: float = 0.9, eps: float = 1e-5, bias: bool = True) -> None:
        super().__init__()
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"PowerNorm alpha must lie in [0, 1), got {alpha!r}")
        self.dim = dim
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None
        self.register_buffer("running_phi", torch.ones(dim))
        self.register_buffer("running_nu", torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.dim:
            raise ValueError(f"PowerNorm over {self.dim} channels got an input of shape {tuple(x.shape)}")
        if not self.training:
            y = x / (self.running_phi.to(x.dtype) + self.eps).sqrt() * self.weight
            return y + self.bias if self.bias is not None else y
        shape = x.shape
        flat = x.reshape(-1, self.dim)
        psi = (self.running_phi.to(x.dtype) + self.eps).sqrt()
        y = _PowerNormFunction.apply(flat, self.weight, self.bias, psi, self.running_nu, self.alpha)
        with torch.no_grad():  # psi^2 <- alpha psi^2 + (1 - alpha) psi_B^2, after normalizing with psi_{B-1}
            batch_phi = flat.detach().square().mean(dim=0)
            self.running_phi.mul_(self.alpha).add_(batch_phi.to(self.running_phi.dtype), alpha=1.0 - self.alpha)
        return y.reshape(shape)

    def extra_repr(self) -> str:
        return f"{self.dim}, alpha={self.alpha}, eps={self.eps}, bias={self.bias is not None}"


def make_norm(kind: str, dim: int, *, bias: bool = True, eps: float = 1e-5, alpha: float = 0.9) -> nn.Module:
    """A norm over the last dimension of size ``dim``: ``"layernorm"`` (``nn.LayerNorm``), ``"rmsnorm"``
    (:class:`RMSNorm`) or ``"powernorm"`` (:class:`PowerNorm` with running factor ``alpha``)."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=eps, bias=bias)
    if kind == "powernorm":
        return PowerNorm(dim, alpha=alpha, eps=eps, bias=bias)
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(map(repr, NORMS))}")


# ---------------------------------------------------------------------------------------------------- blocks
class CausalSelfAttention(nn.Module):
    r"""Multi-head causal self-attention, optionally with qk-norm.

    With :math:`q, k, v \in \mathbb{R}^{T\times d}` of one head (:math:`d = C/h`):

    .. math::

        \mathrm{head} = \mathrm{softmax}\!\Bigl(\frac{N_q(q)\,N_k(k)^\top}{\sqrt{d}} + M\Bigr) v,

    :math:`M` the causal mask (:math:`-\infty` above the diagonal), :math:`N_q = N_k = \mathrm{id}` by default.
    With ``qk_norm`` (Dehghani et al. 2023, "Scaling Vision Transformers to 22 Billion Parameters"; Wortsman et
    al. 2023, arXiv:2309.14322, §3.1), :math:`N_q` and :math:`N_k` are two norms over the head dimension
    :math:`d`, each shared by all heads: LayerNorm, or RMSNorm when ``config.norm == "rmsnorm"`` (LayerNorm
    for ``"powernorm"``). A normalized query or key no longer grows with the projection weights, which is what
    keeps the attention logits bounded at high learning rates.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        c = config.n_embd
        self.n_head = config.n_head
        self.head_dim = config.head_dim
        self.dropout = config.dropout
        self.c_attn = nn.Linear(c, 3 * c, bias=config.bias)
        self.c_proj = nn.Linear(c, c, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.qk_norm:
            kind = "rmsnorm" if config.norm == "rmsnorm" else "layernorm"
            self.q_norm = make_norm(kind, self.head_dim, bias=config.bias, eps=config.norm_eps)
            self.k_norm = make_norm(kind, self.head_dim, bias=config.bias, eps=config.norm_eps)
        else:
            self.q_norm = None
            self.k_norm = None

    def forward(self, x: Tensor) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q = q.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        v = v.view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q = self.q_norm(q)
            k = self.k_norm(k)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """``c_proj(GELU(c_fc(x)))`` with hidden width ``4 * n_embd`` (exact, erf-based GELU), then dropout."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        norm = dict(bias=config.bias, eps=config.norm_eps, alpha=config.powernorm_alpha)
        self.ln_1 = make_norm(config.norm, config.n_embd, **norm)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config.norm, config.n_embd, **norm)
        self.mlp = MLP(config)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


# ----------------------------------------------------------------------------------------------------- heads
def harmonic_log_probs(x: Tensor, weight: Tensor, exponent: float, eps: float = HARMONIC_EPS) -> Tensor:
    r"""Log-probabilities of the harmonic head (Baek, Liu, Tegmark et al. 2025, "Harmonic Loss Trains
    Interpretable AI Models", arXiv:2502.01628).

    For a hidden state :math:`x` and unembedding rows :math:`w_i` (the rows of ``weight``, shape ``(V, C)``):

    .. math::

        d_i = \lVert w_i - x\rVert_2,\qquad p_i = \frac{d_i^{-n}}{\sum_j d_j^{-n}},

    computed in log space from :math:`d_i^2 = \lVert w_i\rVert^2 - 2 w_i^\top x + \lVert x\rVert^2`, clamped to at
    least ``eps``: :math:`\log p_i = s_i - \operatorname{logsumexp}_j s_j` with
    :math:`s_i = -\tfrac{n}{2}\log d_i^2`. The harmonic loss of a target :math:`y` is :math:`-\log p_y`.

    Parameters
    ----------
    x : Tensor, shape ``(..., C)``
    weight : Tensor, shape ``(V, C)``
    exponent : float
        :math:`n > 0` (the paper suggests :math:`n \approx \sqrt{C}` for GPT-2-like models).
    """
    if not math.isfinite(exponent) or exponent <= 0:
        raise ValueError(f"the harmonic exponent must be finite and > 0, got {exponent!r}")
    d2 = (weight.square().sum(-1) - 2.0 * (x @ weight.t()) + x.square().sum(-1, keepdim=True)).clamp_min(eps)
    scores = (-0.5 * exponent) * d2.log()
    return scores - scores.logsumexp(dim=-1, keepdim=True)


# ------------------------------------------------------------------------------------------------------ model
class GPT(nn.Module):
    """The decoder-only transformer (see the module docstring); ``GPT(GPTConfig(...))``.

    Attributes
    ----------
    config : GPTConfig
    blocks : nn.ModuleList
        The ``n_layer`` blocks, input side first (Drop-Muon's layers 0..b-1).
    loss_parts : dict
        After a forward pass with targets: ``{"ce": float, "z": float}``, the mean cross-entropy and the z-loss
        term ``z_loss * mean((log Z)^2)`` (0.0 when ``z_loss == 0``), as detached Python floats; their sum is
        the returned loss.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        c = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, c)
        self.wpe = nn.Embedding(config.block_size, c)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = make_norm(config.norm, c, bias=config.bias, eps=config.norm_eps, alpha=config.powernorm_alpha)
        self.lm_head = nn.Linear(c, config.vocab_size, bias=False)
        self.loss_parts: dict[str, float] = {}
        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=residual_std)
        if config.tie_weights:
            self.lm_head.weight = self.wte.weight

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------------------------------- forward
    def _check_idx(self, idx: Tensor, name: str = "idx") -> None:
        if not isinstance(idx, Tensor):
            raise TypeError(f"{name} must be a tensor of token ids, got {type(idx).__name__}")
        if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer token ids, got dtype {idx.dtype}")
        if idx.dim() != 2:
            raise ValueError(f"{name} must have shape (batch, time), got {tuple(idx.shape)}")

    def _embed(self, idx: Tensor) -> Tensor:
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        return self.drop(self.wte(idx) + self.wpe(pos))

    def hidden_states(self, idx: Tensor, *, cutoff: int = 0) -> Tensor:
        """The final hidden states ``ln_f(blocks(embed(idx)))``, shape ``(B, T, C)``; ``cutoff`` as in
        :meth:`forward`. Inputs are checked as in :meth:`forward`."""
        self._check_idx(idx)
        b, t = idx.shape
        if t > self.config.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.config.block_size}")
        if t == 0 or b == 0:
            raise ValueError(f"idx must hold at least one token per row and one row, got shape {(b, t)}")
        lo, hi = torch.aminmax(idx)
        lo, hi = int(lo), int(hi)
        if lo < 0 or hi >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size - 1}] (vocab_size "
                             f"{self.config.vocab_size}); got ids in [{lo}, {hi}]")
        n = self.config.n_layer
        if isinstance(cutoff, bool) or not isinstance(cutoff, int) or not 0 <= cutoff < n:
            raise ValueError(f"cutoff must be an integer in [0, {n - 1}] (n_layer - 1), got {cutoff!r}")
        if cutoff > 0:
            with torch.no_grad():
                x = self._embed(idx)
        else:
            x = self._embed(idx)
        x = progressive_forward(self.blocks, x, cutoff)
        return self.ln_f(x)

    def _head(self, h: Tensor) -> Tensor:
        if self.config.head == "harmonic":
            return harmonic_log_probs(h, self.lm_head.weight, self.config.exponent)
        return self.lm_head(h)

    def forward(self, idx: Tensor, targets: Tensor | None = None, *, cutoff: int = 0) -> tuple[Tensor, Tensor | None]:
        r"""Logits and loss.

        Parameters
        ----------
        idx : LongTensor, shape ``(B, T)``
            Token ids in ``[0, vocab_size)``, :math:`T \le` ``block_size``.
        targets : LongTensor, shape ``(B, T)``, optional
            Next-token ids in ``[0, vocab_size)``, or ``-1`` for a position left out of the loss.
        cutoff : int
            Drop-Muon cutoff :math:`s \in \{0, \dots, L-1\}`. The embeddings and ``blocks[:s]`` run under
            :func:`torch.no_grad` (:func:`optlib.optim.progressive_forward`), so the backward pass stops at
            block :math:`s`: the parameters of ``wpe`` and of ``blocks[:s]`` keep ``grad is None`` and no
            backward work is spent on them. ``wte.weight`` still gets the gradient of its use as the head when
            the weights are tied. ``s = 0`` is the ordinary full pass.

        Returns
        -------
        logits : Tensor, shape ``(B, T, V)``
            The head's logits; for ``head="harmonic"`` the log-probabilities (:func:`harmonic_log_probs`).
        loss : Tensor or None
            With targets, over the :math:`M` positions whose target is not ``-1``:

            .. math::

                \mathcal{L} = \frac1M\sum_{m} -\log \mathrm{softmax}(z_m)_{y_m}
                \;+\; c \cdot \frac1M\sum_{m} \bigl(\operatorname{logsumexp}_v z_{m,v}\bigr)^2,

            :math:`c` = ``z_loss`` (PaLM, arXiv:2204.02311, §5: :math:`\log Z` the log normalizer of the
            softmax). For the harmonic head the first term is :math:`-\log p_y` and there is no second term.
            :attr:`loss_parts` holds both terms.
        """
        h = self.hidden_states(idx, cutoff=cutoff)
        logits = self._head(h)
        if targets is None:
            return logits, None
        self._check_idx(targets, "targets")
        if targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
        valid = targets != IGNORE_INDEX
        tv = targets[valid]
        if tv.numel() == 0:
            raise ValueError("every target is -1 (ignored): nothing to compute a loss on")
        lo, hi = torch.aminmax(tv)
        if int(lo) < 0 or int(hi) >= self.config.vocab_size:
            raise ValueError(f"target ids must lie in [0, {self.config.vocab_size - 1}] or be -1; "
                             f"got ids in [{int(lo)}, {int(hi)}]")
        flat = logits.reshape(-1, logits.shape[-1])
        flat_t = targets.reshape(-1)
        if self.config.head == "harmonic":
            ce = F.nll_loss(flat, flat_t, ignore_index=IGNORE_INDEX)
        else:
            ce = F.cross_entropy(flat, flat_t, ignore_index=IGNORE_INDEX)
        loss = ce
        z_term = 0.0
        if self.config.z_loss > 0:
            lse = flat[valid.reshape(-1)].logsumexp(dim=-1)
            z = self.config.z_loss * lse.square().mean()
            loss = ce + z
            z_term = float(z.detach())
        self.loss_parts = {"ce": float(ce.detach()), "z": z_term}
        return logits, loss

    # --------------------------------------------------------------------------------------- accounting
    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters (a tied weight counted once). ``non_embedding`` leaves out the position
        embedding, and the token embedding when it is not the head's weight (untied): what remains takes part
        in matrix products, which is what :meth:`flops_per_token`'s :math:`6N` counts (nanoGPT's convention)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wpe.weight.numel()
            if self.lm_head.weight is not self.wte.weight:
                n -= self.wte.weight.numel()
        return n

    def flop_breakdown(self, batch_size: int) -> dict:
        r"""Matmul FLOPs (2 per multiply-add) of one forward and backward pass on ``batch_size`` rows of
        ``block_size`` tokens, :math:`N = B T` tokens, per block (every block is the same) and for the head.

        Per block, with :math:`C` = ``n_embd``:

        * ``linear_forward`` :math:`= 2N(3C^2 + C^2 + 4C^2 + 4C^2) = 24NC^2` (qkv, attention output, MLP in, MLP
          out); ``linear_weight_grad`` and ``linear_input_grad`` the same each;
        * ``attention_forward`` :math:`= 2\cdot 2\,B\,T^2 C` (:math:`QK^\top` and :math:`AV` over all heads, the
          full :math:`T\times T` product as PaLM's appendix B counts it; a causal kernel may skip the upper
          triangle); ``attention_backward`` twice that (two products per forward product).

        Head: ``head_forward`` :math:`= 2NCV`, ``head_weight_grad`` and ``head_input_grad`` the same (the
        harmonic head has the same product :math:`w_i^\top x`; its norms are not counted). Norms, GELU,
        softmax, embeddings and the loss are not counted.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        cfg = self.config
        t, c, v = cfg.block_size, cfg.n_embd, cfg.vocab_size
        n = batch_size * t
        lin = 24.0 * n * c * c
        att = 4.0 * batch_size * t * t * c
        return {
            "tokens": n,
            "linear_forward": lin, "linear_weight_grad": lin, "linear_input_grad": lin,
            "attention_forward": att, "attention_backward": 2.0 * att,
            "head_forward": 2.0 * n * c * v, "head_weight_grad": 2.0 * n * c * v, "head_input_grad": 2.0 * n * c * v,
        }

    def block_costs(self, batch_size: int) -> BlockCosts:
        r"""Analytic per-block FLOPs of one batch of ``batch_size`` x ``block_size`` tokens, as an
        :class:`optlib.optim.BlockCosts` (terms in :meth:`flop_breakdown`).

        ``forward[j]`` = ``linear_forward + attention_forward``. The backward split follows what
        :meth:`BlockCosts.backward` needs: ``input_grad[j]`` is the work spent *only* to pass the gradient on to
        the block's input, ``weight_grad[j]`` everything block ``j``'s own parameter gradients need. In this
        pre-norm block the first operation on the input is a norm with a trainable gain, whose output therefore
        needs its gradient even in the lowest trained block; so every backward matmul of the block
        (``linear_weight_grad + linear_input_grad + attention_backward``) is in ``weight_grad[j]`` and
        ``input_grad[j] = 0`` (the residual and norm input gradients are elementwise, not counted). With this
        split ``costs.step(s)`` is the matmul FLOPs of the blocks in a step with cutoff ``s``, which a
        ``torch.utils.flop_counter`` count confirms (tests). The head's FLOPs are outside the blocks
        (:meth:`flop_breakdown`).

        Where the hook-based estimate :func:`optlib.optim.block_costs` (``nn.Linear`` only, weight and input
        gradients one forward each) overlaps: its ``forward[j]`` equals ``linear_forward`` and its
        ``weight_grad[j] + input_grad[j]`` equals ``linear_weight_grad + linear_input_grad``.
        """
        parts = self.flop_breakdown(batch_size)
        L = self.config.n_layer
        fwd = parts["linear_forward"] + parts["attention_forward"]
        bwd = parts["linear_weight_grad"] + parts["linear_input_grad"] + parts["attention_backward"]
        return BlockCosts(forward=(fwd,) * L, weight_grad=(bwd,) * L, input_grad=(0.0,) * L)

    def flops_per_token(self) -> float:
        r"""Forward plus backward FLOPs per token (PaLM, Chowdhery et al. 2022, appendix B):
        :math:`6N + 12\,L\,C\,T` with :math:`N` = :meth:`num_params` (non-embedding), :math:`L` = ``n_layer``,
        :math:`C = h\cdot d` = ``n_embd`` and :math:`T` = ``block_size``; the second term is the attention
        products over a full context."""
        cfg = self.config
        return 6.0 * self.num_params(non_embedding=True) + 12.0 * cfg.n_layer * cfg.n_embd * cfg.block_size

    # ------------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (shape ``(B, T0)``) and return ``(B, T0 +
        max_new_tokens)``.

        Each step feeds the last ``block_size`` tokens, divides the last position's logits (log-probabilities
        for the harmonic head) by ``temperature``, keeps the ``top_k`` largest if given, and draws from the
        softmax with ``torch.multinomial(..., generator=generator)``: a seeded generator (on the model's device)
        gives the same tokens every time. The model runs in eval mode during sampling (no dropout, PowerNorm's
        running statistics fixed) and is put back in its previous mode afterwards.
        """
        self._check_idx(idx)
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
        if not _is_real(temperature) or not math.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                cond = idx[:, -self.config.block_size:]
                h = self.hidden_states(cond)[:, -1, :]
                logits = self._head(h) / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = F.softmax(logits, dim=-1)
                nxt = torch.multinomial(probs, num_samples=1, generator=generator)
                idx = torch.cat((idx, nxt.to(idx.dtype)), dim=1)
        finally:
            self.train(was_training)
        return idx
