"""Helpers the Snakefile uses at parse time (kept here so the .smk files hold no logic)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any


def setup_environment(scripts_dir: str, extra: Mapping[str, Any]) -> None:
    """Make `python -m deepmath.<stage>` importable in every job and apply config.environment.

    Jobs inherit the environment of the Snakemake process that starts them (locally, or the
    Slurm job step, which re-reads the Snakefile), so setting it here reaches every rule.
    Values the user already exported win over the config.
    """
    parts = [scripts_dir, *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    for name, value in extra.items():
        if isinstance(value, bool):
            value = int(value)
        os.environ.setdefault(name, str(value))


def as_json(value: Any) -> str:
    """A config entry as one JSON argument for a stage CLI (quote it with {params.x:q})."""
    return json.dumps(value, sort_keys=True)
