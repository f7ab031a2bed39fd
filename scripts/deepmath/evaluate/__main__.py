"""``python -m deepmath.evaluate``: see :mod:`deepmath.evaluate.cli`."""

from deepmath.evaluate.cli import main
from deepmath.io import run_cli

run_cli(main)
