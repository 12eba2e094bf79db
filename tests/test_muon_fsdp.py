"""Muon and Drop-Muon on FSDP2-sharded parameters (DTensor, ``Shard(0)``) against the one-process optimizers.

The ranks hold row blocks of every matrix; each whole momentum matrix is gathered on its owner rank,
orthogonalized there and its rows scattered back (``optlib.optim.muon.orthogonalize_sharded``). Momentum,
weight decay and the step are elementwise, and the owner orthogonalizes exactly the matrix one process would, so
with the same gradients the parameters after N steps equal the one-process ones bit for bit; the stated
tolerance is 0 (``torch.equal``). The shapes include a matrix with fewer rows than ranks (empty shards), one whose
rows do not divide evenly, and an expert stack. Each rank's share of the orthogonalization work is at most the
round-robin share ``ceil(k / world)`` of the ``k`` matrices, and the shares add up to the one-process count.
Every collective runs under a 60 s process-group timeout, so a broken exchange fails instead of hanging.

"Would catch" twins: orthogonalizing each rank's rows on their own (no gather) changes the update far beyond the
tolerance, and a scheme that gives every matrix to rank 0 breaks the share bound.
"""

from __future__ import annotations

import datetime
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from optlib.optim import DropMuon, Muon, MuonWithAdamW, orthogonalize_many
from optlib.optim.muon import orthogonalize_sharded, shard_owners

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not built")

# uneven rows (10 over 4 ranks), fewer rows than ranks (3), a wide and a tall matrix, an expert stack
SHAPES = [(16, 16), (16, 16), (10, 12), (3, 16), (24, 8), (8, 24), (4, 6, 8)]
STEPS = 3
TIMEOUT = datetime.timedelta(seconds=60)


def _full_params(seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=gen) for s in SHAPES]


def _grads(step: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + step)
    return [torch.randn(*s, generator=gen) for s in SHAPES]


def _bias_grad(step: int) -> torch.Tensor:
    return torch.randn(16, generator=torch.Generator().manual_seed(500 + step))


def _make(kind: str, params: list[torch.Tensor], bias: torch.Tensor):
    if kind == "muon":
        return Muon(params, lr=0.05, weight_decay=0.1, ns_dtype=torch.float32)
    if kind == "muon-bf16":
        return Muon(params, lr=0.05, weight_decay=0.1)  # default bfloat16 Newton-Schulz
    if kind == "muon-adamw":
        return MuonWithAdamW([{"params": params, "use_muon": True}, {"params": [bias], "use_muon": False}],
                             lr=0.05, adamw_lr=1e-2, ns_dtype=torch.float32)
    # two layers: the cutoff sampler freezes layer 0 in some steps; the same seed on every rank
    return DropMuon([{"params": params[:3], "layer": 0}, {"params": params[3:], "layer": 1}], lr=0.05,
                    sampler=[0.5, 0.5], seed=3, ns_dtype=torch.float32)


KINDS = ("muon", "muon-bf16", "muon-adamw", "drop-muon")


