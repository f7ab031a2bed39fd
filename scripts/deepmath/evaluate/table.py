"""The results tables: models × benchmarks pass@1, ours beside the published numbers, and how
much of each number is the scorer's.

Like the paper, the models are printed in families (``evaluation.families``: Zero RL from base
models, RL from reasoning models), one Markdown table each, with n, the run date and, where
both exist, ours − published. The published numbers live beside each model entry (``paper:``)
or, for a model without an entry, in ``paper_results``; a number nobody published stays empty.
The verdicts are those of ``evaluation.scoring.scorer`` (default ``authors``: the authors'
scorer, so ours − published compares like with like). The tidy CSV has one row per
(model, benchmark) with every metric and the disagreement counts of the two ways of reading a
response.

Every metrics file holds both scorers' metrics, so two more pages come from the same files:
the scorer-sensitivity table (pass@1 by the authors' scorer and by our checker on the same
samples, and how many samples each alone accepts) and the examples of those samples.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from deepmath.io import DeepmathError
from deepmath.metrics import mean_or_none

log = logging.getLogger("deepmath.evaluate")

OTHER_FAMILY = "other"
SCORERS = ("authors", "ours")
DEFAULT_SCORER = "authors"
SCORER_NAMES = {"authors": "the authors' scorer", "ours": "our checker"}
SENSITIVITY_PAGE = "scorer_sensitivity.md"  # the pages link each other by these names
EXAMPLES_PAGE = "scorer_disagreements.md"
EXAMPLES_PER_BENCH = 4  # examples shown per benchmark and direction, across models


def _day(stamp: Any) -> str | None:
    return str(stamp)[:10] if stamp else None


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", "−")


def published(spec: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """{model: {bench: pass@1}}: ``paper_results`` overlaid with each model entry's ``paper``."""
    paper = spec.get("paper_results") or {}
    if not isinstance(paper, Mapping) or not all(isinstance(v, Mapping) for v in paper.values()):
        raise DeepmathError("evaluation.paper_results must be {model: {bench: pass@1}}")
    out = {str(m): {str(b): float(v) for b, v in row.items()} for m, row in paper.items()}
    models = spec.get("models") or {}
    for name, entry in models.items() if isinstance(models, Mapping) else ():
        if isinstance(entry, Mapping) and isinstance(entry.get("paper"), Mapping):
            out.setdefault(str(name), {}).update(
                {str(b): float(v) for b, v in entry["paper"].items()}
            )
    return out


def table_scorer(spec: Mapping[str, Any]) -> str:
    """``scoring.scorer`` of the table's spec: whose verdicts the results table prints."""
    scorer = (spec.get("scoring") or {}).get("scorer") or DEFAULT_SCORER
    if scorer not in SCORERS:
        raise DeepmathError(
            f"evaluation.scoring.scorer = {scorer!r} is not a scorer; allowed: {', '.join(SCORERS)}"
        )
    return str(scorer)


def scorer_view(metrics: Mapping[str, Any], scorer: str) -> dict[str, Any]:
    """One metrics file as one scorer sees it: its pass@1, pass@k, maj@n... at the top level."""
    per = metrics.get("scorers")
    if not isinstance(per, Mapping) or scorer not in per:
        raise DeepmathError(
            f"the metrics of {metrics.get('model_name')} on {metrics.get('bench')} have no "
            f"{scorer!r} scorer's metrics (written before both scorers were recorded): score "
            "them again (snakemake --forcerun score_eval)"
        )
    return {**metrics, **per[scorer], "scorer": scorer}


def _families(spec: Mapping[str, Any], models: Sequence[str]) -> list[tuple[str, list[str]]]:
    """(title, models) per table, in the configured order; unassigned models go last."""
    titles = dict(spec.get("families") or {})
    entries = spec.get("models") or {}
    of = {
        m: (entries.get(m) or {}).get("family") if isinstance(entries, Mapping) else None
        for m in models
    }
    groups: list[tuple[str, list[str]]] = []
    for family, title in titles.items():
        members = [m for m in models if of[m] == family]
        if members:
            groups.append((str(title), members))
    rest = [m for m in models if of[m] not in titles]
    if rest:
        groups.append(("Other models" if groups else "", rest))
    return groups


