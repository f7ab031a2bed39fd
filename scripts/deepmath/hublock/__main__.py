"""``python -m deepmath.hublock``: see :mod:`deepmath.hublock.cli`."""

from deepmath.hublock.cli import main
from deepmath.io import run_cli

run_cli(main)
