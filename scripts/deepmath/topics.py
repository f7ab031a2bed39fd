"""classify_topic: one Omni-MATH-style hierarchical topic per question, from a fixed tree.

The allowed paths live in config (``topics.tree``); an answer that names no allowed path is
counted as unparseable and gets the configured fallback topic.
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from deepmath.io import run_cli, setup_logging, text_column, write_json, write_parquet
from deepmath.llmstage import (
    first_text,
    run_stage_requests,
    stage_llm,
    stage_parser,
    user_requests,
)
from deepmath.prompts import load_prompt
from deepmath.verdicts import parse_topic

log = logging.getLogger("deepmath.topics")


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(
        "topics",
        "Classify each question into a hierarchical topic (A -> B -> C).",
        "verified shard parquet",
    )
    args = parser.parse_args(argv)
    setup_logging()
    spec = json.loads(args.spec)
    tree: list[str] = spec["tree"]
    table = pd.read_parquet(args.inp)
    prompt = load_prompt(args.prompt, ("question", "topics"))
    listing = "\n".join(f"- {t}" for t in tree)
    llm = stage_llm(args)
    role = llm.role
    rows = [{"question": q, "topics": listing} for q in table["question"]]
    requests = user_requests(role, prompt, rows)
    responses = run_stage_requests(llm, requests)
    topics = [parse_topic(first_text(r), tree) for r in responses]
    unparsed = sum(t is None for t in topics)
    table["topic"] = text_column((t or spec["fallback"] for t in topics), table.index)
    parsed = [t is not None for t in topics]
    table["topic_parsed"] = pd.Series(parsed, index=table.index, dtype=bool)
    counts = table["topic"].value_counts()
    stats = {
        "questions": int(len(table)),
        "unparseable": int(unparsed),
        "topics": {k: int(v) for k, v in counts.items()},
    }
    log.info(
        "classified %d questions (%d unreadable -> %s)", len(table), unparsed, spec["fallback"]
    )
    write_parquet(table, args.out)
    write_json(stats, args.stats)


if __name__ == "__main__":
    run_cli(main)
