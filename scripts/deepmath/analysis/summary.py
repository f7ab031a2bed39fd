"""The analyses' headline numbers in one table: what the dataset card points a reader to.

The dataset card is written before the analyses can run (they read the dataset), so it links to
``analysis/summary.md`` instead of holding the numbers; this module writes that file from the
analyses' own tables: per dataset, its items, string-check hits, unique share (novelty),
guessable and proof shares (answer types) and difficulty; and for this run's dataset, the
contamination left in the final set and the highest raw-pool contamination rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from deepmath.analysis.items import OURS
from deepmath.dataset import markdown_table

COLUMNS = ["dataset", "items", "string_hits", "unique_share", "guessable", "proof",
           "boolean", "difficulty_mean", "difficulty_ge5"]  # fmt: skip


def summary_table(
    novelty: pd.DataFrame,
    types: pd.DataFrame,
    strings: pd.DataFrame | None = None,
    difficulty: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per dataset (novelty's order); a missing analysis leaves its columns empty."""
    out = novelty[["dataset", "items", "unique_share"]].copy()
    kinds = types.set_index("dataset")
    for column in ("guessable", "proof", "boolean"):
        out[column] = out["dataset"].map(kinds[column])
    out["string_hits"] = (
        out["dataset"].map(strings.set_index("dataset")["hits"]) if strings is not None else None
    )
    if difficulty is not None:
        diff = difficulty.set_index("dataset")
        out["difficulty_mean"] = out["dataset"].map(diff["mean"])
        out["difficulty_ge5"] = out["dataset"].map(diff[">=5"])
    else:
        out["difficulty_mean"] = out["difficulty_ge5"] = None
    return out[COLUMNS]


def _md(frame: pd.DataFrame) -> str:
    """The frame as a Markdown table, a missing value as an empty cell."""
    cells = frame.astype(object).where(frame.notna(), "")
    return markdown_table(list(frame.columns), list(cells.itertuples(index=False)))


def summary_markdown(
    table: pd.DataFrame,
    contamination: pd.DataFrame | None,
    labels: Mapping[str, str],
    benchmark: str | None,
    threshold: float,
) -> str:
    """The summary page: the headline sentence for ours, the table, the highest pool rates."""
    ours = table[table["dataset"] == OURS]
    lines = ["# Dataset analyses: headline numbers", ""]
    if len(ours):
        row: Any = ours.iloc[0]
        said = [f"{int(row['items'])} items"]
        if pd.notna(row["string_hits"]):
            said.append(f"{int(row['string_hits'])} string-check hits against {benchmark}")
        said.append(f"{row['unique_share']:.2f}% unique at cosine > {threshold:g}")
        said.append(f"{row['guessable']:.2f}% guessable answers (Yes/No, choice letters)")
        if contamination is not None:
            left = int(contamination["final_found"].sum())
            said.append(f"{left} benchmark items left in the final set")
        lines += ["This run's dataset (`ours`): " + "; ".join(said) + ".", ""]
    shown = table.assign(dataset=table["dataset"].map(lambda d: labels.get(d, d)))
    lines += [_md(shown), ""]
    lines += [
        "string_hits: items nearly equal to a benchmark problem (normalised Indel > the "
        "threshold). unique_share: % of items with no near-copy in any other dataset. "
        "guessable, proof, boolean: % of items by answer type. difficulty: mean rating and "
        "% rated >= 5 of a seeded sample.",
        "",
    ]
    if contamination is not None:
        top = contamination.sort_values("rate", ascending=False).head(5)
        lines += [
            "Highest contamination rates in the raw pool (before decontamination):",
            "",
            _md(top[["bench", "items", "found", "rate", "paper_rate", "final_found"]]),
            "",
        ]
    return "\n".join(lines)
