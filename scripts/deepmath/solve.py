"""solve: k solutions per question from the solver role (paper: 3 from DeepSeek-R1).

Each solution is stored whole (reasoning included), with its finish reason, so verification
can tell a truncated solution from a wrong one.
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from deepmath.io import run_cli, setup_logging, write_json, write_parquet
from deepmath.llm import full_text
from deepmath.llmstage import run_stage_requests, stage_llm, stage_parser, user_requests
from deepmath.prompts import load_prompt

log = logging.getLogger("deepmath.solve")


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(
        "solve",
        "Write k solutions per question with the solver role.",
        "rewritten shard parquet",
    )
    args = parser.parse_args(argv)
    setup_logging()
    samples = int(json.loads(args.spec)["samples"])
    table = pd.read_parquet(args.inp)
    prompt = load_prompt(args.prompt, ("question",))
    llm = stage_llm(args)
    role = llm.role
    requests = user_requests(role, prompt, table[["question"]].to_dict("records"), samples)
    responses = run_stage_requests(llm, requests)
    for i in range(samples):
        picked = responses[i::samples]
        table[f"r1_solution_{i + 1}"] = [full_text(r) for r in picked]
        table[f"finish_reason_{i + 1}"] = [
            (r.finish_reasons or [None])[0] if r.texts else None for r in picked
        ]
    truncated = sum(
        int((table[f"finish_reason_{i + 1}"] == "length").sum()) for i in range(samples)
    )
    stats = {"questions": int(len(table)), "solutions": len(responses), "truncated": truncated}
    log.info(
        "%d solutions for %d questions (%d hit max_tokens)", len(responses), len(table), truncated
    )
    write_parquet(table, args.out)
    write_json(stats, args.stats)


if __name__ == "__main__":
    run_cli(main)
