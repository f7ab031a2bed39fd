"""rate_difficulty: k LLM ratings per question on the AoPS scale; keep mean >= threshold.

Paper: GPT-4o, 6 ratings per problem, keep mean >= 5. Each rating is stored, unreadable ones
are counted and left out of the mean; a question with no readable rating gets NaN and follows
the config policy.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from deepmath.io import run_cli, setup_logging, write_json, write_parquet
from deepmath.llmstage import (
    first_text,
    run_stage_requests,
    stage_llm,
    stage_parser,
    user_requests,
)
from deepmath.prompts import load_prompt
from deepmath.verdicts import parse_rating

log = logging.getLogger("deepmath.difficulty")


def summarise_ratings(ratings: list[list[float | None]]) -> tuple[list[float], list[int]]:
    """Mean of the readable ratings per question (NaN if none) and how many were readable."""
    means, counts = [], []
    for row in ratings:
        good = [r for r in row if r is not None]
        means.append(float(np.mean(good)) if good else math.nan)
        counts.append(len(good))
    return means, counts


def select(table: pd.DataFrame, threshold: float, keep_unrated: bool) -> pd.Series:
    """Mask of questions that pass: mean >= threshold (unrated ones per policy)."""
    rated = table["difficulty"].notna()
    return (rated & (table["difficulty"] >= threshold)) | (~rated & keep_unrated)


def stats_for(table: pd.DataFrame, kept: pd.Series, samples: int) -> dict[str, Any]:
    ratings = [r for row in table["ratings"] for r in row]
    hist = table["difficulty"].dropna().round().value_counts().sort_index()
    return {
        "questions": int(len(table)),
        "kept": int(kept.sum()),
        "dropped": int((~kept).sum()),
        "ratings_requested": int(len(table) * samples),
        "ratings_unparseable": int(sum(r is None for r in ratings)),
        "unrated_questions": int(table["difficulty"].isna().sum()),
        "histogram_rounded_mean": {str(int(k)): int(v) for k, v in hist.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(
        "difficulty",
        "Rate each question k times on the AoPS 1-10 scale and filter by the mean.",
        "clean shard parquet",
    )
    args = parser.parse_args(argv)
    setup_logging()
    spec = json.loads(args.spec)
    samples, threshold = int(spec["samples"]), float(spec["threshold"])
    table = pd.read_parquet(args.inp)
    prompt = load_prompt(args.prompt, ("question",))
    llm = stage_llm(args)
    role = llm.role
    requests = user_requests(role, prompt, table[["question"]].to_dict("records"), samples)
    responses = run_stage_requests(llm, requests)
    parsed = [parse_rating(first_text(r)) for r in responses]
    ratings = [parsed[i * samples : (i + 1) * samples] for i in range(len(table))]
    means, counts = summarise_ratings(ratings)
    table["ratings"] = ratings
    table["ratings_parsed"] = counts
    table["difficulty"] = pd.Series(means, index=table.index, dtype="float64")
    kept = select(table, threshold, spec.get("unrated", "drop") == "keep")
    stats = stats_for(table, kept, samples)
    log.info(
        "kept %d of %d questions with mean difficulty >= %.1f (%d unreadable ratings)",
        stats["kept"],
        stats["questions"],
        threshold,
        stats["ratings_unparseable"],
    )
    write_parquet(table[kept].reset_index(drop=True), args.out)
    write_json(stats, args.stats)


if __name__ == "__main__":
    run_cli(main)
