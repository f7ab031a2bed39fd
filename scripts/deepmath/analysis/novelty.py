"""Novelty: how many of a dataset's items have no near-copy in any other compared dataset.

The paper counts two items as the same when their MiniLM embeddings have cosine > 0.98, and
finds 82.81K of DeepMath-103K's problems unique against the other open datasets. Each dataset
is searched against every other with the exact blocked search of decontamination
(:func:`deepmath.neighbors.topk_cosine`, k = 1): a dataset of N items against one of M costs
N × M dot products, memory bounded by blocks.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from deepmath.neighbors import topk_cosine


def nearest_other(
    embeddings: Mapping[str, np.ndarray], *, memory_mb: int = 512, device: str = "auto"
) -> dict[str, dict[str, np.ndarray]]:
    """``{a: {b: best cosine of each item of a in b}}`` for every ordered pair a != b."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for a, va in embeddings.items():
        out[a] = {}
        for b, vb in embeddings.items():
            if a == b or len(va) == 0 or len(vb) == 0:
                continue
            scores, _ = topk_cosine(va, vb, 1, memory_mb=memory_mb, device=device)
            out[a][b] = scores[:, 0].astype(np.float64)
    return out


def novelty(
    embeddings: Mapping[str, np.ndarray],
    threshold: float,
    *,
    memory_mb: int = 512,
    device: str = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The novelty table and the pairwise overlap matrix.

    Table: per dataset, items, unique (no item of any other dataset above ``threshold``),
    and the unique share. Matrix: row a, column b = the share (%) of a's items that have a
    copy in b (the diagonal is left empty).
    """
    best = nearest_other(embeddings, memory_mb=memory_mb, device=device)
    names = list(embeddings)
    rows, matrix = [], pd.DataFrame(index=names, columns=names, dtype=float)
    for a in names:
        n = len(embeddings[a])
        copied = np.zeros(n, dtype=bool)
        for b, scores in best[a].items():
            hit = scores > threshold
            copied |= hit
            matrix.loc[a, b] = round(100 * hit.mean(), 2) if n else 0.0
        unique = int(n - copied.sum())
        rows.append(
            {"dataset": a, "items": n, "unique": unique,
             "unique_share": round(100 * unique / n, 2) if n else 0.0}
        )  # fmt: skip
    return pd.DataFrame(rows), matrix
