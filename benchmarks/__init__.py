"""asv benchmarks (``asv run``; configuration in ``asv.conf.json`` at the repository root)."""
