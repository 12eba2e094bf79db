"""The benchmark wing: one module per family's benchmark, each a command line and a report section.

| module | what it measures | command |
|---|---|---|
| :mod:`~scale.bench.theorems` | the theorem table of :mod:`optlib.theory` | (report section only) |
| :mod:`~scale.bench.second_order` | time to target of optlib's second-order methods against scipy.optimize | (report section; asv) |
| :mod:`~scale.bench.muon_step` | Muon's step time against ``torch.optim.Muon`` | ``optlib-bench-muon-step`` |
| :mod:`~scale.bench.drop_muon_digits` | Drop-Muon's time to a target accuracy on a small CNN (digits) | ``optlib-bench-drop-muon`` |
| :mod:`~scale.bench.training` | ``scale.train``: throughput, time to a validation loss, scaling law | ``optlib-bench-training`` |
| :mod:`~scale.bench.curvature` | GGN-vector products against curvlinops, K-FAC step overhead | ``optlib-bench-curvature`` |
| :mod:`~scale.bench.least_squares` | Levenberg–Marquardt and Gauss–Newton on the NIST StRD problems against scipy | ``optlib-bench-least-squares`` |
| :mod:`~scale.bench.unlearning` | K-FADE's forget/retain frontier against gradient ascent | ``optlib-bench-unlearning`` |
| :mod:`~scale.bench.drift` | discretisation drift: flows against GD, edge of stability, IGR bias, GANs, DAL | ``optlib-bench-drift`` |
| :mod:`~scale.bench.mutants` | the share of a catalogue of deliberate bugs that the theorem suite catches | ``optlib-bench-mutants`` |
| :mod:`~scale.bench.newton_schulz_kernel` | the Triton Newton–Schulz kernel against its PyTorch reference (GPU) | ``optlib-bench-newton-schulz`` |

Shared plumbing (threads, provenance, statistics, JSON, formatting, the section registry) is in
:mod:`scale.bench.common`. Every command is also ``python -m scale.bench.<module>``.
"""
