"""The results tables: models × benchmarks pass@1, ours beside the published numbers.

Like the paper, the models are printed in families (``evaluation.families``: Zero RL from base
models, RL from reasoning models), one Markdown table each, with n, the run date and, where
both exist, ours − published. The published numbers live beside each model entry (``paper:``)
or, for a model without an entry, in ``paper_results``; a number nobody published stays empty.
The tidy CSV has one row per (model, benchmark) with every metric and the disagreement counts
of the two ways of reading a response.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from deepmath.io import DeepmathError
from deepmath.metrics import mean_or_none

log = logging.getLogger("deepmath.evaluate")

OTHER_FAMILY = "other"


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
    """
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for m in metrics:
        key = (str(m["model_name"]), str(m["bench"]))
        if key in found:
            raise DeepmathError(f"two metrics files for model {key[0]} on {key[1]}")
        found[key] = m
    paper = published(spec)
    labels = dict(spec.get("labels") or {})
    models_cfg = spec.get("models") or {}
    for name, entry in models_cfg.items() if isinstance(models_cfg, Mapping) else ():
        if isinstance(entry, Mapping) and entry.get("label"):
            labels.setdefault(name, entry["label"])
    for m in found.values():
        if m.get("label"):
            labels.setdefault(str(m["model_name"]), str(m["label"]))
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
    ]
    return "\n".join(lines) + "\n", frame


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


def write_table(
    metrics_paths: Sequence[str | os.PathLike[str]],
    spec: Mapping[str, Any],
    *,
    out_md: str | os.PathLike[str],
    out_csv: str | os.PathLike[str],
) -> tuple[str, pd.DataFrame]:
    """Read the metrics files and write the Markdown tables and the tidy CSV."""
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
    return md, frame
