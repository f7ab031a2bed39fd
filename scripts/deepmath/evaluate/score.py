"""Scoring: every sample checked by two scorers in one pass, then metrics.json.

**The authors' scorer** (:mod:`deepmath.answers.authors`) reproduces the DeepMath authors'
``uni_eval`` verdict exactly, in their own pinned environment (``.venv-authors``), through
:class:`~deepmath.answers.authors.pool.AuthorsPool`: the OR of the last ``\\boxed{}``,
"The answer is: " and math-verify over the whole response, with OlympiadBench's official judge
(``olympiad``) or PolyMath's (``polymath``) OR-ed in for those benchmarks (``authors_rule``,
derived from the rule's ``judges`` unless set). GPQA-Diamond needs nothing more: the authors
score its choice letter with the general rule (the boxed letter against the gold letter).

**Our checker** (:mod:`deepmath.answers`) runs in bounded worker processes on all cores, with
the evaluation policy named in ``scoring.policy`` and each benchmark's rule from
``scoring.rules`` on top: the part of the response searched (``text``), OlympiadBench's and
PolyMath's judges OR-ed in (``judges``), choice letters for multiple choice (``choice``), and
the olympiad judge's tolerance (``precision``, a problem's own where the benchmark gives one).
Every sample is also read the other way (whole response vs after ``</think>``) so metrics.json
can say how many samples the choice of reading changes.

metrics.json carries both metric sets (``scorers.authors``, ``scorers.ours``), the samples the
two judge differently (``scorer_disagreement``, with a few examples each way) and the versions
of the authors' environment; ``evaluation.scoring.scorer`` only decides which set the results
table prints, so switching it reruns the table and nothing else. See :mod:`deepmath.metrics`
for the metric definitions.

The scored rows (``generations.parquet``) keep, per sample, the response and both verdicts:
ours (``correct_ours``, ``pred``, ``reason``, ``method``, ``correct_whole``,
``correct_after_think``) and the authors' (``correct_authors``, ``authors_pred``,
``authors_via``: the branch that accepted), so wrong answers can be filtered without rerunning
anything.
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


SCORERS = ("authors", "ours")  # evaluation.scoring.scorer: the verdict the results table prints
AUTHORS_RULES = ("general", "olympiad", "polymath")
EXAMPLES = 3  # disagreement examples kept per direction in metrics.json
TAIL = 600  # characters of a response's end kept with an example


def authors_rule(rule: Mapping[str, Any]) -> str:
    """The authors' rule of a benchmark: ``authors_rule`` when set, else the judge its rule ORs
    in (OlympiadBench's or PolyMath's, as the authors' scorer does for those two), else
    ``general``."""
    explicit = rule.get("authors_rule")
    if explicit:
        return str(explicit)
    judges = tuple(rule.get("judges") or ())
    return next((j for j in ("olympiad", "polymath") if j in judges), "general")


def authors_verdicts(
    texts: Sequence[str],
    golds: Sequence[str],
    rule: Mapping[str, Any],
    scoring: Mapping[str, Any],
    *,
    python: str | None = None,
    progress: bool = False,
) -> tuple[list[Any], dict[str, Any]]:
    """The authors' verdict of every (response, gold), and the environment that judged them:
    ``{"versions", "is_exact" (they are the authors' pinned ones), "python", "hash_seed",
    "timeout_s" (the hard deadline per pair), "workers" (the pool's processes)}``.

    The olympiad judge gets the rule's ``precision`` (the authors pass 1e-8 to every problem:
    a problem's own tolerance is our checker's refinement, not theirs).
    """
    from deepmath.answers.authors.pool import AuthorsPool, authors_python

    name = authors_rule(rule)
    precision = rule.get("precision") if name == "olympiad" else None
    items = [(t, g, name, precision) for t, g in zip(texts, golds, strict=True)]
    pool = AuthorsPool(
        python=authors_python(python),
        workers=scoring.get("workers"),
        memory_mb=scoring.get("memory_mb", 4096),
    )
    with pool:
        hello = pool.hello()
        env = {
            "versions": dict(hello.get("environment") or {}),
            "is_exact": bool(hello.get("exact")),
            "python": hello.get("python"),
            "hash_seed": hello.get("hash_seed"),
            "timeout_s": pool.timeout_s,
            "workers": pool.workers,
        }
        verdicts = pool.eval_verdicts(items, progress=progress) if items else []
    return verdicts, env


def job_workers(scoring: Mapping[str, Any], workers: int | None) -> int | None:
    """Worker processes of each pool: ``scoring.workers`` capped by the job's ``workers`` (the
    rule's threads, what the scheduler reserved), else those threads; None: the pools size
    themselves from the cores this process may use.

    Without the cap a local run starts a worker per core for each of the job's pools however
    many jobs run beside it, and the time-bounded verdicts (PolyMath's 1 s) flip under load.
    """
    configured = scoring.get("workers")
    if workers is None:
        return configured
    if workers < 1:
        raise DeepmathError(f"--workers {workers}: at least 1")
    return min(int(configured), workers) if configured else workers


def score_samples(
    frame: pd.DataFrame,
    scoring: Mapping[str, Any],
    *,
    bench: str | None = None,
    progress: bool = False,
    authors_python: str | None = None,
    workers: int | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check every sample with both scorers; return the scored rows and the maj@n grouping.

    Adds to a copy of ``frame`` our checker's ``correct_ours``, ``reason``, ``pred``,
    ``method`` (the configured reading) and ``correct_whole`` / ``correct_after_think`` (both
    readings of the response), and the authors' ``correct_authors``, ``authors_pred``,
    ``authors_via``; ``attrs["authors_env"]`` holds the authors' environment. Returns
    ``{problem id: [(key_a, key_b), ...]}`` equivalence links among the distinct answers of a
    problem when ``maj_equivalence`` is on. ``workers``: the job's threads (:func:`job_workers`).
    """
    scoring = {**scoring, "workers": job_workers(scoring, workers)}
    frame = frame.reset_index(drop=True).copy()
    bench = bench or (str(frame["bench"].iloc[0]) if len(frame) else "")
    rule = scoring_rule(scoring, bench)
    texts = ["" if _missing(r) else str(r) for r in frame["response"]]
    golds = ["" if a is None else str(a) for a in frame["answer"]]
    precision = list(frame["precision"]) if "precision" in frame else [None] * len(frame)
    links = _score_ours(frame, scoring, bench, rule, _pairs(texts, golds, precision), progress)
    verdicts, env = authors_verdicts(
        texts, golds, rule, scoring, python=authors_python, progress=progress
    )
    frame["correct_authors"] = [bool(v.correct) for v in verdicts]
    frame["authors_pred"] = [v.pred for v in verdicts]
    frame["authors_via"] = [v.via for v in verdicts]
    frame.attrs["authors_env"] = env
    return frame, links


def _score_ours(
    frame: pd.DataFrame,
    scoring: Mapping[str, Any],
    bench: str,
    rule: Mapping[str, Any],
    pairs: list[tuple],
    progress: bool,
) -> dict[Any, list[tuple[str, str]]]:
    """Our checker's columns (both readings of the response) and the maj@n links."""
    from deepmath.answers import CheckerPool

    texts = [p[0] for p in pairs]
    pool = CheckerPool(
        scoring.get("workers"),
        timeout_s=float(scoring.get("timeout_s", 5.0)),
        memory_mb=scoring.get("memory_mb", 4096),
    )
    with pool:
        results = pool.map(pairs, policy=scoring_policy(scoring, bench), progress=progress)
        frame["correct_ours"] = [r.equivalent for r in results]
        frame["reason"] = [r.reason for r in results]
        frame["pred"] = [r.pred for r in results]
        frame["method"] = [r.method for r in results]
        frame["vote_key"] = [vote_key(r.pred) for r in results]
        # The other reading of the same responses: only a response with a </think> can be
        # read differently, so only those are checked again.
        other = "after_think" if rule["text"] == "whole" else "whole"
        again = [i for i, t in enumerate(texts) if "</think>" in t]
        verdicts = list(frame["correct_ours"])
        if again:
            redo = pool.map([pairs[i] for i in again], policy=scoring_policy(scoring, bench, other))
            for i, res in zip(again, redo, strict=True):
                verdicts[i] = res.equivalent
        frame[f"correct_{rule['text']}"] = list(frame["correct_ours"])
        frame[f"correct_{other}"] = verdicts
        links: dict[Any, list[tuple[str, str]]] = {}
        if scoring.get("maj_equivalence", True):
            links = _equivalence_links(frame, pool)
    return links


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


def _groups(scored: pd.DataFrame) -> tuple[list[Any], dict[Any, pd.DataFrame], int]:
    """(problems in order, their samples in sample order, n); every problem has samples 0..n-1."""
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
    return problems, groups, n


def scorer_metrics(
    problems: Sequence[Any],
    groups: Mapping[Any, pd.DataFrame],
    column: str,
    maj_index: Mapping[Any, int | None],
    ks: Sequence[int],
    categories: Sequence[Any],
) -> dict[str, Any]:
    """pass@1 ± std, pass@k, maj@n and per category from one scorer's verdict column.

    maj@n is the same vote for both scorers (our extracted answers, grouped as configured);
    each scorer judges the winning sample, so only the verdict differs, never the vote.
    """
    matrix = [list(groups[p][column].astype(bool)) for p in problems]
    maj = []
    for pid in problems:
        idx = maj_index[pid]
        maj.append(bool(idx is not None and groups[pid][column].iloc[idx]))
    out = summarize(matrix, ks=ks, maj_correct=maj, categories=categories)
    for key in ("n", "problems", "samples"):  # the same for both scorers: given once, above
        out.pop(key)
    return out


def _ours_counts(scored: pd.DataFrame) -> dict[str, int]:
    reasons = Counter(scored["reason"])
    return {
        "correct": int(scored["correct_ours"].sum()),
        "mismatch": int(reasons.get("mismatch", 0)),
        "no_answer": int(reasons.get("no_answer", 0)),
        "timeout": int(reasons.get("timeout", 0)),
        "error": int(reasons.get("error", 0)),
        "answer_is_rescued": int((scored["method"] == "answer_is").sum()),
    }


def _authors_counts(scored: pd.DataFrame) -> dict[str, Any]:
    """Correct samples by the branch that accepted them; no box, timeouts and errors."""
    via = Counter(scored.loc[scored["correct_authors"].astype(bool), "authors_via"])
    return {
        "correct": int(scored["correct_authors"].sum()),
        "accepted_by": {str(k): int(v) for k, v in sorted(via.items())},
        "no_box": int(scored["authors_pred"].map(_missing).sum()),
        "timeout": int((scored["authors_via"] == "timeout").sum()),
        "error": int((scored["authors_via"] == "error").sum()),
    }


def _example(row: Mapping[str, Any]) -> dict[str, Any]:
    """One sample the scorers judge differently: both extractions, the gold, who decided, and
    the end of the response (where the answer is)."""
    text = "" if _missing(row["response"]) else str(row["response"])

    def plain(value: Any) -> Any:
        return None if _missing(value) else str(value)

    return {
        "id": str(row["id"]),
        "sample": int(row["sample"]),
        "gold": plain(row["answer"]),
        "authors_pred": plain(row["authors_pred"]),
        "authors_via": plain(row["authors_via"]) or None,  # "": it rejected
        "ours_pred": plain(row["pred"]),
        "ours_method": plain(row["method"]),
        "ours_reason": plain(row["reason"]),
        "response_tail": text[-TAIL:],
        "response_chars": len(text),
    }


def scorer_disagreement(scored: pd.DataFrame, examples: int = EXAMPLES) -> dict[str, Any]:
    """How many samples only one scorer judges correct, each way, with the first few of each."""
    authors = scored["correct_authors"].astype(bool)
    ours = scored["correct_ours"].astype(bool)
    ordered = scored.sort_values(["id", "sample"], kind="stable")
    pick = {
        "authors_only": ordered[ordered["correct_authors"] & ~ordered["correct_ours"]],
        "ours_only": ordered[ordered["correct_ours"] & ~ordered["correct_authors"]],
    }
    return {
        "samples": int(len(scored)),
        "both": int((authors & ours).sum()),
        "neither": int((~authors & ~ours).sum()),
        "authors_only": int((authors & ~ours).sum()),
        "ours_only": int((ours & ~authors).sum()),
        "examples": {
            way: [_example(r) for r in rows.head(examples).to_dict(orient="records")]
            for way, rows in pick.items()
        },
    }


def metrics_from_scored(
    scored: pd.DataFrame,
    links: Mapping[Any, Sequence[tuple[str, str]]],
    spec: EvalSpec,
    authors_env: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """metrics.json from the scored samples: both scorers' metrics and where they differ.

    ``authors_env`` defaults to ``scored.attrs["authors_env"]`` (set by :func:`score_samples`).
    """
    problems, groups, n = _groups(scored)
    maj_index = {
        pid: majority_vote(
            [None if _missing(k) else k for k in groups[pid]["vote_key"]], links.get(pid, ())
        )
        for pid in problems
    }
    cats = [groups[p]["category"].iloc[0] for p in problems]
    rule = scoring_rule(spec.scoring, str(scored["bench"].iloc[0]))
    ks = [k for k in spec.scoring["pass_k"] if k <= n]
    per = {
        name: scorer_metrics(problems, groups, f"correct_{name}", maj_index, ks, cats)
        for name in SCORERS
    }
    per["authors"]["counts"] = _authors_counts(scored)
    per["ours"]["counts"] = _ours_counts(scored)
    env = dict(authors_env if authors_env is not None else scored.attrs.get("authors_env") or {})
    finished = (
        pd.to_numeric(scored["finished_at"], errors="coerce").dropna()
        if "finished_at" in scored
        else pd.Series([], dtype=float)
    )
    first = groups[problems[0]].iloc[0]  # a sample 0: its seed is the base seed
    sampling = json.loads(first["sampling_params"]) if "sampling_params" in first else {}
    sampling.update({"n": n, "seed_rule": "sample i uses seed + i"})
    from deepmath.evaluate.generate import length_record

    length = length_record(scored)  # max_tokens: the configured one; each sample got what fit
    if length.get("max_tokens") is not None:
        sampling["max_tokens"] = length["max_tokens"]
    return {
        "model_name": str(first.get("model_name", spec.model_name)),
        "label": spec.label,
        "bench": str(first["bench"]),
        "n": n,
        "problems": len(problems),
        "samples": int(len(scored)),
        "scorers": per,
        "scorer_disagreement": scorer_disagreement(scored),
        "authors_env": env,
        "truncated": int((scored["finish_reason"] == "length").sum()),
        "tokens": {
            "mean": round(float(scored["tokens"].mean()), 1),
            "max": int(scored["tokens"].max()),
        },
        "maj_grouping": "equivalence" if spec.scoring["maj_equivalence"] else "normalised",
        "engine": first.get("engine"),
        "model_identity": first.get("model_identity"),
        "vllm_version": first.get("vllm_version"),
        "engine_length": length,
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
            "authors_rule": authors_rule(rule),
            "timeout_s": spec.scoring["timeout_s"],
            "authors_timeout_s": env.get("timeout_s"),
        },
        "text_rules": text_rules(scored, groups, problems),
    }


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
    authors_python: str | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Score a generations table with both scorers; write metrics.json (and the scored rows).

    ``authors_python``: the interpreter of the authors' environment (default: resolved by
    :func:`deepmath.answers.authors.pool.authors_python`). ``workers``: the job's threads,
    the most worker processes each scorer's pool may start (:func:`job_workers`).
    """
    frame = pd.read_parquet(generations)
    if frame.empty:
        raise DeepmathError(f"{generations} has no rows")
    missing = [
        c for c in ("id", "bench", "answer", "response", "sample", "category") if c not in frame
    ]
    if missing:
        raise DeepmathError(f"{generations} lacks column(s) {missing}")
    t0 = time.monotonic()
    scored, links = score_samples(
        frame, spec.scoring, progress=progress, authors_python=authors_python, workers=workers
    )
    metrics = metrics_from_scored(scored, links, spec)
    # the hub commits of the benchmark and the model, as generation recorded them
    metrics["hub"] = frame.attrs.get("hub") or {"bench": None, "model": None}
    authors, ours, differ = (
        metrics["scorers"]["authors"],
        metrics["scorers"]["ours"],
        metrics["scorer_disagreement"],
    )
    log.info(
        "%s on %s (n=%d, %d problems): pass@1 %.1f ± %.1f by the authors' scorer, %.1f ± %.1f "
        "by ours; %d samples only the authors' accept, %d only ours; scored in %.1f s",
        metrics["model_name"],
        metrics["bench"],
        metrics["n"],
        metrics["problems"],
        authors["pass@1"],
        authors["pass@1_std"],
        ours["pass@1"],
        ours["pass@1_std"],
        differ["authors_only"],
        differ["ours_only"],
        time.monotonic() - t0,
    )
    if not metrics["authors_env"].get("is_exact", False):
        log.warning(
            "the authors' scorer ran with versions other than theirs (%s): its verdicts may "
            "differ from their published numbers' on some answers",
            metrics["authors_env"],
        )
    if scored_out:
        scored.attrs.pop("authors_env", None)  # in metrics.json; parquet attrs stay the hub's
        write_parquet(scored, scored_out)
    write_json(metrics, out)
    return metrics
