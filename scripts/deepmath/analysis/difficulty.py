"""Difficulty comparison: a seeded sample of every compared dataset, rated like curation rates.

Curation's difficulty role and prompt rate a bounded sample of each compared dataset (the rule
runs the curation stage itself, ``python -m deepmath.difficulty``, with its journal, so a rerun
pays nothing); our own dataset already carries that rating in its ``difficulty`` column, so a
sample of it is read, not rated again. The paper's figure: DeepMath-103K mostly at levels 5-9,
the other open sets mostly below 5.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

LEVELS = np.arange(1, 11)  # the AoPS scale, rounded to whole levels for the histogram


def sample(table: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, drawn with a seed (the same rows every run)."""
    if len(table) <= n:
        return table.reset_index(drop=True)
    return table.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def level_shares(ratings: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Per dataset: rated items, mean, share (%) at each whole level, and the share >= 5."""
    rows = []
    for name, values in ratings.items():
        rated = pd.to_numeric(values, errors="coerce").dropna()
        levels = rated.round().clip(1, 10).astype(int)
        row: dict[str, object] = {
            "dataset": name,
            "rated": int(len(rated)),
            "mean": round(float(rated.mean()), 2) if len(rated) else None,
        }
        for level in LEVELS:
            row[str(level)] = round(100 * float((levels == level).mean()), 1) if len(rated) else 0.0
        row[">=5"] = round(100 * float((rated >= 5).mean()), 1) if len(rated) else 0.0
        rows.append(row)
    return pd.DataFrame(rows)


def histogram(shares: pd.DataFrame, path: str) -> None:
    """Overlaid step histograms of the level shares, one line per dataset, means in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    colours = plt.get_cmap("tab10")
    for i, row in shares.reset_index(drop=True).iterrows():
        values = [row[str(level)] for level in LEVELS]
        mean = "–" if row["mean"] is None or pd.isna(row["mean"]) else f"{row['mean']:.2f}"
        ax.step(LEVELS, values, where="mid", color=colours(i % 10),
                label=f"{row['dataset']} (n={row['rated']}, mean {mean})")  # fmt: skip
    ax.set_xticks(LEVELS)
    ax.set_xlabel("difficulty (rounded mean rating, AoPS scale)")
    ax.set_ylabel("share of rated items (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
