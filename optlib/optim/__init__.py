"""torch.optim-style optimizers for neural networks: Muon, Muon with AdamW for the other parameters, Drop-Muon."""

from .drop_muon import DropMuon
from .muon import Muon, lr_scale, muon_direction, orthogonalize
from .routing import MuonWithAdamW, muon_param_groups

__all__ = [
    "DropMuon",
    "Muon",
    "MuonWithAdamW",
    "lr_scale",
    "muon_direction",
    "muon_param_groups",
    "orthogonalize",
]
