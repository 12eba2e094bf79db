r"""Stochastic bilevel learning tasks on offline data (scikit-learn sets, a text corpus given by the caller): data
hyper-cleaning (linear and recurrent lower levels), per-feature L2 hyperparameter optimization and
hyper-representation learning, as :class:`optlib.bilevel.BilevelProblem`\ s with minibatch samplers.

The digits hyper-cleaning and the L2 task share the preprocessing: the rows of the design matrix are standardized per feature (statistics of the
training split), then scaled to unit Euclidean norm and given a constant bias feature, so every row ``a_i`` has
``||a_i||^2 = 2``. Then the per-example cross-entropy of a linear softmax model has Hessian in ``W`` at most
``||a_i||^2/2 = 1`` (the softmax covariance has largest eigenvalue at most 1/2), and the logistic loss at most
``||a_i||^2/4 = 1/2``: the lower-level smoothness constants below follow.

``hyper_cleaning(...)``
    digits (1797 images, 64 features, 10 classes), a seeded split into ``n_train`` / ``n_val`` / rest (test);
    a fraction ``flip`` of the training labels replaced by a uniformly drawn *different* class. Upper variable
    ``x in R^{n_train}``: per-example weight logits, weights ``sigmoid(x_i)``; lower variable ``y``: the
    ``65 x 10`` weights of a linear softmax classifier (flat). ``g(x, y; B) = mean_{i in B} sigmoid(x_i)
    CE(y; a_i, noisy b_i) + (reg/2)||y||^2`` (strongly convex: ``mu = reg``, ``l_g1 <= 1 + reg``);
    ``f(x, y; B') = mean_{j in B'} CE(y; a_j, b_j)`` on the clean validation split (f does not depend on x
    directly). Test metric: accuracy of ``y`` on the clean test split.
``l2_hyperparameters(...)``
    breast_cancer (569 x 30, binary), a seeded split; upper ``x in R^{30}``: log per-feature L2 coefficients;
    lower ``y in R^{31}`` (weights and an unregularized bias): ``g = mean logistic loss on the training batch +
    (1/2) sum_j exp(x_j) w_j^2 + (reg/2) y^2`` with a small floor ``reg`` that keeps ``g`` strongly convex
    uniformly (``mu >= reg``, ``l_g1 <= 1/2 + max_j exp(x_j) + reg`` — x-dependent, so not recorded);
    ``f`` = mean logistic loss on the validation split. Test metric: accuracy and loss on the test split.

``text_hyper_cleaning(text, ...)``
    the paper's regime (Hao, Gong & Liu 2024: hyper-cleaning of a recurrent text classifier; spec 30 §4, §7) on the
    tiny-shakespeare corpus, which the caller passes in as a string (``scale.data`` ships it). Each example is one
    line of verse or prose, the class is the play its speaker belongs to (:data:`PLAYS`: Coriolanus against Romeo
    and Juliet, by the speaker headings ``NAME:`` of the text); the line is lower-cased, split into words
    (``[a-z']+``), cut or padded to ``length`` tokens over a vocabulary of the ``vocab`` most frequent training
    words (index 0 = padding, 1 = unknown word). A fraction ``flip`` of the training labels is flipped. Upper
    variable ``x in R^{n_train}``: per-example weight logits (a :class:`ExampleWeights` module); lower variable
    ``y``: all parameters of a :class:`RecurrentClassifier` (word embedding, one-layer Elman ``torch.nn.RNN``
    with tanh, mean over the non-padding positions, linear head), built by
    :meth:`BilevelProblem.from_modules`. ``g(x, y; B) = mean_{i in B} sigmoid(x_i) CE(y; s_i, noisy b_i) +
    (reg/2)||y||^2``, ``f(x, y; B') = mean_{j in B'} CE(y; s_j, b_j)`` on the clean validation lines. What holds:
    ``grad^2_yy g = reg I + (weighted loss Hessian)``; the second term is *not* positive semidefinite for a
    recurrent network, so ``g(x, .)`` is not convex and has no uniform ``mu`` or ``l_g1`` (``constants`` records
    ``mu = None``); the L2 term only shifts every Hessian eigenvalue by ``reg`` (the upper level is the
    unbounded-smooth one, as in the paper, spec 30 B4/B8). The methods here use Neumann series, z-iterates and SGD,
    which run on an indefinite Hessian; CG refuses it with :class:`NegativeCurvatureError`.
``hyper_representation(...)``
    digits, a shared encoder ``phi_x(a) = tanh(W a + c)`` (``x = (W, c)``, ``width`` features) and ten
    one-vs-rest logistic heads ``y = (w_k, b_k)_{k=0..9}`` (task k: "is the digit k"). ``g(x, y; B) =
    sum_k mean_{i in B} log(1 + exp(-s_ik (w_k^T phi_x(a_i) + b_k))) + (reg/2)||y||^2`` on the training split
    (``s_ik = +1`` if ``b_i = k`` else ``-1``), ``f`` the same loss (without the L2 term) averaged over the ten
    tasks on the validation split, so ``grad_x f != 0``. ``g(x, .)`` is a sum of per-head problems
    (block-diagonal Hessian): each block is ``mean_i sigma'(.) phi~_i phi~_i^T + reg I`` with ``phi~ = (phi, 1)``,
    ``||phi~||^2 <= width + 1`` (tanh features in [-1, 1]) and ``sigma' <= 1/4``, so ``mu = reg`` and
    ``l_g1 <= (width + 1)/4 + reg``. Test metric: ten-class accuracy of the argmax over the heads' scores.

Batches are index tensors drawn with replacement by the problem's samplers from the ``torch.Generator`` the bilevel
driver owns, so a run is reproducible from its seed. Everything is float64.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from optlib.bilevel.problem import BilevelConstants, BilevelProblem

DTYPE = torch.float64


@dataclass
class BilevelTask:
    """A problem with its evaluation: ``evaluate(x, y) -> {"test_acc", "test_loss", "val_loss"}``; ``data``: the
    tensors the objectives read, where a task exposes them (the text task: tokens and labels per split)."""

    problem: BilevelProblem
    evaluate: Any
    info: dict[str, Any]
    data: dict[str, Tensor] = field(default_factory=dict)


def _prepare(features: np.ndarray, train_idx: np.ndarray) -> Tensor:
    mean = features[train_idx].mean(0)
    std = features[train_idx].std(0)
    std[std == 0] = 1.0
    z = (features - mean) / std
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return torch.from_numpy(np.hstack([z, np.ones((len(z), 1))])).to(DTYPE)


def _split(n: int, sizes: tuple[int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    a, b = sizes
    if a + b >= n:
        raise ValueError(f"n_train + n_val = {a + b} leaves no test data out of {n}")
    return perm[:a], perm[a:a + b], perm[a + b:]


def _sampler(n: int, batch: int):
    def draw(gen: torch.Generator) -> Tensor:
        return torch.randint(n, (batch,), generator=gen)

    return draw


def hyper_cleaning(*, n_train: int = 600, n_val: int = 300, flip: float = 0.35, reg: float = 1e-2,
                   batch: int = 64, seed: int = 0) -> BilevelTask:
    """Data hyper-cleaning on digits (module docstring). ``seed`` fixes the split and the flipped labels."""
    from sklearn.datasets import load_digits

    if not 0.0 <= flip < 1.0:
        raise ValueError(f"flip must lie in [0, 1), got {flip}")
    data = load_digits()
    tr, va, te = _split(len(data.target), (n_train, n_val), seed)
    A = _prepare(data.data.astype(np.float64), tr)
    labels = torch.from_numpy(data.target.astype(np.int64))
    k = 10
    rng = np.random.default_rng(seed + 1)
    noisy = data.target[tr].copy()
    flipped = rng.random(n_train) < flip
    noisy[flipped] = (noisy[flipped] + rng.integers(1, k, flipped.sum())) % k  # a different class
    Atr, btr = A[tr], torch.from_numpy(noisy)
    Ava, bva, Ate, bte = A[va], labels[va], A[te], labels[te]
    d = A.shape[1]

    def g(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        W = y.view(d, k)
        ce = F.cross_entropy(Atr[idx] @ W, btr[idx], reduction="none")
        return (torch.sigmoid(x[idx]) * ce).mean() + 0.5 * reg * (y @ y)

    def f(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        return F.cross_entropy(Ava[idx] @ y.view(d, k), bva[idx])

    consts = BilevelConstants(mu=reg, l_g1=1.0 + reg, notes={
        "l_g1": "rows with ||a||^2 = 2, softmax covariance <= 1/2 (weights sigmoid <= 1)"})
    prob = BilevelProblem(f, g, torch.zeros(n_train, dtype=DTYPE), torch.zeros(d * k, dtype=DTYPE),
                          upper_sampler=_sampler(n_val, batch), lower_sampler=_sampler(n_train, batch),
                          constants=consts, name=f"hyper-cleaning-digits-flip{flip:g}", dtype=DTYPE)
    prob.finite_sum = (n_val, n_train)

    def evaluate(x: Tensor, y: Tensor) -> dict[str, float]:
        with torch.no_grad():
            W = y.view(d, k)
            logits = Ate @ W
            return {"test_acc": float((logits.argmax(1) == bte).double().mean()),
                    "test_loss": float(F.cross_entropy(logits, bte)),
                    "val_loss": float(F.cross_entropy(Ava @ W, bva))}

    info = {"task": "hyper-cleaning", "dataset": "sklearn digits", "n_train": n_train, "n_val": n_val,
            "n_test": len(te), "flip": flip, "flipped": int(flipped.sum()), "reg": reg, "batch": batch, "seed": seed,
            "nx": n_train, "ny": d * k}
    return BilevelTask(prob, evaluate, info)


def l2_hyperparameters(*, n_train: int = 200, n_val: int = 150, reg: float = 1e-3, batch: int = 32,
                       seed: int = 0) -> BilevelTask:
    """Per-feature L2 coefficients of logistic regression on breast_cancer (module docstring)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    tr, va, te = _split(len(data.target), (n_train, n_val), seed)
    A = _prepare(data.data.astype(np.float64), tr)
    s = torch.from_numpy(np.where(data.target == 1, 1.0, -1.0)).to(DTYPE)
    Atr, str_, Ava, sva, Ate, ste = A[tr], s[tr], A[va], s[va], A[te], s[te]
    p = A.shape[1] - 1

    def g(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        loss = F.softplus(-str_[idx] * (Atr[idx] @ y)).mean()
        return loss + 0.5 * (torch.exp(x) * y[:p] ** 2).sum() + 0.5 * reg * (y @ y)

    def f(x: Tensor, y: Tensor, idx: Tensor) -> Tensor:
        return F.softplus(-sva[idx] * (Ava[idx] @ y)).mean()

    x0 = torch.full((p,), float(np.log(1e-2)), dtype=DTYPE)
    consts = BilevelConstants(mu=reg, notes={"l_g1": "1/2 + max_j exp(x_j) + reg: depends on x"})
    prob = BilevelProblem(f, g, x0, torch.zeros(p + 1, dtype=DTYPE), upper_sampler=_sampler(n_val, batch),
                          lower_sampler=_sampler(n_train, batch), constants=consts,
                          name="l2-hyperparameters-breast_cancer", dtype=DTYPE)
    prob.finite_sum = (n_val, n_train)

    def evaluate(x: Tensor, y: Tensor) -> dict[str, float]:
        with torch.no_grad():
            m = ste * (Ate @ y)
            return {"test_acc": float((m > 0).double().mean()), "test_loss": float(F.softplus(-m).mean()),
                    "val_loss": float(F.softplus(-sva * (Ava @ y)).mean())}

    info = {"task": "l2-hyperparameters", "dataset": "sklearn breast_cancer", "n_train": n_train, "n_val": n_val,
            "n_test": len(te), "reg": reg, "batch": batch, "seed": seed, "nx": p, "ny": p + 1}
    return BilevelTask(prob, evaluate, info)


# ------------------------------------------------------------------------------------------------ text task
#: The two classes of the text task: the play, given by the speakers whose headings open a speech.
PLAYS: dict[str, tuple[str, ...]] = {
    "Coriolanus": ("CORIOLANUS", "MENENIUS", "SICINIUS", "BRUTUS", "VOLUMNIA", "COMINIUS", "AUFIDIUS"),
    "Romeo and Juliet": ("ROMEO", "JULIET", "NURSE", "FRIAR LAURENCE", "CAPULET", "MERCUTIO", "BENVOLIO",
                         "LADY CAPULET"),
}
_WORD = re.compile(r"[a-z']+")


def speaker_lines(text: str) -> dict[str, list[str]]:
    """The lines of every speaker: a speech is a blank-line separated block whose first line is ``NAME:``."""
    out: dict[str, list[str]] = {}
    for block in text.split("\n\n"):
        lines = [ln for ln in block.strip("\n").split("\n") if ln.strip()]
        if len(lines) >= 2 and lines[0].endswith(":"):
            out.setdefault(lines[0][:-1].strip(), []).extend(lines[1:])
    return out


class ExampleWeights(nn.Module):
    """Per-example weight logits ``x`` (the weights are ``sigmoid(x)``), one per training example, from 0."""

    def __init__(self, n: int, dtype: torch.dtype = DTYPE) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n, dtype=dtype))


