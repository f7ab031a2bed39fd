"""``python -m deepmath.serve``: see :mod:`deepmath.serve.cli`."""

from deepmath.io import run_cli
from deepmath.serve.cli import main

run_cli(main)
