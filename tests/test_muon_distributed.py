"""Muon's distributed orthogonalization: two gloo processes give the one-process update bit for bit, and each
rank orthogonalizes only its share of the matrices."""

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from optlib.optim import DropMuon, Muon, orthogonalize_many

SHAPES = [(16, 16)] * 5 + [(32, 16), (16, 32), (3, 4, 8)]  # 5 alike, two odd ones, one expert stack


def _params(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*s, generator=gen)) for s in SHAPES]


def _grads(step: int):
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(*s, generator=gen) for s in SHAPES]


def _run(kind: str, steps: int = 3):
    params = _params()
    if kind == "muon":
        opt = Muon(params, lr=0.05, weight_decay=0.1, distributed=True)
    else:
        opt = DropMuon([{"params": params[:5], "layer": 0}, {"params": params[5:], "layer": 1}], lr=0.05,
                       distributed=True, sampler=[0.5, 0.5], seed=3)
    for k in range(steps):
        if kind == "dropmuon":
            opt.sample_cutoff()  # the cutoff is drawn before the (here simulated) forward and backward passes
        for p, g in zip(params, _grads(k)):
            p.grad = g
        opt.step()
    return [p.detach().clone() for p in params], opt.state["counters"]["orthogonalized_here"]


def _worker(rank: int, world: int, init_file: str, kind: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        params, here = _run(kind)
        torch.save({"params": params, "here": here}, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["muon", "dropmuon"])
def test_two_ranks_equal_one_process_and_share_the_work(kind):
    single, here_single = _run(kind)  # no process group: distributed=True has no effect
    with tempfile.TemporaryDirectory() as tmp:
        init, out = os.path.join(tmp, "init"), os.path.join(tmp, "out")
        mp.start_processes(_worker, args=(2, init, kind, out), nprocs=2, join=True, start_method="spawn")
        ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(2)]
    for r in ranks:
        for p, q in zip(r["params"], single):
            assert torch.equal(p, q)  # bit for bit: batched products act on each matrix alone
    # Each rank did about half the Newton-Schulz work (ceil per shape bucket), never all of it.
    for r in ranks:
        assert r["here"] < here_single
        assert r["here"] <= (here_single + 2 * 4 * 3) // 2  # <= half plus padding of the 4 buckets x 3 steps


def test_would_catch_a_rank_that_keeps_its_own_chunk_only():
    """The equality check above fails if the all-gather is dropped (a rank's other chunks stay zero)."""
    D = [torch.randn(16, 16) for _ in range(4)]
    full = orthogonalize_many(D, compute_dtype=None)
    own = orthogonalize_many(D[:2], compute_dtype=None) + [torch.zeros(16, 16)] * 2
    assert not all(torch.equal(a, b) for a, b in zip(full, own))
