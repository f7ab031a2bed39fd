"""Contamination rate per benchmark: the share of a benchmark's items found in a dataset.

The paper's figure: how much of each of the 17 benchmarks the raw pool holds before
decontamination (Omni-MATH 92.6% … GPQA 5.0%). It is read off the decontamination tables that
curation already wrote: a benchmark item counts as found when some pool question was matched to
it and judged the same problem (or flagged by the string pre-check). Retrieval keeps the top-k
benchmark neighbours of each pool question, so an item that is never among any question's top
k is not counted: the rate is a lower bound, as the paper's is.

For the final dataset the same rate is zero by construction (every matched question was
dropped); it is checked independently with the all-pairs string check
(:mod:`deepmath.analysis.strings`) of the final dataset against each benchmark.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd


def pool_rates(judged: pd.DataFrame, benchmarks: pd.DataFrame) -> pd.DataFrame:
    """Per benchmark: items, items found in the pool (by string / by judge), rate in percent.

    ``judged``: the decontamination judge tables of all shards (``bench``, ``bench_id``,
    ``precheck``, ``contaminated``); ``benchmarks``: every benchmark item (``bench``, ``id``).
    """
    sizes = benchmarks.groupby("bench")["id"].nunique()
    hits = judged[judged["contaminated"].astype(bool)]
    found = hits.groupby("bench")["bench_id"].nunique()
    by_string = hits[hits["precheck"].astype(bool)].groupby("bench")["bench_id"].nunique()
    table = pd.DataFrame({"items": sizes})
    table["found"] = found.reindex(table.index).fillna(0).astype(int)
    table["found_by_string"] = by_string.reindex(table.index).fillna(0).astype(int)
    table["found_by_judge_only"] = table["found"] - table["found_by_string"]
    table["rate"] = (100 * table["found"] / table["items"]).round(2)
    return table.reset_index(names="bench")


def with_final(rates: pd.DataFrame, final_hits: Mapping[str, int]) -> pd.DataFrame:
    """Add the final dataset's string-check hits per benchmark (items of the benchmark that
    nearly equal some final item) and their rate."""
    out = rates.copy()
    out["final_found"] = [int(final_hits.get(b, 0)) for b in out["bench"]]
    out["final_rate"] = (100 * out["final_found"] / out["items"]).round(2)
    return out


def with_paper(rates: pd.DataFrame, paper: Mapping[str, float]) -> pd.DataFrame:
    """Add the published rate of each benchmark (empty where the paper gives none)."""
    out = rates.copy()
    out["paper_rate"] = [paper.get(b) for b in out["bench"]]
    return out


def bar_chart(rates: pd.DataFrame, path: str, title: str) -> None:
    """Horizontal bars, highest rate first, the paper's rate beside ours where known."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rates.sort_values("rate")
    has_paper = "paper_rate" in table and table["paper_rate"].notna().any()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(table) + 1.5))
    y = range(len(table))
    height = 0.4 if has_paper else 0.7
    ax.barh([i + (height / 2 if has_paper else 0) for i in y], table["rate"], height=height,
            label="this run", color="#3b6ea8")  # fmt: skip
    if has_paper:
        paper = table["paper_rate"].astype(float)
        ax.barh([i - height / 2 for i in y], paper.fillna(0), height=height, label="paper",
                color="#c8884a")  # fmt: skip
        ax.legend(loc="lower right")
    ax.set_yticks(list(y), table["bench"])
    ax.set_xlabel("benchmark items found in the raw pool (%)")
    ax.set_xlim(0, 100)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