def results_table(
    metrics: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]
) -> tuple[str, pd.DataFrame]:
    """(Markdown, tidy CSV frame) of pass@1: models × benchmarks, ours next to the paper's.

    Rows: the models of ``spec["models"]`` in order, then any other model with metrics, then the
    models only the paper reports, grouped into ``spec["families"]``. Columns:
    ``spec["benchmarks"]`` in order, then any other benchmark with metrics. A cell reads
    ``ours ± std / paper (ours − paper)``; "–" marks what is missing. Avg. is over
    ``spec["average"]`` (default: the configured benchmarks), given when a row has all of them.
    The verdicts are ``spec["scoring"]["scorer"]``'s (default: the authors' scorer).
    """
    scorer = table_scorer(spec)
    found = _found(metrics, scorer)
    paper = published(spec)
    labels = _labels(spec, found.values())
    models_cfg = spec.get("models") or {}
    models = list(dict.fromkeys([*models_cfg, *(k[0] for k in found), *paper]))
    benches = list(dict.fromkeys([*(spec.get("benchmarks") or []), *(k[1] for k in found)]))
    benches += [b for b in dict.fromkeys(b for v in paper.values() for b in v) if b not in benches]
    avg_over = list(spec.get("average") or spec.get("benchmarks") or benches)

    records = []
    for model in models:
        for bench in benches:
            m = found.get((model, bench))
            ref = paper.get(model, {}).get(bench)
            if m is None and ref is None:
                continue
            ours = m.get("pass@1") if m else None
            rules = (m or {}).get("text_rules") or {}
            records.append(
                {
                    "model": model,
                    "label": labels.get(model, model),
                    "family": (models_cfg.get(model) or {}).get("family")
                    if isinstance(models_cfg, Mapping)
                    else None,
                    "bench": bench,
                    "pass@1": ours,
                    "pass@1_std": m.get("pass@1_std") if m else None,
                    "paper_pass@1": ref,
                    "delta": None if ours is None or ref is None else round(ours - ref, 1),
                    "maj@n": m.get("maj@n") if m else None,
                    **{
                        f"pass@{k}": v
                        for k, v in ((m or {}).get("pass@k") or {}).items()
                        if str(k) != "1"  # the same number as pass@1
                    },
                    "pass@1_whole": rules.get("whole"),
                    "pass@1_after_think": rules.get("after_think"),
                    "samples_differ": rules.get("samples_differ"),
                    "n": m.get("n") if m else None,
                    "problems": m.get("problems") if m else None,
                    "date": _day(m.get("generated_at")) if m else None,
                    "vllm_version": m.get("vllm_version") if m else None,
                    # the checkpoint that answered (weights, tokenizer, template, dtype)
                    "model_identity": m.get("model_identity") if m else None,
                    "scorer": scorer if m else None,
                }
            )
    frame = pd.DataFrame.from_records(records)
    for col in ("n", "problems", "samples_differ"):
        if col in frame:
            frame[col] = frame[col].astype("Int64")  # blank for paper-only rows, not 2.0

    head = ["Model", "n", "Run date", *(labels.get(b, b) for b in benches), "Avg."]
    rule = "|" + "|".join(["---", "--:", "---"] + ["--:"] * (len(benches) + 1)) + "|"
    lines: list[str] = []
    for title, members in _families(spec, models):
        rows = [_row(model, benches, found, paper, labels, avg_over) for model in members]
        rows = [r for r in rows if r is not None]
        if not rows:
            continue
        if lines:
            lines.append("")
        if title:
            lines += [f"**{title}**", ""]
        lines += ["| " + " | ".join(head) + " |", rule, *rows]
    n_text = ", ".join(sorted({str(int(m["n"])) for m in found.values()})) or "–"
    lines += [
        "",
        f"pass@1 (%) over n = {n_text} samples per problem: ours ± std over the n sample runs "
        "/ the published number (DeepMath-103K, arXiv 2504.11456, and the authors' README; "
        "pass@1 with n = 16) (ours − published). "
        f"Avg.: mean over {', '.join(labels.get(b, b) for b in avg_over)}, given when the row "
        "has all of them. Run date: UTC day of the last generated sample.",
        "",
        f"Verdicts: {SCORER_NAMES[scorer]} (evaluation.scoring.scorer: {scorer}). The same "
        f"samples judged by both scorers: {SENSITIVITY_PAGE}.",
    ]
    return "\n".join(lines) + "\n", frame