class RecurrentClassifier(nn.Module):
    r"""Word embedding, one-layer Elman RNN ``h_t = tanh(W_ih e_t + b_ih + W_hh h_{t-1} + b_hh)`` (torch.nn.RNN),
    the mean of ``h_t`` over the non-padding positions (token 0 is padding), a linear head to the class logits.
    Embedding entries start from N(0, 1/hidden), the others from torch's defaults."""

    def __init__(self, vocab: int, embed: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed, padding_idx=0)
        self.rnn = nn.RNN(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)
        with torch.no_grad():  # embedding entries of the scale of the recurrent weights' (1/sqrt(hidden))
            self.embed.weight.normal_(0.0, hidden ** -0.5)
            self.embed.weight[0].zero_()

    def forward(self, tokens: Tensor) -> Tensor:
        states, _ = self.rnn(self.embed(tokens))
        mask = (tokens != 0).to(states.dtype).unsqueeze(-1)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.head(pooled)


def _encode_lines(lines: list[str], index: dict[str, int], length: int) -> Tensor:
    rows = []
    for line in lines:
        ids = [index.get(w, 1) for w in _WORD.findall(line.lower())][:length]
        rows.append(ids + [0] * (length - len(ids)))
    return torch.tensor(rows, dtype=torch.int64)


