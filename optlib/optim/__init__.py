"""torch.optim-style optimizers for neural networks: Muon, Muon with AdamW for the other parameters, Drop-Muon,
K-FAC (as an optimizer and as a preconditioner in front of another one)."""

from .drop_muon import DropMuon, layer_param_groups
from .kfac import KFAC, KFACPreconditioner
from .muon import Muon, lr_scale, muon_direction, muon_directions, orthogonalize, orthogonalize_many
from .progressive import CutoffSampler, block_costs, progressive_forward
from .routing import MuonWithAdamW, muon_param_groups

__all__ = [
    "CutoffSampler",
    "DropMuon",
    "KFAC",
    "KFACPreconditioner",
    "Muon",
    "MuonWithAdamW",
    "block_costs",
    "layer_param_groups",
    "lr_scale",
    "muon_direction",
    "muon_directions",
    "muon_param_groups",
    "orthogonalize",
    "orthogonalize_many",
    "progressive_forward",
]