def _run(kind: str, shard=None) -> dict:
    """STEPS steps of ``kind`` on the parameters, sharded by ``shard`` (None: one process); the full parameters
    afterwards, this process's orthogonalization count and the cutoffs drawn."""
    full = _full_params()
    params = [torch.nn.Parameter(shard(t) if shard else t.clone()) for t in full]
    bias = torch.nn.Parameter(shard(torch.zeros(16)) if shard else torch.zeros(16))
    opt = _make(kind, params, bias)
    cutoffs = []
    for k in range(STEPS):
        cutoff = opt.sample_cutoff() if kind == "drop-muon" else 0
        cutoffs.append(cutoff)
        for i, (p, g) in enumerate(zip(params, _grads(k))):
            layer = 0 if i < 3 else 1
            # a frozen layer gets no gradient, as after a backward pass truncated at the cutoff
            p.grad = None if layer < cutoff else (shard(g) if shard else g)
        bias.grad = shard(_bias_grad(k)) if shard else _bias_grad(k)
        opt.step()
    gathered = [p.detach().full_tensor() if shard else p.detach().clone() for p in params]
    return {"params": gathered, "here": opt.state["counters"]["orthogonalized_here"], "cutoffs": cutoffs,
            "bias": bias.detach().full_tensor() if shard else bias.detach().clone()}


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=TIMEOUT)
    try:
        mesh = init_device_mesh("cpu", (world,))
        results = {kind: _run(kind, lambda t: distribute_tensor(t, mesh, [Shard(0)])) for kind in KINDS}
        try:  # a placement other than FSDP2's row shards: refused by name
            p = torch.nn.Parameter(distribute_tensor(torch.randn(8, 8), mesh, [Replicate()]))
            p.grad = distribute_tensor(torch.randn(8, 8), mesh, [Replicate()])
            Muon([p]).step()
            results["replicate_error"] = ""
        except ValueError as exc:
            results["replicate_error"] = str(exc)
        torch.save(results, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def share_bound(cutoffs: list[int], world: int) -> int:
    """Most parameters one rank may orthogonalize under round-robin ownership: per step ``ceil(k / world)`` of
    the ``k`` parameters stepped (layer 0, the first three, is frozen at cutoff 1)."""
    return sum(-(-(len(SHAPES) - (3 if cutoff == 1 else 0)) // world) for cutoff in cutoffs)


@pytest.fixture(scope="module")
def single() -> dict:
    return {kind: _run(kind) for kind in KINDS}


@pytest.mark.parametrize("world", [2, 4])
def test_sharded_steps_equal_one_process(world, single):
    with tempfile.TemporaryDirectory() as tmp:
        init, out = os.path.join(tmp, "init"), os.path.join(tmp, "out")
        mp.start_processes(_worker, args=(world, init, out), nprocs=world, join=True, start_method="spawn")
        ranks = [torch.load(f"{out}.{r}", weights_only=True) for r in range(world)]
    for kind in KINDS:
        ref = single[kind]
        for r in ranks:
            gap = max(float((a - b).abs().max()) for a, b in zip(r[kind]["params"], ref["params"]))
            assert gap == 0.0, (kind, world, gap)  # tolerance 0: bit for bit
            assert torch.equal(r[kind]["bias"], ref["bias"])
            assert r[kind]["cutoffs"] == ref["cutoffs"]
        shares = [r[kind]["here"] for r in ranks]
        assert sum(shares) == ref["here"], (kind, shares, ref["here"])  # every matrix exactly once
        assert max(shares) <= share_bound(ref["cutoffs"], world), (kind, shares)
        assert min(shares) > 0, (kind, shares)
    if "drop-muon" in KINDS:
        assert 1 in single["drop-muon"]["cutoffs"]  # a step with layer 0 frozen was exercised
    for r in ranks:
        assert "Shard(0) on a 1-D mesh" in r["replicate_error"], r["replicate_error"]


def test_shard_owners_balance_round_robin_by_size():
    sizes = [256, 64, 1024, 64, 256, 1024, 16]
    owners = shard_owners(sizes, 2)
    # largest first, dealt alternately: the two 1024s go to different ranks, and so on down the sizes
    assert owners[2] != owners[5] and owners[0] != owners[4] and owners[1] != owners[3]
    loads = [sum(s for s, o in zip(sizes, owners) if o == r) for r in range(2)]
    assert max(loads) - min(loads) <= max(sizes)
    assert shard_owners(sizes, 4) == shard_owners(list(sizes), 4)  # the same on every rank
    assert sorted(set(shard_owners(sizes, 4))) == [0, 1, 2, 3]


def test_would_catch_orthogonalizing_each_shard_alone():
    """The twin of the equality check: orthogonalizing each rank's rows on their own (no gather) is not
    orth of the whole matrix, and the difference is of the order of the update itself."""
    D = torch.randn(16, 16, generator=torch.Generator().manual_seed(7))
    whole = orthogonalize_many([D], compute_dtype=None)[0]
    per_shard = torch.cat(orthogonalize_many(list(D.chunk(2)), compute_dtype=None))
    assert float((whole - per_shard).abs().max()) > 1e-2


def test_would_catch_all_matrices_on_one_owner():
    """The twin of the share bound: a scheme that gives every matrix to rank 0 orthogonalizes all of them there,
    above the bound the test asserts, for 2 and 4 ranks."""
    cutoffs = [0] * STEPS
    one_owner_share = STEPS * len(SHAPES)
    for world in (2, 4):
        assert one_owner_share > share_bound(cutoffs, world)


def test_sharded_path_refuses_whole_tensors():
    with pytest.raises(ValueError, match="not a DTensor"):
        orthogonalize_sharded([torch.randn(4, 4)], [torch.randn(4, 4)])
