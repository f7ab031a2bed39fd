"""judge_contamination and decontaminate: the LLM half of decontamination.

judge: every (pool question, benchmark neighbour) pair that the string pre-check did not settle
goes to the judge twice, once in each order (the paper's guard against position bias); any
"same" marks the pair contaminated. Unreadable verdicts follow the config policy (default:
conservative, i.e. contaminated).

apply: the shard's clean questions, and a table of the contaminated ones with their match.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

import pandas as pd

from deepmath.io import run_cli, setup_logging, write_json, write_parquet
from deepmath.llm import make_request
from deepmath.llmstage import add_llm_args, first_text, run_stage_requests, stage_llm
from deepmath.prompts import load_prompt
from deepmath.verdicts import parse_judge

log = logging.getLogger("deepmath.decontaminate")

JUDGE_SLOTS = ("problem1", "problem2")


def pairs_to_judge(neighbors: pd.DataFrame, min_score: float | None) -> pd.Series:
    """Mask of neighbour rows the LLM must judge.

    A question the string pre-check already flagged is contaminated whatever its other pairs
    say, so none of its pairs is judged; the rest are, if close enough.
    """
    settled = neighbors.groupby("id")["precheck"].transform("any").astype(bool)
    mask = ~settled
    if min_score is not None:
        mask &= neighbors["score"] >= min_score
    return mask


def judge_table(
    neighbors: pd.DataFrame,
    verdicts_ab: list[bool | None],
    verdicts_ba: list[bool | None],
    judged: pd.Series,
    unparseable: str,
) -> pd.DataFrame:
    """Neighbour rows with both verdicts and the pair's final contamination decision."""
    table = neighbors.copy()
    ab = pd.Series([None] * len(table), index=table.index, dtype=object)
    ba = ab.copy()
    ab[judged[judged].index] = verdicts_ab
    ba[judged[judged].index] = verdicts_ba
    table["judged"] = judged
    table["verdict_ab"] = ab
    table["verdict_ba"] = ba
    said_same = (ab == True) | (ba == True)  # noqa: E712 (object column: None stays False)
    unclear = judged & (ab.isna() | ba.isna())
    table["unparseable"] = unclear
    table["contaminated"] = table["precheck"].astype(bool) | said_same
    if unparseable == "contaminated":
        table["contaminated"] |= unclear & ~said_same
    return table


def apply_decontamination(
    pool: pd.DataFrame, judged: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Clean pool rows, the contamination report (best match per question), and counts."""
    hits = judged[judged["contaminated"]]
    dirty_ids = set(hits["id"])
    clean = pool[~pool["id"].isin(dirty_ids)].reset_index(drop=True)
    report = (
        hits.assign(by=hits["precheck"].map({True: "string", False: "judge"}))
        .sort_values(["id", "score"], ascending=[True, False])
        .drop_duplicates("id")[
            ["id", "question", "bench", "bench_id", "bench_problem", "score", "indel", "by"]
            + ["verdict_ab", "verdict_ba"]
        ]
        .reset_index(drop=True)
    )
    per_bench = hits.drop_duplicates(["id", "bench"])["bench"].value_counts().sort_index()
    stats = {
        "questions": int(len(pool)),
        "clean": int(len(clean)),
        "contaminated": int(len(dirty_ids)),
        "by_string_precheck": int((report["by"] == "string").sum()),
        "by_judge": int((report["by"] == "judge").sum()),
        "pairs_judged": int(judged["judged"].sum()),
        "unparseable_pairs": int(judged["unparseable"].sum()),
        "contaminated_by_benchmark": {k: int(v) for k, v in per_bench.items()},
    }
    return clean, report, stats


def judge_main(args: argparse.Namespace) -> None:
    neighbors = pd.read_parquet(args.neighbors)
    spec = json.loads(args.spec)
    mask = pairs_to_judge(neighbors, spec.get("judge_min_score"))
    todo = neighbors[mask]
    prompt = load_prompt(args.prompt, JUDGE_SLOTS)
    llm = stage_llm(args)
    role = llm.role
    requests = []
    for q, b in zip(todo["question"], todo["bench_problem"], strict=True):
        for first, second in ((q, b), (b, q)):
            text = prompt.render({"problem1": first, "problem2": second})
            requests.append(make_request(role, [{"role": "user", "content": text}]))
    log.info(
        "%d of %d pairs settled by the string pre-check or below judge_min_score; judging %d "
        "pairs in both orders",
        int((~mask).sum()),
        len(neighbors),
        len(todo),
    )
    responses = run_stage_requests(llm, requests)
    verdicts = [parse_judge(first_text(r)) for r in responses]
    table = judge_table(
        neighbors, verdicts[0::2], verdicts[1::2], mask, spec.get("unparseable", "contaminated")
    )
    n_bad = int(table["unparseable"].sum())
    if n_bad:
        log.warning(
            "%d judged pairs had an unreadable verdict (policy: %s)",
            n_bad,
            spec.get("unparseable", "contaminated"),
        )
    write_parquet(table, args.out)


def apply_main(args: argparse.Namespace) -> None:
    clean, report, stats = apply_decontamination(
        pd.read_parquet(args.pool), pd.read_parquet(args.judged)
    )
    log.info(
        "%d of %d questions contaminated (%d by string match, %d by the judge)",
        stats["contaminated"],
        stats["questions"],
        stats["by_string_precheck"],
        stats["by_judge"],
    )
    write_parquet(clean, args.out)
    write_parquet(report, args.report)
    write_json(stats, args.stats)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.decontaminate",
        description="LLM judge on benchmark neighbours, then drop contaminated questions.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    judge = sub.add_parser("judge", help="ask the judge about every unsettled pair")
    judge.add_argument("--neighbors", required=True, help="neighbours parquet of one shard")
    judge.add_argument("--spec", required=True, help="config decontamination, as JSON")
    judge.add_argument("--out", required=True, help="output judged parquet")
    add_llm_args(judge)
    apply = sub.add_parser("apply", help="write the clean shard and the contamination report")
    apply.add_argument("--pool", required=True, help="pool shard parquet")
    apply.add_argument("--judged", required=True, help="judged parquet of the shard")
    apply.add_argument("--out", required=True, help="output clean shard parquet")
    apply.add_argument("--report", required=True, help="output contaminated-questions parquet")
    apply.add_argument("--stats", required=True, help="output stats JSON")
    args = parser.parse_args(argv)
    setup_logging()
    judge_main(args) if args.command == "judge" else apply_main(args)


if __name__ == "__main__":
    run_cli(main)
