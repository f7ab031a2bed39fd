"""Scoring: every sample checked by the shared answer checker, then metrics.json.

The checker (:mod:`deepmath.answers`) runs in bounded worker processes on all cores, with the
evaluation policy named in ``scoring.policy`` (``eval``: the authors' ``uni_eval`` rule, the OR
of the last ``\\boxed{}``, "The answer is" and math-verify over the whole response, thinking
included) and each benchmark's rule from ``scoring.rules`` on top: the part of the response
searched (``text``), OlympiadBench's and PolyMath's own judges OR-ed in (``judges``), choice
letters for multiple choice (``choice``), and the olympiad judge's tolerance (``precision``,
a problem's own where the benchmark gives one). Every sample is also read the other way
(whole response vs after ``</think>``) so metrics.json can say how many samples the choice of
reading changes. See :mod:`deepmath.metrics` for the metric definitions.

The scored rows (``generations.parquet``) keep, per sample, the response, the extracted
answer, the verdict, its reason and the comparator that decided, so wrong answers can be
filtered without rerunning anything.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from deepmath.evaluate.spec import TEXTS, EvalSpec, scoring_rule
from deepmath.io import DeepmathError, write_json, write_parquet
from deepmath.metrics import majority_vote, percent, summarize

log = logging.getLogger("deepmath.evaluate")

_MAX_MAJ_KEYS = 64  # distinct answers per problem compared pairwise for maj@n grouping


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def vote_key(pred: str | None) -> str | None:
    """The maj@n grouping key of an extracted answer: its normalised, space-free spelling."""
    from deepmath.answers import normalize_answer

    if _missing(pred) or not pred:
        return None
    key = re.sub(r"\s+", "", normalize_answer(pred))
    return key or None


def scoring_policy(scoring: Mapping[str, Any], bench: str, text: str | None = None) -> Any:
    """The checker policy one benchmark is scored with: the configured policy (``eval``: the
    authors' OR of the last box, "The answer is" and math-verify on the full text) with the
    benchmark's rule applied; ``text`` overrides the part of the response searched."""
    from deepmath.answers import POLICIES

    rule = scoring_rule(scoring, bench)
    return POLICIES[scoring.get("policy", "eval")].but(
        think=TEXTS[text or rule["text"]],
        judges=rule["judges"],
        choice=bool(rule["choice"]),
        precision=rule["precision"],
    )


def _pairs(texts: Sequence[str], golds: Sequence[str], precision: Sequence[Any]) -> list[tuple]:
    """(response, gold[, per-pair options]): a problem's own tolerance travels with its pair."""
    out: list[tuple] = []
    for text, gold, prec in zip(texts, golds, precision, strict=True):
        if _missing(prec):
            out.append((text, gold))
        else:
            out.append((text, gold, {"precision": float(prec)}))
    return out


def score_samples(
    frame: pd.DataFrame,
    scoring: Mapping[str, Any],
    *,
    bench: str | None = None,
    progress: bool = False,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check every sample; return the scored rows and the maj@n grouping per problem.

    Adds ``correct``, ``reason``, ``pred``, ``method`` (the configured reading) and
    ``correct_whole`` / ``correct_after_think`` (both readings of the response, for the
    disagreement report) to a copy of ``frame``. Returns ``{problem id: [(key_a, key_b), ...]}``
    equivalence links among the distinct answers of a problem when ``maj_equivalence`` is on.
    """
    from deepmath.answers import CheckerPool

    frame = frame.reset_index(drop=True).copy()
    bench = bench or (str(frame["bench"].iloc[0]) if len(frame) else "")
    rule = scoring_rule(scoring, bench)
    texts = ["" if _missing(r) else str(r) for r in frame["response"]]
    golds = ["" if a is None else str(a) for a in frame["answer"]]
    precision = list(frame["precision"]) if "precision" in frame else [None] * len(frame)
    pairs = _pairs(texts, golds, precision)
    pool = CheckerPool(
        scoring.get("workers"),
        timeout_s=float(scoring.get("timeout_s", 5.0)),
        memory_mb=scoring.get("memory_mb", 4096),
    )
    with pool:
        results = pool.map(pairs, policy=scoring_policy(scoring, bench), progress=progress)
        frame["correct"] = [r.equivalent for r in results]
        frame["reason"] = [r.reason for r in results]
        frame["pred"] = [r.pred for r in results]
        frame["method"] = [r.method for r in results]
        frame["vote_key"] = [vote_key(r.pred) for r in results]
        # The other reading of the same responses: only a response with a </think> can be
        # read differently, so only those are checked again.
        other = "after_think" if rule["text"] == "whole" else "whole"
        again = [i for i, t in enumerate(texts) if "</think>" in t]
        verdicts = list(frame["correct"])
        if again:
            redo = pool.map([pairs[i] for i in again], policy=scoring_policy(scoring, bench, other))
            for i, res in zip(again, redo, strict=True):
                verdicts[i] = res.equivalent
        frame[f"correct_{rule['text']}"] = list(frame["correct"])
        frame[f"correct_{other}"] = verdicts
        links: dict[Any, list[tuple[str, str]]] = {}
        if scoring.get("maj_equivalence", True):
            links = _equivalence_links(frame, pool)
    return frame, links


def _equivalence_links(frame: pd.DataFrame, pool: Any) -> dict[Any, list[tuple[str, str]]]:
    """Pairs of distinct answers of the same problem that the checker finds equivalent."""
    pairs: list[tuple[Any, str, str]] = []
    checks: list[tuple[str, str]] = []
    for pid, group in frame.groupby("id", sort=False):
        preds: dict[str, str] = {}
        for key, pred in zip(group["vote_key"], group["pred"], strict=True):
            if not _missing(key) and key not in preds:
                preds[key] = pred
        keys = list(preds)[:_MAX_MAJ_KEYS]
        for a in range(len(keys)):
            for b in range(a + 1, len(keys)):
                pairs.append((pid, keys[a], keys[b]))
                checks.append((preds[keys[a]], preds[keys[b]]))
    links: dict[Any, list[tuple[str, str]]] = {}
    if not checks:
        return links
    for (pid, a, b), res in zip(pairs, pool.map(checks, extract=False), strict=True):
        if res.equivalent:
            links.setdefault(pid, []).append((a, b))
    return links


def metrics_from_scored(
    scored: pd.DataFrame,
    links: Mapping[Any, Sequence[tuple[str, str]]],
    spec: EvalSpec,
) -> dict[str, Any]:
    """metrics.json from the scored samples."""
    ordered = scored.sort_values(["sample"], kind="stable")
    problems = list(dict.fromkeys(scored["id"]))
    groups = {pid: g for pid, g in ordered.groupby("id", sort=False)}
    sizes = {len(g) for g in groups.values()}
    if len(sizes) != 1:
        raise DeepmathError(f"problems have different numbers of samples: {sorted(sizes)}")
    n = sizes.pop()
    for pid, g in groups.items():
        if sorted(g["sample"]) != list(range(n)):
            got = sorted(g["sample"])
            raise DeepmathError(f"problem {pid!r} has samples {got}, expected 0..{n - 1}")
    matrix = [list(groups[p]["correct"].astype(bool)) for p in problems]
    maj = []
    for pid in problems:
        g = groups[pid]
        keys = [None if _missing(k) else k for k in g["vote_key"]]
        idx = majority_vote(keys, links.get(pid, ()))
        maj.append(bool(idx is not None and g["correct"].iloc[idx]))
    cats = [groups[p]["category"].iloc[0] for p in problems]
    rule = scoring_rule(spec.scoring, str(scored["bench"].iloc[0]))
    ks = [k for k in spec.scoring["pass_k"] if k <= n]
    out = summarize(matrix, ks=ks, maj_correct=maj, categories=cats)
    reasons = Counter(scored["reason"])
    finished = (
        pd.to_numeric(scored["finished_at"], errors="coerce").dropna()
        if "finished_at" in scored
        else pd.Series([], dtype=float)
    )
    first = ordered.iloc[0]  # a sample 0: its seed is the base seed
    sampling = json.loads(first["sampling_params"]) if "sampling_params" in first else {}
    sampling.update({"n": n, "seed_rule": "sample i uses seed + i"})
    out.update(
        {
            "model_name": str(first.get("model_name", spec.model_name)),
            "label": spec.label,
            "bench": str(first["bench"]),
            "counts": {
                "correct": int(scored["correct"].sum()),
                "mismatch": int(reasons.get("mismatch", 0)),
                "no_answer": int(reasons.get("no_answer", 0)),
                "timeout": int(reasons.get("timeout", 0)),
                "error": int(reasons.get("error", 0)),
                "answer_is_rescued": int((scored["method"] == "answer_is").sum()),
                "truncated": int((scored["finish_reason"] == "length").sum()),
            },
            "tokens": {
                "mean": round(float(scored["tokens"].mean()), 1),
                "max": int(scored["tokens"].max()),
            },
            "maj_grouping": "equivalence" if spec.scoring["maj_equivalence"] else "normalised",
            "engine": first.get("engine"),
            "model_identity": first.get("model_identity"),
            "vllm_version": first.get("vllm_version"),
            "sampling": sampling,
            "system_prompt": bool(first.get("system_prompt", False)),
            "generated_at": (
                datetime.fromtimestamp(float(finished.max()), UTC).isoformat(timespec="seconds")
                if len(finished)
                else None
            ),
            "scored_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "scoring": {
                "policy": spec.scoring.get("policy", "eval"),
                **{k: list(v) if k == "judges" else v for k, v in rule.items()},
                "timeout_s": spec.scoring["timeout_s"],
            },
            "text_rules": text_rules(scored, groups, problems),
        }
    )
    return out


def text_rules(
    scored: pd.DataFrame, groups: Mapping[Any, pd.DataFrame], problems: Sequence[Any]
) -> dict[str, Any] | None:
    """How much the part of the response searched matters: pass@1 under each reading and how
    many samples the two readings score differently (each way)."""
    if "correct_whole" not in scored or "correct_after_think" not in scored:
        return None
    whole = scored["correct_whole"].astype(bool)
    after = scored["correct_after_think"].astype(bool)

    def p1(column: str) -> float:
        return percent(float(np.mean([groups[p][column].astype(bool).mean() for p in problems])))

    return {
        "whole": p1("correct_whole"),
        "after_think": p1("correct_after_think"),
        "samples_differ": int((whole != after).sum()),
        "only_whole": int((whole & ~after).sum()),
        "only_after_think": int((after & ~whole).sum()),
        "samples": int(len(scored)),
    }


def score(
    generations: str | os.PathLike[str],
    spec: EvalSpec,
    *,
    out: str | os.PathLike[str],
    scored_out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a generations table; write metrics.json (and the scored rows)."""
    frame = pd.read_parquet(generations)
    if frame.empty:
        raise DeepmathError(f"{generations} has no rows")
    missing = [
        c for c in ("id", "bench", "answer", "response", "sample", "category") if c not in frame
    ]
    if missing:
        raise DeepmathError(f"{generations} lacks column(s) {missing}")
    t0 = time.monotonic()
    scored, links = score_samples(frame, spec.scoring, progress=progress)
    metrics = metrics_from_scored(scored, links, spec)
    # the hub commits of the benchmark and the model, as generation recorded them
    metrics["hub"] = frame.attrs.get("hub") or {"bench": None, "model": None}
    log.info(
        "%s on %s: pass@1 %.1f ± %.1f (n=%d, %d problems), maj@n %.1f; scored in %.1f s",
        metrics["model_name"],
        metrics["bench"],
        metrics["pass@1"],
        metrics["pass@1_std"],
        metrics["n"],
        metrics["problems"],
        metrics["maj@n"],
        time.monotonic() - t0,
    )
    if scored_out:
        write_parquet(scored, scored_out)
    write_json(metrics, out)
    return metrics