def _found(
    metrics: Iterable[Mapping[str, Any]], scorer: str
) -> dict[tuple[str, str], dict[str, Any]]:
    """{(model, bench): the metrics as ``scorer`` sees them}; one file per pair."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for m in metrics:
        key = (str(m["model_name"]), str(m["bench"]))
        if key in found:
            raise DeepmathError(f"two metrics files for model {key[0]} on {key[1]}")
        found[key] = scorer_view(m, scorer)
    return found


def _row(
    model: str,
    benches: Sequence[str],
    found: Mapping[tuple[str, str], Mapping[str, Any]],
    paper: Mapping[str, Mapping[str, float]],
    labels: Mapping[str, str],
    avg_over: Sequence[str],
) -> str | None:
    """One Markdown row, or None when neither we nor the paper have a number for it."""
    ours_row = [found.get((model, b)) for b in benches]
    refs = [paper.get(model, {}).get(b) for b in benches]
    if all(x is None for x in ours_row) and all(r is None for r in refs):
        return None
    cells = []
    for m, ref in zip(ours_row, refs, strict=True):
        ours = "–"
        if m is not None:
            ours = _fmt(m.get("pass@1"))
            if m.get("pass@1_std") is not None and m.get("n", 1) > 1:
                ours += f" ± {_fmt(m['pass@1_std'])}"
        if ref is None:
            cells.append(ours)
        elif m is None or m.get("pass@1") is None:
            cells.append(f"{ours} / {_fmt(ref)}")
        else:
            cells.append(f"{ours} / {_fmt(ref)} ({_signed(m['pass@1'] - ref)})")
    have = [m for m in ours_row if m is not None]
    ns = sorted({int(m["n"]) for m in have})
    dates = sorted({_day(m.get("generated_at")) for m in have} - {None})
    mine = {b: (m or {}).get("pass@1") for b, m in zip(benches, ours_row, strict=True)}
    theirs = dict(zip(benches, refs, strict=True))
    avg_ours = mean_or_none(mine.get(b) for b in avg_over)
    avg_ref = mean_or_none(theirs.get(b) for b in avg_over)
    avg = _fmt(avg_ours)
    if avg_ref is not None:
        avg = f"{avg} / {_fmt(avg_ref)}"
    return (
        "| "
        + " | ".join(
            [
                labels.get(model, model),
                ", ".join(map(str, ns)) or "–",
                dates[-1] if dates else "–",
                *cells,
                avg,
            ]
        )
        + " |"
    )


def _labels(spec: Mapping[str, Any], metrics: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Display names: ``labels``, each model entry's ``label``, the metrics' own label."""
    labels = dict(spec.get("labels") or {})
    models_cfg = spec.get("models") or {}
    for name, entry in models_cfg.items() if isinstance(models_cfg, Mapping) else ():
        if isinstance(entry, Mapping) and entry.get("label"):
            labels.setdefault(name, entry["label"])
    for m in metrics:
        if m.get("label"):
            labels.setdefault(str(m["model_name"]), str(m["label"]))
    return labels


def _order(spec: Mapping[str, Any], found: Iterable[tuple[str, str]]) -> tuple[list, list]:
    """(models, benchmarks) in the configured order, then any others that have metrics."""
    keys = list(found)
    models = list(dict.fromkeys([*(spec.get("models") or {}), *(k[0] for k in keys)]))
    benches = list(dict.fromkeys([*(spec.get("benchmarks") or []), *(k[1] for k in keys)]))
    return [m for m in models if any(k[0] == m for k in keys)], [
        b for b in benches if any(k[1] == b for k in keys)
    ]