def text_hyper_cleaning(text: str, *, n_train: int = 2000, n_val: int = 500, n_test: int = 1000, flip: float = 0.35,
                        reg: float = 1e-3, batch: int = 64, length: int = 10, vocab: int = 400, embed: int = 16,
                        hidden: int = 32, seed: int = 0) -> BilevelTask:
    """Hyper-cleaning of a recurrent play classifier on tiny-shakespeare lines (module docstring).

    ``seed`` fixes the split, the flipped labels and the classifier's initial parameters (``y0``).
    """
    if not isinstance(text, str) or not text:
        raise ValueError("text_hyper_cleaning needs the corpus text as a non-empty string")
    if not 0.0 <= flip < 1.0:
        raise ValueError(f"flip must lie in [0, 1), got {flip}")
    for name, val in (("length", length), ("vocab", vocab), ("embed", embed), ("hidden", hidden),
                      ("n_test", n_test)):
        if not isinstance(val, int) or val < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
    by_speaker = speaker_lines(text)
    lines: list[str] = []
    labels_list: list[int] = []
    for label, speakers in enumerate(PLAYS.values()):
        missing = [sp for sp in speakers if sp not in by_speaker]
        if missing:
            raise ValueError(f"the text has no speech by {', '.join(missing)}: not the tiny-shakespeare corpus?")
        for sp in speakers:
            lines += by_speaker[sp]
            labels_list += [label] * len(by_speaker[sp])
    tr, va, te = _split(len(lines), (n_train, n_val), seed)
    te = te[:n_test]
    counts = Counter(w for i in tr for w in _WORD.findall(lines[i].lower()))
    index = {w: j + 2 for j, (w, _) in enumerate(counts.most_common(vocab))}
    tokens = _encode_lines(lines, index, length)
    labels = torch.tensor(labels_list, dtype=torch.int64)
    k = len(PLAYS)
    rng = np.random.default_rng(seed + 1)
    noisy = labels[tr].numpy().copy()
    flipped = rng.random(n_train) < flip
    noisy[flipped] = (noisy[flipped] + rng.integers(1, k, flipped.sum())) % k
    Str, btr = tokens[tr], torch.from_numpy(noisy)
    Sva, bva, Ste, bte = tokens[va], labels[va], tokens[te], labels[te]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RecurrentClassifier(len(index) + 2, embed, hidden, k).to(DTYPE)
    weights = ExampleWeights(n_train)

    def g(upper: ExampleWeights, lower: RecurrentClassifier, idx: Tensor) -> Tensor:
        ce = F.cross_entropy(lower(Str[idx]), btr[idx], reduction="none")
        l2 = sum((p * p).sum() for p in lower.parameters())
        return (torch.sigmoid(upper.logits[idx]) * ce).mean() + 0.5 * reg * l2

    def f(upper: ExampleWeights, lower: RecurrentClassifier, idx: Tensor) -> Tensor:
        return F.cross_entropy(lower(Sva[idx]), bva[idx])

    prob = BilevelProblem.from_modules(weights, model, f, g, upper_sampler=_sampler(n_val, batch),
                                       lower_sampler=_sampler(n_train, batch),
                                       name=f"hyper-cleaning-shakespeare-rnn-flip{flip:g}")
    prob.constants = BilevelConstants(notes={
        "mu": "none: a recurrent lower level is not convex; reg only shifts the Hessian spectrum by reg",
        "reg": f"{reg:g}"})
    prob.finite_sum = (n_val, n_train)
    uy = prob.layouts[1]

    def evaluate(x: Tensor, y: Tensor) -> dict[str, float]:
        with torch.no_grad(), uy.bound(y) as net:
            logits, val_logits = net(Ste), net(Sva)
            return {"test_acc": float((logits.argmax(1) == bte).double().mean()),
                    "test_loss": float(F.cross_entropy(logits, bte)),
                    "val_loss": float(F.cross_entropy(val_logits, bva))}

    info = {"task": "text-hyper-cleaning", "dataset": "tiny-shakespeare lines, " + " vs ".join(PLAYS),
            "n_train": n_train, "n_val": n_val, "n_test": len(te), "flip": flip, "flipped": int(flipped.sum()),
            "reg": reg, "batch": batch, "seed": seed, "length": length, "vocab": len(index) + 2, "embed": embed,
            "hidden": hidden, "nx": prob.nx, "ny": prob.ny}
    data = {"train_tokens": Str, "train_noisy": btr, "train_clean": labels[tr], "val_tokens": Sva, "val_labels": bva,
            "test_tokens": Ste, "test_labels": bte}
    return BilevelTask(prob, evaluate, info, data)


