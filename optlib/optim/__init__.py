"""torch.optim-style optimizers for neural networks: Muon, Muon with AdamW for the other parameters, Drop-Muon,
K-FAC (as an optimizer and as a preconditioner in front of another one), and the drift-adjusted learning rate
(DAL) that sets the step size of any of them."""

from .dal import DriftAdjustedLR, dal_step_size
from .drop_muon import DropMuon, layer_param_groups
from .kfac import KFAC, KFACPreconditioner
from .muon import Muon, lr_scale, muon_direction, muon_directions, orthogonalize, orthogonalize_many
from .progressive import CutoffSampler, block_costs, progressive_forward
from .routing import MuonWithAdamW, muon_param_groups

__all__ = [
    "CutoffSampler",
    "DriftAdjustedLR",
    "DropMuon",
    "KFAC",
    "KFACPreconditioner",
    "Muon",
    "MuonWithAdamW",
    "block_costs",
    "dal_step_size",
    "layer_param_groups",
    "lr_scale",
    "muon_direction",
    "muon_directions",
    "muon_param_groups",
    "orthogonalize",
    "orthogonalize_many",
    "progressive_forward",
]