def _difference(ours: float | None, authors: float | None) -> float | None:
    return None if ours is None or authors is None else round(ours - authors, 1)


def sensitivity_frame(
    metrics: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]
) -> pd.DataFrame:
    """One row per (model, benchmark): pass@1 and maj@n by each scorer, ours − authors, and the
    samples each scorer alone accepts; the largest gaps first."""
    metrics = list(metrics)
    labels = _labels(spec, metrics)
    found = {(str(m["model_name"]), str(m["bench"])): m for m in metrics}
    models, benches = _order(spec, found)
    records = []
    for bench in benches:
        for model in models:
            m = found.get((model, bench))
            if m is None:
                continue
            authors, ours = (scorer_view(m, s) for s in SCORERS)
            differ = m.get("scorer_disagreement") or {}
            env = m.get("authors_env") or {}
            records.append(
                {
                    "bench": bench,
                    "bench_label": labels.get(bench, bench),
                    "model": model,
                    "label": labels.get(model, model),
                    "n": m.get("n"),
                    "problems": m.get("problems"),
                    "samples": m.get("samples"),
                    "pass@1_authors": authors.get("pass@1"),
                    "pass@1_ours": ours.get("pass@1"),
                    "ours_minus_authors": _difference(ours.get("pass@1"), authors.get("pass@1")),
                    "authors_only": differ.get("authors_only"),
                    "ours_only": differ.get("ours_only"),
                    "both": differ.get("both"),
                    "neither": differ.get("neither"),
                    "maj@n_authors": authors.get("maj@n"),
                    "maj@n_ours": ours.get("maj@n"),
                    "authors_exact": env.get("is_exact"),
                }
            )
    columns = [
        "bench", "bench_label", "model", "label", "n", "problems", "samples", "pass@1_authors",
        "pass@1_ours", "ours_minus_authors", "authors_only", "ours_only", "both", "neither",
        "maj@n_authors", "maj@n_ours", "authors_exact",
    ]  # fmt: skip
    frame = pd.DataFrame.from_records(records, columns=columns)
    if frame.empty:
        return frame
    gap = frame["ours_minus_authors"].abs().fillna(-1.0)
    flips = frame["authors_only"].fillna(0) + frame["ours_only"].fillna(0)
    order = sorted(range(len(frame)), key=lambda i: (-gap.iloc[i], -flips.iloc[i], i))
    frame = frame.iloc[order].reset_index(drop=True)
    for col in ("n", "problems", "samples", "authors_only", "ours_only", "both", "neither"):
        frame[col] = frame[col].astype("Int64")
    return frame


def _per_bench(frame: pd.DataFrame) -> list[list[str]]:
    """Per benchmark over its models, then all: mean pass@1 by each scorer and summed counts."""
    rows = []
    groups = [(label, g) for label, g in frame.groupby("bench_label", sort=False)]
    if len(groups) > 1:
        groups.append(("All benchmarks", frame))
    for label, g in groups:
        authors = mean_or_none(g["pass@1_authors"].tolist())
        ours = mean_or_none(g["pass@1_ours"].tolist())
        diff = _difference(ours, authors)
        rows.append(
            [
                str(label),
                str(g["model"].nunique()),
                str(int(g["samples"].sum())),
                _fmt(authors),
                _fmt(ours),
                "–" if diff is None else _signed(diff),
                str(int(g["authors_only"].fillna(0).sum())),
                str(int(g["ours_only"].fillna(0).sum())),
            ]
        )
    return rows


def _environment_line(metrics: Sequence[Mapping[str, Any]]) -> str:
    """Which versions the authors' scorer ran with, and whether they are the authors' own."""
    envs = [m.get("authors_env") or {} for m in metrics]
    shown = sorted(
        {
            ", ".join(f"{k} {v}" for k, v in sorted((e.get("versions") or {}).items()))
            for e in envs
            if e.get("versions")
        }
    )
    if not shown:
        return "The authors' scorer's environment was not recorded."
    inexact = sum(1 for e in envs if not e.get("is_exact"))
    verdict = (
        "the authors' pinned versions"
        if not inexact
        else f"NOT the authors' pinned versions for {inexact} of {len(envs)} metrics files, "
        "whose verdicts may differ from the authors' own"
    )
    return f"The authors' scorer ran with {'; '.join(shown)}: {verdict}."


