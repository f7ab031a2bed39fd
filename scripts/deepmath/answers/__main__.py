"""``python -m deepmath.answers score --in PAIRS --out VERDICTS``."""

from deepmath.answers.cli import main
from deepmath.io import run_cli

if __name__ == "__main__":
    run_cli(main)
