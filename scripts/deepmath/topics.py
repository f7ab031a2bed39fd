"""classify_topic: one Omni-MATH-style hierarchical topic per question, from a fixed tree.

The allowed paths live in config (``topics.tree``); an answer that names no allowed path is
counted as unparseable and gets the configured fallback topic.
"""

from __future__ import annotations

import argparse
import json
import logging

import pandas as pd

from deepmath.io import run_cli, setup_logging, write_json, write_parquet
from deepmath.llm import make_request
from deepmath.llmstage import add_llm_args, build_role, first_text, run_stage_requests
from deepmath.prompts import load_prompt
from deepmath.verdicts import parse_topic

log = logging.getLogger("deepmath.topics")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.topics",
        description="Classify each question into a hierarchical topic (A -> B -> C).",
    )
    parser.add_argument("--in", dest="inp", required=True, help="verified shard parquet")
    parser.add_argument("--spec", required=True, help="config topics, as JSON")
    parser.add_argument("--out", required=True, help="output parquet")
    parser.add_argument("--stats", required=True, help="output stats JSON")
    add_llm_args(parser)
    args = parser.parse_args(argv)
    setup_logging()
    spec = json.loads(args.spec)
    tree: list[str] = spec["tree"]
    table = pd.read_parquet(args.inp)
    prompt = load_prompt(args.prompt, ("question", "topics"))
    listing = "\n".join(f"- {t}" for t in tree)
    role = build_role(args)
    requests = [
        make_request(
            role,
            [{"role": "user", "content": prompt.render({"question": q, "topics": listing})}],
        )
        for q in table["question"]
    ]
    responses = run_stage_requests(args, role, requests)
    topics = [parse_topic(first_text(r), tree) for r in responses]
    unparsed = sum(t is None for t in topics)
    table["topic"] = [t or spec["fallback"] for t in topics]
    table["topic_parsed"] = [t is not None for t in topics]
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