def sensitivity_table(
    metrics: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]
) -> tuple[str, pd.DataFrame]:
    """(Markdown, CSV frame) of the scorer-sensitivity table."""
    metrics = list(metrics)
    scorer = table_scorer(spec)
    frame = sensitivity_frame(metrics, spec)
    lines = [
        "# Scorer sensitivity: the authors' scorer and our checker on the same samples",
        "",
        "Every sample of every evaluated model is judged twice: by the authors' scorer (their "
        "uni_eval rule for each benchmark, run in their pinned environment) and by our checker "
        "(evaluation.scoring.policy with each benchmark's rule). Both judge the very same "
        "responses, so a difference here is a part of a reproduction gap that is pure scoring: "
        "no model, sampling or data in it. `Ours − authors` is pass@1 by our checker minus "
        "pass@1 by the authors' scorer (percentage points); the two counts are the samples "
        "only one of them judges correct. Largest gaps first. The results table prints "
        f"{SCORER_NAMES[scorer]}'s verdicts (evaluation.scoring.scorer: {scorer}). Examples of "
        f"the samples judged differently: [{EXAMPLES_PAGE}]({EXAMPLES_PAGE}).",
        "",
    ]
    if frame.empty:
        lines.append("No metrics files.")
        return "\n".join(lines) + "\n", frame
    lines += [
        "| Benchmark | Model | n | Samples | Authors' scorer | Our checker | Ours − authors "
        "| Only authors' correct | Only ours correct |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in frame.to_dict(orient="records"):
        diff = r["ours_minus_authors"]
        cells = [
            str(r["bench_label"]),
            str(r["label"]),
            _int(r["n"]),
            _int(r["samples"]),
            _fmt(_num(r["pass@1_authors"])),
            _fmt(_num(r["pass@1_ours"])),
            "–" if _num(diff) is None else _signed(diff),
            _int(r["authors_only"]),
            _int(r["ours_only"]),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "**Per benchmark** (pass@1: mean over its models; counts: summed over them)",
        "",
        "| Benchmark | Models | Samples | Authors' scorer | Our checker | Ours − authors "
        "| Only authors' correct | Only ours correct |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
        *("| " + " | ".join(row) + " |" for row in _per_bench(frame)),
        "",
        _environment_line(metrics),
    ]
    return "\n".join(lines) + "\n", frame.drop(columns=["bench_label"])


def _num(value: Any) -> float | None:
    """A number, or None for a missing one (None, NaN, pandas' NA)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _int(value: Any) -> str:
    number = _num(value)
    return "–" if number is None else str(int(number))


def _code(text: Any) -> str:
    """Inline code that survives backticks in the text; a dash for nothing."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return "–"
    text = str(text).replace("\n", " ")
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(text: str) -> list[str]:
    """A fenced block longer than any run of backticks in the text."""
    ticks = "`" * max(3, max((len(r) for r in re.findall(r"`+", text)), default=0) + 1)
    return [f"{ticks}text", text, ticks]


def _example_lines(model_label: str, ex: Mapping[str, Any]) -> list[str]:
    tail = str(ex.get("response_tail") or "")
    total = int(ex.get("response_chars") or len(tail))
    shown = "whole response" if total <= len(tail) else f"last {len(tail)} of {total} characters"
    return [
        f"**{model_label}**, problem {_code(ex.get('id'))}, sample {ex.get('sample')}: "
        f"gold {_code(ex.get('gold'))}",
        "",
        f"- the authors' scorer: extracted {_code(ex.get('authors_pred'))}, "
        + (f"accepted by `{ex['authors_via']}`" if ex.get("authors_via") else "rejected"),
        f"- our checker: extracted {_code(ex.get('ours_pred'))}, `{ex.get('ours_reason')}`"
        + (f" (by `{ex['ours_method']}`)" if ex.get("ours_method") else ""),
        "",
        f"Response ({shown}):",
        "",
        *_fence(tail),
        "",
    ]


def examples_page(
    metrics: Iterable[Mapping[str, Any]],
    spec: Mapping[str, Any],
    per_bench: int = EXAMPLES_PER_BENCH,
) -> str:
    """Markdown: per benchmark, up to ``per_bench`` samples each way that one scorer accepts and
    the other rejects, taken from the models in turn, with what each extracted and decided."""
    metrics = list(metrics)
    labels = _labels(spec, metrics)
    found = {(str(m["model_name"]), str(m["bench"])): m for m in metrics}
    models, benches = _order(spec, found)
    lines = [
        "# Samples the two scorers judge differently",
        "",
        f"Back to [the scorer-sensitivity table]({SENSITIVITY_PAGE}). Per benchmark, up to "
        f"{per_bench} samples each way (taken from the models in turn, first problems first) "
        "that only one scorer judges correct: what each extracted, which branch of the authors' "
        'scorer accepted (`boxed`: the last box; `answer_is`: "The answer is: "; '
        "`math_verify`: math-verify on the whole response; `olympiad` / `polymath`: the "
        "benchmark's judge) or why our checker rejected (its reason and comparator), and the "
        "end of the response.",
        "",
    ]
    ways = (
        ("authors_only", "Only the authors' scorer judges these correct"),
        ("ours_only", "Only our checker judges these correct"),
    )
    for bench in benches:
        have = [(model, found[(model, bench)]) for model in models if (model, bench) in found]
        lines += [f"## {labels.get(bench, bench)}", ""]
        for way, title in ways:
            total = sum(int((m.get("scorer_disagreement") or {}).get(way) or 0) for _, m in have)
            lines += [f"### {title} ({total} samples over {len(have)} models)", ""]
            picked = _round_robin(
                [
                    [(model, ex) for ex in ((m.get("scorer_disagreement") or {}).get("examples")
                                            or {}).get(way, [])]
                    for model, m in have
                ],
                per_bench,
            )  # fmt: skip
            if not picked:
                lines += ["None.", ""]
            for model, ex in picked:
                lines += _example_lines(labels.get(model, model), ex)
    return "\n".join(lines).rstrip() + "\n"


def _round_robin(lists: Sequence[Sequence[Any]], limit: int) -> list[Any]:
    """The first item of each list, then the second of each... up to ``limit`` items."""
    out: list[Any] = []
    depth = 0
    while len(out) < limit and any(depth < len(items) for items in lists):
        out += [items[depth] for items in lists if depth < len(items)][: limit - len(out)]
        depth += 1
    return out


def write_table(
    metrics_paths: Sequence[str | os.PathLike[str]],
    spec: Mapping[str, Any],
    *,
    out_md: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
    out_sensitivity_md: str | os.PathLike[str] | None = None,
    out_sensitivity_csv: str | os.PathLike[str] | None = None,
    out_examples: str | os.PathLike[str] | None = None,
) -> tuple[str, pd.DataFrame]:
    """Read the metrics files and write the Markdown tables and the tidy CSV, and (each when
    its path is given) the scorer-sensitivity table and its examples page."""
    from deepmath.io import atomic_path

    metrics = []
    for path in metrics_paths:
        try:
            metrics.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise DeepmathError(f"cannot read metrics {path}: {err}") from None
    md, frame = results_table(metrics, spec)
    with atomic_path(out_md) as tmp:
        tmp.write_text(md)
    with atomic_path(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    log.info("results table: %d models x benchmarks cells -> %s, %s", len(frame), out_md, out_csv)
    if out_sensitivity_md or out_sensitivity_csv:
        sens_md, sens = sensitivity_table(metrics, spec)
        if out_sensitivity_md:
            with atomic_path(out_sensitivity_md) as tmp:
                tmp.write_text(sens_md)
        if out_sensitivity_csv:
            with atomic_path(out_sensitivity_csv) as tmp:
                sens.to_csv(tmp, index=False)
        log.info("scorer sensitivity: %d rows -> %s", len(sens), out_sensitivity_md)
    if out_examples:
        with atomic_path(out_examples) as tmp:
            tmp.write_text(examples_page(metrics, spec))
    return md, frame
