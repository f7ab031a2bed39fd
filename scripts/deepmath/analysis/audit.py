"""Audit of a dataset in the DeepMath-103K schema: does it hold up to its own evidence?

A published dataset carries its answer (``final_answer``) and the solutions it was verified
with (``r1_solution_*``). The audit re-reads both with this workflow's tools:

- each solution's final answer (:func:`deepmath.verify.final_of`, the verification policy) is
  compared with ``final_answer`` by the shared checker (:func:`deepmath.answers.check_pairs`,
  bounded in time); every disagreeing (row, solution) pair is listed with both answers;
- the questions are decontaminated with the curation's own code (embeddings, top-k
  neighbours, string pre-check, LLM judge) against a benchmark set that may include sets
  released after the dataset (the rules in rules/audit.smk; this module reads the result);
- boolean, multiple-choice and proof-like items are flagged with the answer-type profile
  (:func:`deepmath.analysis.profile.answer_type`);
- a cleaned copy in the same schema leaves out what the config's ``drop`` names, and an audit
  card records the counts, examples, the exact config and the tool versions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from deepmath.analysis.profile import answer_type
from deepmath.dataset import markdown_table
from deepmath.io import DeepmathError

# A row's answer status: how its solutions' answers compare with its final_answer.
STATUSES = ("all_agree", "some_disagree", "none_agree", "no_solution_answer", "no_final_answer")
# What a cleaned copy can leave out: a contamination match, an answer status, a flagged kind.
FLAGS = ("boolean", "choice", "proof")
DROPPABLE = ("contaminated", "none_agree", "some_disagree", "no_solution_answer",
             "no_final_answer", *FLAGS)  # fmt: skip


def with_ids(table: pd.DataFrame) -> pd.DataFrame:
    """The table with an ``id`` per row (its position): duplicate questions stay distinct rows,
    and the id is the same on every rerun because the loaded row order is."""
    out = table.reset_index(drop=True).copy()
    out.insert(0, "id", [f"row-{i:07d}" for i in range(len(out))])
    return out


def _blank(value: Any) -> bool:
    """No answer: null, NaN or only spaces (a number is an answer, as its text)."""
    if value is None or (isinstance(value, float) and value != value):
        return True
    return not str(value).strip()


def solution_answers(table: pd.DataFrame) -> tuple[list[str], list[list[str | None]]]:
    """The solution columns and, per row, each solution's final answer (None if it has none)."""
    from deepmath.verify import final_of, solution_columns

    cols = solution_columns(table)
    if not cols:
        raise DeepmathError(
            f"no r1_solution_* columns to audit the answers with (has: {', '.join(table.columns)})"
        )
    return cols, [[final_of(v) for v in row] for row in table[cols].itertuples(index=False)]


def status_of(final_blank: bool, present: int, agreeing: int) -> str:
    """One of :data:`STATUSES` for a row with ``present`` solution answers, ``agreeing`` of
    which the checker found equivalent to the final answer."""
    if final_blank:
        return "no_final_answer"
    if present == 0:
        return "no_solution_answer"
    if agreeing == present:
        return "all_agree"
    return "none_agree" if agreeing == 0 else "some_disagree"


