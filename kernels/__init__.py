"""Triton kernels, each beside the pure-PyTorch reference it is tested against.

Triton is optional: importing :mod:`optlib` never requires it.
"""
