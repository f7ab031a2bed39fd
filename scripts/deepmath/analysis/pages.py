"""The analyses as report pages: one self-contained HTML table each, with what it means."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from deepmath.report import html_page, html_table, note


def contamination_page(rates: pd.DataFrame) -> str:
    shown = rates.sort_values("rate", ascending=False)
    return html_page(
        "Contamination rate per benchmark",
        [
            html_table(shown),
            note(
                "found: benchmark items that some raw-pool question was matched to (string "
                "pre-check or LLM judge) among its top-k embedding neighbours; rate = found / "
                "items. final_found: benchmark items that nearly equal (normalised Indel "
                "similarity above the pre-check threshold) an item of the final dataset among "
                "its top-k neighbours - it must be 0. paper_rate: the published rate."
            ),
        ],
    )


def strings_page(counts: pd.DataFrame, hits: pd.DataFrame, benchmark: str) -> str:
    parts = [
        html_table(counts),
        note(
            f"Items of each dataset whose text nearly equals a {benchmark} problem (normalised "
            "Indel similarity above the threshold, every pair scored). The paper: 0 for "
            "DeepMath-103K, 3-223 for other open datasets."
        ),
    ]
    if not hits.empty:
        columns = ["dataset", "question", "bench_problem", "similarity"]
        parts.append(html_table(hits.head(30)[columns].round({"similarity": 3})))
    return html_page(f"String check against {benchmark}", parts)


def novelty_page(table: pd.DataFrame, matrix: pd.DataFrame, threshold: float) -> str:
    return html_page(
        "Novelty",
        [
            html_table(table),
            note(
                f"unique: items with no item of any other compared dataset at embedding cosine "
                f"> {threshold:g} (the paper: 82.81K of DeepMath-103K's problems). The matrix: "
                "the share (%) of the row dataset's items that have a copy in the column's."
            ),
            html_table(matrix),
        ],
    )


def types_page(table: pd.DataFrame) -> str:
    return html_page(
        "Answer types",
        [
            html_table(table),
            note(
                "Share (%) of items per answer type. guessable = boolean + choice: answers a "
                "policy can hit by guessing (Yes/No half the time, a letter a quarter), which "
                "a rule-based reward cannot tell from reasoning. proof: the question asks for "
                "a proof, which has no final answer to check."
            ),
        ],
    )


def audit_page(
    stats: Mapping[str, Any],
    disagreements: pd.DataFrame,
    contaminated: pd.DataFrame,
    flagged: pd.DataFrame,
    examples: int = 5,
) -> str:
    """One audited dataset: its counts, then examples of each finding."""
    ans, con = stats["answers"], stats["contamination"]
    share = ans["agreement_share"]
    counts = pd.DataFrame(
        [
            ("rows audited", stats["rows"]),
            ("solutions checked", ans["solutions_checked"]),
            ("solutions agreeing with final_answer",
             f"{ans['solutions_agreeing']}" + (f" ({100 * share:.2f}%)" if share is not None
                                               else "")),
            *((f"rows: {k}", v) for k, v in ans["status"].items()),
            ("contaminated questions", con["contaminated"]),
            *((f"flagged: {k}", v) for k, v in stats["flags"].items()),
            ("kept in the cleaned copy", stats["kept"]),
        ],
        columns=["", "count"],
    )  # fmt: skip
    parts = [
        html_table(counts),
        note(
            "Each r1_solution_*'s final answer compared with final_answer by the shared "
            "checker; contamination by the curation's embeddings, string pre-check and LLM "
            "judge against the audit's benchmarks; flags from the answer-type profile. The "
            f"cleaned copy leaves out: {', '.join(stats['drop']) or 'nothing'}."
        ),
    ]
    if len(disagreements):
        parts.append(html_table(disagreements.head(examples)))
    if len(contaminated):
        cols = ["id", "question", "bench", "bench_problem", "score", "by"]
        parts.append(html_table(contaminated.head(examples)[cols].round({"score": 3})))
    if len(flagged):
        parts.append(html_table(flagged))
    return html_page(f"Audit: {stats['label']}", parts)


def write_pages(args: argparse.Namespace) -> list[Path]:
    """Write a page for every analysis given on the command line; their paths."""
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pages = {
        "novelty.html": novelty_page(
            pd.read_csv(args.novelty), pd.read_csv(args.matrix), args.threshold
        ),
        "answer_types.html": types_page(pd.read_csv(args.types)),
    }
    if args.contamination:
        pages["contamination_rates.html"] = contamination_page(pd.read_csv(args.contamination))
    if args.strings:
        hits = pd.read_parquet(args.hits)
        pages["string_check.html"] = strings_page(pd.read_csv(args.strings), hits, args.benchmark)
    for name, text in pages.items():
        (out_dir / name).write_text(text, encoding="utf-8")
    return [out_dir / name for name in pages]
