"""``python -m scale.quantize`` (console script ``optlib-quantize``): see :mod:`scale.quantize.cli`."""

from scale.quantize.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