def answer_checks(
    table: pd.DataFrame,
    timeout_s: float = 5.0,
    workers: int | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per row the solutions' answers, their verdicts and the row's status; and the long
    table of every disagreeing (row, solution) pair with both answers and the reason.

    ``table`` has ``id``, ``question``, ``final_answer`` and ``r1_solution_*``.
    """
    from deepmath.answers import check_pairs

    cols, answers = solution_answers(table)
    finals = table["final_answer"].tolist()
    jobs: list[tuple[int, int]] = []
    pairs: list[tuple[str, str]] = []
    for row, (final, row_answers) in enumerate(zip(finals, answers, strict=True)):
        if _blank(final):
            continue
        for k, ans in enumerate(row_answers):
            if ans is not None:
                jobs.append((row, k))
                pairs.append((ans, str(final)))
    results = (
        check_pairs(pairs, timeout_s=timeout_s, workers=workers, extract=False, progress=progress)
        if pairs
        else []
    )
    verdict: dict[tuple[int, int], tuple[bool, str]] = {
        job: (bool(r.equivalent), r.reason) for job, r in zip(jobs, results, strict=True)
    }
    out = table[["id", "question", "final_answer"]].copy()
    for k in range(len(cols)):
        out[f"answer_{k + 1}"] = [a[k] for a in answers]
        out[f"agree_{k + 1}"] = [
            verdict[(row, k)][0] if (row, k) in verdict else None for row in range(len(table))
        ]
    present = [sum((row, k) in verdict for k in range(len(cols))) for row in range(len(table))]
    agreeing = [
        sum(verdict.get((row, k), (False, ""))[0] for k in range(len(cols)))
        for row in range(len(table))
    ]
    out["checked"] = present
    out["agreeing"] = agreeing
    out["status"] = [
        status_of(_blank(f), p, a) for f, p, a in zip(finals, present, agreeing, strict=True)
    ]
    rows = [
        {
            "id": table["id"].iat[row],
            "question": table["question"].iat[row],
            "final_answer": finals[row],
            "solution": cols[k],
            "solution_answer": answers[row][k],
            "reason": reason,
        }
        for (row, k), (same, reason) in verdict.items()
        if not same
    ]
    disagreements = pd.DataFrame(
        rows, columns=["id", "question", "final_answer", "solution", "solution_answer", "reason"]
    )
    return out, disagreements


def answer_stats(checks: pd.DataFrame, disagreements: pd.DataFrame) -> dict[str, Any]:
    """Counts per status, the agreement share over checked solutions, timeouts."""
    checked = int(checks["checked"].sum())
    agreeing = int(checks["agreeing"].sum())
    return {
        "rows": int(len(checks)),
        "status": {s: int((checks["status"] == s).sum()) for s in STATUSES},
        "solutions_checked": checked,
        "solutions_agreeing": agreeing,
        "agreement_share": round(agreeing / checked, 4) if checked else None,
        "disagreeing_pairs": int(len(disagreements)),
        "timeouts": int((disagreements["reason"] == "timeout").sum()) if len(disagreements) else 0,
    }


def flags(table: pd.DataFrame) -> pd.DataFrame:
    """``id``, the answer type and one boolean column per flagged kind (:data:`FLAGS`)."""
    types = [
        answer_type(q, a) for q, a in zip(table["question"], table["final_answer"], strict=True)
    ]
    out = pd.DataFrame({"id": table["id"].to_numpy(), "answer_type": types})
    for kind in FLAGS:
        out[kind] = out["answer_type"] == kind
    return out


def dropped(
    checks: pd.DataFrame,
    flagged: pd.DataFrame,
    contaminated: set[str],
    drop: Sequence[str],
) -> pd.DataFrame:
    """Per row (``id``) whether each reason in ``drop`` applies, and ``drop`` (any of them)."""
    unknown = [d for d in drop if d not in DROPPABLE]
    if unknown:
        raise DeepmathError(
            f"drop: {', '.join(map(repr, unknown))} not allowed; allowed values: "
            f"{', '.join(DROPPABLE)}"
        )
    ids = checks["id"]
    out = pd.DataFrame({"id": ids.to_numpy()})
    by_id = flagged.set_index("id")
    for reason in drop:
        if reason == "contaminated":
            hit = ids.isin(contaminated).to_numpy()
        elif reason in FLAGS:
            hit = by_id.loc[ids, reason].to_numpy(dtype=bool)
        else:
            hit = (checks["status"] == reason).to_numpy()
        out[reason] = hit
    out["drop"] = out[list(drop)].any(axis=1) if drop else False
    return out


def summary(
    name: str,
    label: str,
    answers: Mapping[str, Any],
    flagged: pd.DataFrame,
    decontam: Mapping[str, Any],
    drops: pd.DataFrame,
    drop: Sequence[str],
) -> dict[str, Any]:
    """Every count of the audit in one mapping (the audit card's numbers)."""
    rows = int(len(flagged))
    kinds = flagged["answer_type"].value_counts()
    return {
        "name": name,
        "label": label,
        "rows": rows,
        "answers": dict(answers),
        "flags": {k: int(flagged[k].sum()) for k in FLAGS},
        "flag_shares": {k: round(float(flagged[k].mean()), 4) if rows else 0.0 for k in FLAGS},
        "answer_types": {str(k): int(v) for k, v in kinds.items()},
        "contamination": {
            "contaminated": int(decontam.get("contaminated", 0)),
            "by_string_precheck": int(decontam.get("by_string_precheck", 0)),
            "by_judge": int(decontam.get("by_judge", 0)),
            "by_benchmark": dict(decontam.get("contaminated_by_benchmark") or {}),
        },
        "drop": list(drop),
        "dropped_by": {r: int(drops[r].sum()) for r in drop},
        "dropped": int(drops["drop"].sum()),
        "kept": int(rows - drops["drop"].sum()),
    }


def _short(text: Any, limit: int = 160) -> str:
    s = " ".join(str(text).split()) if text is not None else ""
    return s if len(s) <= limit else s[: limit - 1] + "…"


def audit_card(
    stats: Mapping[str, Any],
    disagreements: pd.DataFrame,
    contaminated: pd.DataFrame,
    flagged_examples: pd.DataFrame,
    spec: Mapping[str, Any],
    versions: Mapping[str, str],
    examples: int = 5,
) -> str:
    """The audit card (Markdown): what was checked, every count, examples, config, versions."""
    ans = stats["answers"]
    st = ans["status"]
    share = ans["agreement_share"]
    lines = [
        f"# Audit: {stats['label']}",
        "",
        f"{stats['rows']} rows audited; the cleaned copy keeps {stats['kept']} and leaves out "
        f"{stats['dropped']} (a row is left out when any of these holds: "
        f"{', '.join(stats['drop']) or 'none configured'}).",
        "",
        "## Answers against their own solutions",
        "",
        f"Each `r1_solution_*`'s final answer compared with `final_answer` by the shared checker: "
        f"{ans['solutions_agreeing']} of {ans['solutions_checked']} solutions agree"
        + (f" ({100 * share:.2f}%)." if share is not None else "."),
        "",
        markdown_table(["status", "rows"], [(s, st[s]) for s in STATUSES]),
        "",
    ]
    if len(disagreements):
        lines += [
            f"First {min(examples, len(disagreements))} of {len(disagreements)} disagreeing "
            "solutions (all in disagreements.csv):",
            "",
            markdown_table(
                ["id", "question", "final_answer", "solution", "its answer", "reason"],
                [
                    (
                        r.id,
                        _short(r.question, 100),
                        _short(r.final_answer, 40),
                        r.solution,
                        _short(r.solution_answer, 40),
                        r.reason,
                    )  # fmt: skip
                    for r in disagreements.head(examples).itertuples()
                ],
            ),
            "",
        ]
    con = stats["contamination"]
    lines += [
        "## Contamination",
        "",
        f"{con['contaminated']} questions match a benchmark item ({con['by_string_precheck']} by "
        f"the string pre-check, {con['by_judge']} by the LLM judge), benchmarks: "
        f"{', '.join(spec.get('benchmarks') or [])}.",
        "",
    ]
    if con["by_benchmark"]:
        lines += [
            markdown_table(["benchmark", "questions"], sorted(con["by_benchmark"].items())),
            "",
        ]
    if len(contaminated):
        lines += [
            markdown_table(
                ["id", "question", "benchmark", "benchmark item", "cosine", "by"],
                [
                    (
                        r.id,
                        _short(r.question, 100),
                        r.bench,
                        _short(r.bench_problem, 100),
                        f"{r.score:.3f}",
                        r.by,
                    )  # fmt: skip
                    for r in contaminated.head(examples).itertuples()
                ],
            ),
            "",
        ]
    lines += [
        "## Flagged answer kinds",
        "",
        markdown_table(
            ["kind", "rows", "share"],
            [(k, stats["flags"][k], f"{100 * stats['flag_shares'][k]:.2f}%") for k in FLAGS],
        ),
        "",
    ]
    if len(flagged_examples):
        lines += [
            markdown_table(
                ["id", "kind", "question", "final_answer"],
                [
                    (r.id, r.answer_type, _short(r.question, 100), _short(r.final_answer, 40))
                    for r in flagged_examples.itertuples()
                ],
            ),
            "",
        ]
    lines += [
        "## Cleaned copy",
        "",
        markdown_table(["left out because", "rows"], sorted(stats["dropped_by"].items())),
        "",
        "A row is left out when any of the reasons applies; the copy has the same columns and "
        "types as the audited dataset (data/train-*.parquet).",
        "",
        "## Source",
        "",
        source_line(stats.get("hub"), spec.get("load") or {}),
        "",
        "## Config",
        "",
        "```json",
        json.dumps(spec, indent=2, sort_keys=True, default=str),
        "```",
        "",
        "## Versions",
        "",
        markdown_table(["tool", "version"], sorted(versions.items())),
        "",
    ]
    return "\n".join(lines)


def source_line(hub: Mapping[str, Any] | None, load: Mapping[str, Any]) -> str:
    """Where the audited rows came from: the hub commit the pull loaded (a floating revision
    such as ``main`` is named with the commit it was locked to), or the local files."""
    if hub:
        pinned = hub["revision"] == hub["commit"]
        how = "pinned in the config" if pinned else "the commit the run's hub lock holds"
        return (
            f"Hub dataset `{hub['repo']}`, revision `{hub['revision']}`, commit "
            f"`{hub['commit']}` ({how})."
        )
    files = load.get("data_files")
    return f"Local files: `{files}`." if files else f"`{load.get('path')}`."


def flagged_examples(table: pd.DataFrame, flagged: pd.DataFrame, per_kind: int = 2) -> pd.DataFrame:
    """A few rows of each flagged kind, in row order (for the card)."""
    joined = table[["id", "question", "final_answer"]].merge(flagged, on="id")
    picked = [joined[joined[k]].head(per_kind) for k in FLAGS]
    return pd.concat(picked)[["id", "answer_type", "question", "final_answer"]]
