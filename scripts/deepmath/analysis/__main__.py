"""``python -m deepmath.analysis``: see :mod:`deepmath.analysis.cli`."""

from deepmath.analysis.cli import main
from deepmath.io import run_cli

run_cli(main)
