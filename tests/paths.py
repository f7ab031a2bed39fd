"""Where the tests find the repository and the demo model folder (tests/conftest.py builds it)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMOLLM2 = REPO / "results" / "models" / "smollm2"