# ------------------------------------------------------------------------------------ hyper-representation
class TanhEncoder(nn.Module):
    """``phi(a) = tanh(W a + c)``: the shared representation (upper variable)."""

    def __init__(self, inputs: int, width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(inputs, width)

    def forward(self, a: Tensor) -> Tensor:
        return torch.tanh(self.linear(a))


def hyper_representation(*, n_train: int = 300, n_val: int = 300, width: int = 16, reg: float = 1e-2,
                         batch: int = 64, seed: int = 0) -> BilevelTask:
    """Shared tanh encoder (x) and ten one-vs-rest logistic heads (y) on digits (module docstring)."""
    from sklearn.datasets import load_digits

    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be an integer >= 1, got {width!r}")
    data = load_digits()
    tr, va, te = _split(len(data.target), (n_train, n_val), seed)
    A = _prepare(data.data.astype(np.float64), tr)[:, :-1]  # standardized unit rows; the encoder has a bias
    labels = torch.from_numpy(data.target.astype(np.int64))
    k = 10
    signs = 2.0 * F.one_hot(labels, k).to(DTYPE) - 1.0  # s_ik
    Atr, Str, Ava, Sva, Ate, bte = A[tr], signs[tr], A[va], signs[va], A[te], labels[te]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = TanhEncoder(A.shape[1], width).to(DTYPE)
    heads = nn.Linear(width, k).to(DTYPE)
    with torch.no_grad():
        heads.weight.zero_()
        heads.bias.zero_()

    def task_losses(enc: TanhEncoder, hd: nn.Linear, a: Tensor, s: Tensor) -> Tensor:
        return F.softplus(-s * hd(enc(a))).mean(0)  # one mean logistic loss per task

    def g(enc: TanhEncoder, hd: nn.Linear, idx: Tensor) -> Tensor:
        l2 = (hd.weight * hd.weight).sum() + (hd.bias * hd.bias).sum()
        return task_losses(enc, hd, Atr[idx], Str[idx]).sum() + 0.5 * reg * l2

    def f(enc: TanhEncoder, hd: nn.Linear, idx: Tensor) -> Tensor:
        return task_losses(enc, hd, Ava[idx], Sva[idx]).mean()

    prob = BilevelProblem.from_modules(encoder, heads, f, g, upper_sampler=_sampler(n_val, batch),
                                       lower_sampler=_sampler(n_train, batch),
                                       name="hyper-representation-digits")
    prob.constants = BilevelConstants(mu=reg, l_g1=(width + 1) / 4 + reg, notes={
        "l_g1": "per head: ||(tanh features, 1)||^2 <= width + 1, logistic curvature <= 1/4"})
    prob.finite_sum = (n_val, n_train)
    ux, uy = prob.layouts

    def evaluate(x: Tensor, y: Tensor) -> dict[str, float]:
        with torch.no_grad(), ux.bound(x) as enc, uy.bound(y) as hd:
            scores = hd(enc(Ate))
            val = float(task_losses(enc, hd, Ava, Sva).mean())
            return {"test_acc": float((scores.argmax(1) == bte).double().mean()),
                    "test_loss": float(task_losses(enc, hd, Ate, signs[te]).mean()), "val_loss": val}

    info = {"task": "hyper-representation", "dataset": "sklearn digits, 10 one-vs-rest tasks", "n_train": n_train,
            "n_val": n_val, "n_test": len(te), "width": width, "reg": reg, "batch": batch, "seed": seed,
            "nx": prob.nx, "ny": prob.ny}
    return BilevelTask(prob, evaluate, info)


TASKS = {"cleaning": hyper_cleaning, "l2": l2_hyperparameters, "text-cleaning": text_hyper_cleaning,
         "representation": hyper_representation}
