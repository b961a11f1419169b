"""Benchmarks: ``python -m sld_jax.bench {loss,models,data,step,lm,precision,chaos,report} [options]``.

Each benchmark lives in ``sld_jax/bench/<name>.py`` and exposes ``main(argv) -> int``. Figures are
printed as a table together with the machine they were measured on.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("loss", "models", "data", "step", "lm", "precision", "chaos", "report")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        print("available:", ", ".join(BENCHMARKS))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; choose one of: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"sld_jax.bench.{name}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
