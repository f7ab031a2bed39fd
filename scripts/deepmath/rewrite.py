"""rewrite_questions: drop proofs and open-ended items; rewrite forum posts to one question.

The original text stays next to the rewrite. Two flags mark the paper's known leak: answers
that are Yes/No/True/False, and questions that still read like proofs.
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
from deepmath.verdicts import is_proof_like, is_yes_no, parse_rewrite

log = logging.getLogger("deepmath.rewrite")


def apply_rewrites(
    table: pd.DataFrame, texts: list[str | None], on_unparseable: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept rows, all rows), with the rewrite columns and the two flags added."""
    verdicts = [parse_rewrite(t) for t in texts]
    out = table.copy()
    out["original_question"] = out["question"]
    out["rewrite_status"] = [
        "unparseable" if v is None else ("keep" if v.keep else "drop") for v in verdicts
    ]
    out["rewrite_reason"] = text_column((v.reason if v else None for v in verdicts), out.index)
    out["rewrite_answer"] = text_column((v.answer if v else None for v in verdicts), out.index)
    out["question"] = [
        v.question if v is not None and v.keep and v.question else q
        for v, q in zip(verdicts, out["question"], strict=True)
    ]
    answers = out["rewrite_answer"].where(out["rewrite_answer"].notna(), out["reference_answer"])
    out["flag_yes_no"] = [is_yes_no(a) for a in answers]
    out["flag_proof_like"] = [is_proof_like(q) for q in out["question"]]
    keep = out["rewrite_status"] == "keep"
    if on_unparseable == "keep":
        keep |= out["rewrite_status"] == "unparseable"
    return out[keep].reset_index(drop=True), out


def main(argv: list[str] | None = None) -> None:
    parser = stage_parser(
        "rewrite",
        "Drop proof/open-ended items and rewrite the rest to one verifiable question.",
        "difficulty shard parquet",
    )
    args = parser.parse_args(argv)
    setup_logging()
    spec = json.loads(args.spec)
    table = pd.read_parquet(args.inp)
    prompt = load_prompt(args.prompt, ("question", "reference_answer"))
    llm = stage_llm(args)
    role = llm.role
    rows = table[["question", "reference_answer"]].to_dict("records")
    requests = user_requests(role, prompt, rows)
    responses = run_stage_requests(llm, requests)
    kept, everything = apply_rewrites(
        table, [first_text(r) for r in responses], spec.get("on_unparseable", "drop")
    )
    status = everything["rewrite_status"].value_counts()
    stats = {
        "questions": int(len(table)),
        "kept": int(len(kept)),
        "verdicts": {k: int(v) for k, v in status.items()},
        "rewritten": int((kept["question"] != kept["original_question"]).sum()),
        "flag_yes_no": int(kept["flag_yes_no"].sum()),
        "flag_proof_like": int(kept["flag_proof_like"].sum()),
    }
    log.info("kept %d of %d questions; verdicts %s", len(kept), len(table), stats["verdicts"])
    write_parquet(kept, args.out)
    write_json(stats, args.stats)


if __name__ == "__main__":
    run_cli(main)
