"""The figures and tables of the `snakemake --report` HTML report.

Three subcommands, one per rule of rules/report.smk::

    python -m deepmath.report dataset --stats JSON --main T1.parquet ... --supplement S.parquet \\
        --dataset D1.parquet ... --contaminated C1.parquet ... --out-dir DIR
    python -m deepmath.report cost --usage U1.json ... --out cost.html
    python -m deepmath.report results --md main_results.md --csv main_results.csv \
        [--sensitivity scorer_sensitivity.md --examples scorer_disagreements.md] --out F.html

Snakemake's report embeds each output marked with ``report()`` and shows images and HTML pages
inline; any other file type (CSV, Markdown) is only offered as a download. So every table here
is a small self-contained HTML page (inline CSS, no scripts) and every figure a PNG.

The numbers are the dataset card's: the funnel, difficulty histogram, topic areas,
contamination counts and cost per role come from the functions :mod:`deepmath.dataset` uses for
the card, so the report and the card cannot disagree. This module only adds what the card does
not show: figures, shares, and examples of the contaminated questions with their benchmark
match, so a reader can judge the decontamination by eye.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from deepmath.dataset import (
    contamination_by_benchmark,
    difficulty_histogram,
    funnel,
    merge,
    topic_areas,
    usage_totals,
)
from deepmath.io import DeepmathError, atomic_path, run_cli, setup_logging

log = logging.getLogger("deepmath.report")

# Files `dataset` writes into --out-dir (rules/report.smk declares the same names).
DATASET_OUTPUTS = (
    "funnel.png",
    "funnel.html",
    "difficulty.png",
    "difficulty.html",
    "topics.png",
    "topics.html",
    "contamination.html",
)
# Funnel rows that are filters (their share of the previous row is meaningful); the supplement
# row adds questions and the last row is the published total.
FILTER_STAGES = 6
TOPIC_BARS = 15  # areas drawn in the topic figure; the rest are summed as "other"
EXCERPT = 400  # characters of a question shown in the contamination examples

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       font-size: 14px; color: #1f2937; margin: 16px; }
h2 { font-size: 18px; margin: 0 0 8px; }
h3 { font-size: 15px; margin: 20px 0 6px; }
p.note { color: #4b5563; max-width: 60em; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #d1d5db; padding: 4px 8px; vertical-align: top; }
th { background: #f3f4f6; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 40em; white-space: pre-wrap; }
tr.total td { font-weight: 600; background: #f9fafb; }
div.side { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
div.side > section { flex: 1 1 32em; min-width: 0; overflow-x: auto; }
details { margin: 8px 0 16px; max-width: 60em; }
details summary { cursor: pointer; font-weight: 600; }
h4 { font-size: 14px; margin: 16px 0 4px; }
h5 { font-size: 13px; margin: 12px 0 4px; }
pre { background: #f9fafb; border: 1px solid #e5e7eb; padding: 6px; white-space: pre-wrap; }
"""
SCORER_NAMES = {"authors": "the authors' scorer", "ours": "our checker"}
EXAMPLES_FILE = "scorer_disagreements.md"  # the results_table job's examples page (a download)
# Pages of results_table that the results page holds as a section: links to them lead there.
PAGE_ANCHORS = {"scorer_sensitivity.md": "#scorer-sensitivity"}


# --------------------------------------------------------------------------- reading inputs


def load_json_files(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Parse JSON files, naming the file that is broken (a stats file is an upstream output)."""
    out = []
    for path in paths:
        try:
            out.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as err:
            raise DeepmathError(f"cannot read {path}: {err}") from None
    return out


def parquet_rows(paths: Iterable[str | Path]) -> int:
    """Row count from the parquet footers: the published shards are not read for a count."""
    return int(sum(pq.ParquetFile(p).metadata.num_rows for p in paths))


def read_columns(paths: Sequence[str | Path], columns: Sequence[str]) -> pd.DataFrame:
    """Only the columns the report needs: at paper scale the shards hold 300K R1 solutions."""
    if not paths:
        return pd.DataFrame(columns=list(columns))
    return pd.concat([pd.read_parquet(p, columns=list(columns)) for p in paths], ignore_index=True)


def supplement_added(main_questions: pd.Series, supplement_questions: pd.Series) -> int:
    """Supplement questions that reached the dataset, counted as assemble_dataset counts them.

    The card's funnel row "+ supplement" is ``len(supplement) - dropped`` after
    :func:`deepmath.dataset.merge`; running the same merge on the questions alone reproduces it.
    """
    _, dropped = merge(
        pd.DataFrame({"question": main_questions}),
        pd.DataFrame({"question": supplement_questions}),
    )
    return int(len(supplement_questions) - dropped)


# --------------------------------------------------------------------------- tables (data)


def funnel_table(steps: Sequence[tuple[str, int]]) -> pd.DataFrame:
    """The card's funnel with each filter's survival rate and the share of the raw pool."""
    raw = steps[0][1] if steps else 0
    rows = []
    for i, (stage, count) in enumerate(steps):
        kept = None
        if 0 < i < FILTER_STAGES and steps[i - 1][1]:
            kept = round(100.0 * count / steps[i - 1][1], 1)
        share = round(100.0 * count / raw, 2) if raw and i != FILTER_STAGES else None
        rows.append(
            {
                "stage": stage,
                "questions": int(count),
                "% kept of previous": kept,
                "% of raw pool": share,
            }
        )
    return pd.DataFrame(rows)


def difficulty_table(difficulty: pd.Series) -> pd.DataFrame:
    """Rows and share per rounded difficulty (the card's histogram)."""
    hist = difficulty_histogram(difficulty)
    total = int(hist.sum())
    return pd.DataFrame(
        {
            "rounded difficulty": [int(k) for k in hist.index],
            "rows": [int(v) for v in hist.values],
            "%": [round(100.0 * v / total, 1) if total else None for v in hist.values],
        }
    )


def topics_table(topics: pd.Series, depth: int | None = 2) -> pd.DataFrame:
    """Rows and share per topic area (``depth`` levels; None: the full ``A -> B -> C`` path)."""
    counts = topics.value_counts() if depth is None else topic_areas(topics, depth)
    total = int(counts.sum())
    return pd.DataFrame(
        {
            "topic" if depth is None else "area": list(counts.index),
            "rows": [int(v) for v in counts.values],
            "%": [round(100.0 * v / total, 1) if total else None for v in counts.values],
        }
    )


def contamination_examples(reports: pd.DataFrame, per_benchmark: int = 3) -> pd.DataFrame:
    """Up to ``per_benchmark`` removed questions per benchmark, the judge's catches first.

    Verbatim copies (caught by the string pre-check) are obvious; the pairs the LLM judge called
    "same" are the ones a reader should audit, so they come first, closest match first.
    """
    if reports.empty:
        return reports.copy()
    order = reports.assign(_judge=(reports["by"] != "judge").astype(int)).sort_values(
        ["bench", "_judge", "score", "id"], ascending=[True, True, False, True]
    )
    return order.groupby("bench", sort=True).head(per_benchmark).drop(columns="_judge")


def role_models(usages: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """The model(s) behind each role, as the usage files record them."""
    models: dict[str, set[str]] = {}
    for usage in usages:
        for role, u in (usage.get("roles") or {}).items():
            if u.get("model"):
                models.setdefault(role, set()).add(str(u["model"]))
    return {role: sorted(names) for role, names in models.items()}


def cost_table(
    usages: Sequence[Mapping[str, Any]], prices: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Requests, tokens and dollars per role (:func:`deepmath.dataset.usage_totals`), a total row.

    Requests replayed from a journal count with the ones sent: the table is what the run used,
    not what one invocation paid.
    """
    totals = usage_totals(usages, prices)
    models = role_models(usages)
    rows = [
        {
            "role": role,
            "model": ", ".join(models.get(role, [])),
            "requests": int(t["requests"]),
            "prompt tokens": int(t["prompt_tokens"]),
            "completion tokens": int(t["completion_tokens"]),
            "USD": float(t["cost_usd"]),
        }
        for role, t in sorted(totals.items())
    ]
    if rows:
        rows.append(
            {
                "role": "total",
                "model": "",
                **{
                    k: sum(r[k] for r in rows)
                    for k in ("requests", "prompt tokens", "completion tokens")
                },
                "USD": sum(r["USD"] for r in rows),
            }
        )
    table = pd.DataFrame(
        rows,
        columns=["role", "model", "requests", "prompt tokens", "completion tokens", "USD"],
    )
    table["USD"] = table["USD"].map(lambda v: f"{v:,.2f}")  # dollars always with cents
    return table


def markdown_tables(markdown: str) -> tuple[list[tuple[str, list[list[str]]]], list[str]]:
    """(the pipe tables, each with the ``**title**`` line above it, and the other non-empty
    lines) of a Markdown text.

    Each table's first row is its header; the ``|---|`` alignment row is dropped.
    """
    tables: list[tuple[str, list[list[str]]]] = []
    notes: list[str] = []
    title, in_table = "", False
    for line in markdown.splitlines():
        text = line.strip()
        if text.startswith("|") and text.endswith("|"):
            cells = [c.strip() for c in text[1:-1].split("|")]
            if not in_table:
                tables.append((title, []))
                title, in_table = "", True
            if all(set(c) <= set(":-") and c for c in cells):
                continue
            tables[-1][1].append(cells)
            continue
        in_table = False
        if text.startswith("**") and text.endswith("**") and len(text) > 4:
            title = text[2:-2]
        elif text:
            notes.append(text)
    return tables, notes


# --------------------------------------------------------------------------- HTML


def _cell(value: Any) -> str:
    """Escaped text of a table cell; missing values as a dash."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,}"  # callers round; 8.3 stays 8.3 and 0.0 stays 0.0
    return html.escape(str(value))


def html_table(frame: pd.DataFrame, *, total_row: bool = False, numeric: Iterable[str] = ()) -> str:
    """A plain HTML table; every cell escaped (questions are LaTeX and may hold ``<``).

    Numeric columns (by dtype, or named in ``numeric``) are right-aligned; long text wraps.
    """
    numbers = set(numeric) | {c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])}
    classes = ["num" if c in numbers else "" for c in frame.columns]
    head = "".join(
        f'<th class="{cls}">{html.escape(str(c))}</th>'
        if cls
        else f"<th>{html.escape(str(c))}</th>"
        for c, cls in zip(frame.columns, classes, strict=True)
    )
    body = []
    for i, row in enumerate(frame.itertuples(index=False)):
        cells = []
        for value, cls in zip(row, classes, strict=True):
            value = value.item() if hasattr(value, "item") else value
            text = _cell(value)
            if not cls and len(text) > 60:
                cls = "text"
            cells.append(f'<td class="{cls}">{text}</td>' if cls else f"<td>{text}</td>")
        last = total_row and i == len(frame) - 1
        body.append(('<tr class="total">' if last else "<tr>") + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_page(title: str, parts: Sequence[str]) -> str:
    """A self-contained page (inline CSS, no scripts): the report shows it in an iframe."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        f"<h2>{html.escape(title)}</h2>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


def note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def funnel_html(steps: Sequence[tuple[str, int]]) -> str:
    return html_page(
        "Funnel: questions per stage",
        [
            html_table(funnel_table(steps)),
            note(
                "Counts from the run's stats files (the dataset card's funnel). '% kept of "
                "previous' is each filter's survival rate; the supplement row adds questions "
                "that passed their own labelling steps."
            ),
        ],
    )


def difficulty_html(difficulty: pd.Series) -> str:
    rated = difficulty.dropna()
    summary = (
        f"{len(rated)} rated rows, mean {rated.mean():.2f}, median {rated.median():.2f}, "
        f"min {rated.min():.2f}, max {rated.max():.2f}; {int(difficulty.isna().sum())} unrated."
        if len(rated)
        else "No rated rows."
    )
    return html_page(
        "Difficulty (AoPS 1-10, mean LLM rating)",
        [note(summary), html_table(difficulty_table(difficulty))],
    )


def topics_html(topics: pd.Series) -> str:
    return html_page(
        "Topics",
        [
            "<h3>Areas (first two levels)</h3>",
            html_table(topics_table(topics, 2)),
            "<h3>All topics</h3>",
            html_table(topics_table(topics, None)),
        ],
    )


def contamination_html(
    counts: Mapping[str, int], reports: pd.DataFrame, per_benchmark: int = 3
) -> str:
    """Questions removed per benchmark, and examples of each with their benchmark match."""
    if not counts:
        return html_page("Contamination removed", [note("No contaminated questions were found.")])
    summary = pd.DataFrame(
        sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), columns=["benchmark", "questions"]
    )
    parts = [
        html_table(summary),
        note(
            "A question counts once per benchmark it matched. Examples below: the closest "
            f"match of up to {per_benchmark} removed questions per benchmark, those the LLM "
            "judge caught first (string pre-check hits are near-verbatim copies)."
        ),
    ]
    examples = contamination_examples(reports, per_benchmark)
    for bench in summary["benchmark"]:
        rows = examples[examples["bench"] == bench] if len(examples) else examples
        parts.append(f"<h3>{html.escape(str(bench))}</h3>")
        if rows.empty:
            parts.append(note("(no example: matched as a second benchmark only)"))
            continue
        shown = pd.DataFrame(
            {
                "pool question": [_excerpt(q) for q in rows["question"]],
                "benchmark item": [
                    f"{b}: {_excerpt(p)}"
                    for b, p in zip(rows["bench_id"], rows["bench_problem"], strict=True)
                ],
                "cosine": rows["score"].astype(float).round(3).to_list(),
                "indel": rows["indel"].astype(float).round(3).to_list(),
                "caught by": rows["by"].map({"string": "string pre-check", "judge": "LLM judge"}),
            }
        )
        parts.append(html_table(shown))
    return html_page("Contamination removed, per benchmark", parts)


def _excerpt(text: Any, limit: int = EXCERPT) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def cost_html(usages: Sequence[Mapping[str, Any]], prices: Mapping[str, Any] | None = None) -> str:
    table = cost_table(usages, prices)
    if table.empty:
        return html_page("Cost per role", [note("No LLM requests were recorded.")])
    return html_page(
        "Cost per role",
        [
            html_table(table, total_row=True, numeric=["USD"]),
            note(
                f"Summed over {len(usages)} usage files (sent and replayed requests). Dollars "
                "from the price table in config (llm.<role>.prices); models served by the "
                "workflow itself count as $0."
            ),
        ],
    )


def results_html(
    markdown: str,
    tidy: pd.DataFrame,
    *,
    sensitivity: str | None = None,
    examples: str | None = None,
) -> str:
    """The results tables as the paper compares them (one per model family), beside them the
    scorer-sensitivity table (the same samples judged by both scorers) when given, then every
    number per model and benchmark, and the samples the scorers judge differently attached."""
    tables, notes = markdown_tables(markdown)
    parts = []
    for title, rows in tables:
        if title:
            parts.append(f"<h3>{html.escape(title)}</h3>")
        if rows:
            head = pd.DataFrame(rows[1:], columns=rows[0])
            parts.append(html_table(head, numeric=rows[0][1:]))
    parts += [note(n) for n in notes]
    if sensitivity is not None:
        side = sensitivity_section(sensitivity, has_examples=examples is not None)
        parts = [
            '<div class="side">',
            "<section>",
            *parts,
            "</section>",
            "<section>",
            *side,
            "</section>",
            "</div>",
        ]
    if not tidy.empty:
        parts += ["<h3>Per model and benchmark</h3>", html_table(tidy)]
    if examples is not None:
        parts.append(examples_details(examples))
    return html_page("Evaluation: pass@1 (%)", parts)


def printed_scorer(sensitivity: str) -> str | None:
    """Whose verdicts the results table prints, as the sensitivity page states it."""
    found = re.search(r"evaluation\.scoring\.scorer: (\w+)", sensitivity)
    return found.group(1) if found and found.group(1) in SCORER_NAMES else None


def sensitivity_caption(scorer: str | None, has_examples: bool) -> str:
    """One paragraph: what the two scorers are, what the table compares, where the examples are."""
    printed = (
        f"The results table prints {SCORER_NAMES[scorer]}'s verdicts "
        f"(evaluation.scoring.scorer: {scorer}). "
        if scorer
        else ""
    )
    where = (
        "attached below this page's tables"
        if has_examples
        else "in the Evaluation category, as a download"
    )
    return (
        "Every sample is judged by two scorers. The authors' scorer reproduces the DeepMath "
        'authors\' own uni_eval verdict (the last box, "The answer is: " and math-verify, with '
        "OlympiadBench's or PolyMath's judge for those benchmarks) in their pinned environment "
        "(math-verify 0.7.0, sympy 1.13.1, antlr 4.11.0); our checker applies "
        "evaluation.scoring.policy with each benchmark's rule. Both read the same responses, "
        "so a difference here is the part of a reproduction gap that is pure scoring. "
        "Per model and benchmark: pass@1 (%) by each, ours − authors (points), and the samples "
        "only one of them judges correct, each way; the largest gaps first, then per benchmark. "
        + printed
        + f"Examples of the samples judged differently ({EXAMPLES_FILE}) are {where}."
    )


def sensitivity_section(sensitivity: str, has_examples: bool) -> list[str]:
    """The scorer-sensitivity tables (per model and benchmark, then per benchmark) under their
    caption, with the line that says which versions the authors' scorer ran with."""
    tables, notes = markdown_tables(sensitivity)
    caption = note(sensitivity_caption(printed_scorer(sensitivity), has_examples))
    if has_examples:
        link = '<a href="#scorer-disagreements">the samples judged differently</a>'
        caption = caption.replace("</p>", f" See {link}.</p>")
    parts = [
        '<h3 id="scorer-sensitivity">Scorer sensitivity: the same samples, both scorers</h3>',
        caption,
    ]
    titles = ("By model and benchmark", "By benchmark (mean over its models)")
    for i, (_, rows) in enumerate(tables):
        if not rows:
            continue
        if i < len(titles) and len(tables) > 1:
            parts.append(f"<h4>{titles[i]}</h4>")
        head = pd.DataFrame(rows[1:], columns=rows[0])
        numeric = [c for c in rows[0] if c not in ("Benchmark", "Model")]
        parts.append(html_table(head, numeric=numeric))
    parts += [note(n) for n in notes if n.startswith("The authors' scorer")]
    if not tables:
        parts += [note(n) for n in notes if not n.startswith("#")][-1:]
    return parts


def _link(found: re.Match[str]) -> str:
    """A Markdown link as its text, or as a link to the section of this page it names."""
    anchor = PAGE_ANCHORS.get(html.unescape(found.group(2)))
    return f'<a href="{anchor}">{found.group(1)}</a>' if anchor else found.group(1)


def _inline(text: str) -> str:
    """One line of Markdown as escaped HTML: code spans, bold, links as their text (or to this
    page's section they name)."""
    out = []
    for i, piece in enumerate(re.split(r"(`+)(.+?)\1", text)):
        kind = i % 3
        if kind == 1:  # the backticks of a code span
            continue
        if kind == 2:  # a code span's text (one padding space each side dropped)
            if piece.startswith(" ") and piece.endswith(" ") and len(piece) > 2:
                piece = piece[1:-1]
            out.append(f"<code>{html.escape(piece)}</code>")
            continue
        escaped = html.escape(piece)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
        out.append(re.sub(r"\[([^\]]+)\]\(([^)]*)\)", _link, escaped))
    return "".join(out)


def markdown_html(markdown: str) -> str:
    """The small Markdown the examples page uses (headings, paragraphs, bullets, fenced blocks)
    as escaped HTML. Its title is dropped (the folded section's summary says it) and its
    benchmark headings become h4, under the page's own h3s."""
    out: list[str] = []
    fence: str | None = None
    block: list[str] = []
    in_list = False
    for line in markdown.splitlines():
        if fence is not None:
            if line.strip() == fence:
                out.append(f"<pre>{html.escape(chr(10).join(block))}</pre>")
                fence, block = None, []
            else:
                block.append(line)
            continue
        opened = re.match(r"^(`{3,})", line.strip())
        is_item = line.startswith("- ")
        if in_list and not is_item:
            out.append("</ul>")
            in_list = False
        if opened:
            fence = opened.group(1)
        elif is_item:
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif heading := re.match(r"^(#{1,4}) (.*)", line):
            if len(heading.group(1)) > 1:  # the page's title is the summary line already
                level = min(len(heading.group(1)) + 2, 6)
                out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif line.strip():
            out.append(f"<p>{_inline(line.strip())}</p>")
    if in_list:
        out.append("</ul>")
    if fence is not None:  # an unclosed block still shows, as text
        out.append(f"<pre>{html.escape(chr(10).join(block))}</pre>")
    return "\n".join(out)


def examples_details(examples: str) -> str:
    """The examples page attached to the results page, folded (it holds whole responses)."""
    return (
        '<details id="scorer-disagreements"><summary>The samples the two scorers judge '
        f"differently ({EXAMPLES_FILE})</summary>\n{markdown_html(examples)}\n</details>"
    )


# --------------------------------------------------------------------------- figures


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (jobs have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> None:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def funnel_figure(steps: Sequence[tuple[str, int]], path: str | Path) -> None:
    """Horizontal bars, one per stage, top to bottom, each labelled with its count."""
    plt = _pyplot()
    labels = [s for s, _ in steps]
    counts = [int(c) for _, c in steps]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(steps) + 1.2))
    colors = ["#2563eb"] * len(steps)
    if len(steps) > FILTER_STAGES:
        colors[FILTER_STAGES] = "#9ca3af"  # the supplement adds, it does not filter
    if steps:
        colors[-1] = "#059669"
    bars = ax.barh(range(len(steps)), counts, color=colors)
    ax.set_yticks(range(len(steps)), labels)
    ax.invert_yaxis()
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=3, fontsize=9)
    ax.set_xlabel("questions")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlim(0, max(counts + [1]) * 1.15)
    ax.set_title("Funnel: questions per stage")
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def difficulty_figure(
    difficulty: pd.Series, path: str | Path, threshold: float | None = None
) -> None:
    """Histogram of the mean ratings in half-point bins, with mean and filter threshold."""
    plt = _pyplot()
    rated = difficulty.dropna().astype(float)
    fig, ax = plt.subplots(figsize=(8, 4))
    if len(rated):
        lo = math.floor(min(rated.min(), threshold if threshold is not None else 10))
        bins = [lo + 0.5 * i for i in range(int((10.5 - lo) / 0.5) + 1)]
        ax.hist(rated, bins=bins, color="#2563eb", edgecolor="white")
        ax.axvline(rated.mean(), color="#111827", ls="-", lw=1, label=f"mean {rated.mean():.2f}")
        if threshold:
            ax.axvline(threshold, color="#dc2626", ls="--", lw=1, label=f"threshold {threshold:g}")
        ax.legend(frameon=False)
    else:
        unrated = f"no rated rows ({len(difficulty):,} unrated)"
        ax.text(0.5, 0.5, unrated, ha="center", va="center", transform=ax.transAxes)
        ax.set_xlim(0.5, 10.5)
    ax.set_xlabel("difficulty (mean LLM rating, AoPS 1-10)")
    ax.set_ylabel("rows")
    ax.yaxis.get_major_locator().set_params(integer=True)  # counts: no 0.25 rows
    ax.set_title(f"Difficulty of the {len(rated):,} rated rows")
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


def topics_figure(topics: pd.Series, path: str | Path, bars: int = TOPIC_BARS) -> None:
    """The most common topic areas as horizontal bars; the remaining areas summed as "other"."""
    plt = _pyplot()
    areas = topic_areas(topics) if len(topics) else pd.Series(dtype=int)
    shown = areas.head(bars)
    if len(areas) > bars:
        shown = pd.concat(
            [shown, pd.Series({f"other ({len(areas) - bars} areas)": areas[bars:].sum()})]
        )
    fig, ax = plt.subplots(figsize=(8, 0.38 * max(len(shown), 1) + 1.2))
    if len(shown):
        hbars = ax.barh(range(len(shown)), shown.values, color="#7c3aed")
        ax.set_yticks(range(len(shown)), [str(s) for s in shown.index])
        ax.invert_yaxis()
        ax.bar_label(hbars, labels=[f"{int(v):,}" for v in shown.values], padding=3, fontsize=9)
        ax.set_xlim(0, shown.max() * 1.15)
    else:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("rows")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("Topic areas (first two levels)")
    ax.spines[["top", "right"]].set_visible(False)
    _save(fig, path)


# --------------------------------------------------------------------------- commands


def _write(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_dataset_report(
    *,
    stats: Mapping[str, Sequence[Mapping[str, Any]]],
    main: Sequence[str | Path],
    supplement: Sequence[str | Path],
    dataset: Sequence[str | Path],
    contaminated: Sequence[str | Path],
    out_dir: str | Path,
    threshold: float | None = None,
    examples: int = 3,
) -> list[Path]:
    """Funnel, difficulty, topics and contamination: figures and tables in ``out_dir``."""
    out = Path(out_dir)
    published = read_columns(dataset, ["difficulty", "topic"])
    supp = read_columns(supplement, ["question"])["question"]
    added = supplement_added(read_columns(main, ["question"])["question"], supp)
    steps = funnel(stats, len(published), added)
    reports = read_columns(
        contaminated,
        ["id", "question", "bench", "bench_id", "bench_problem", "score", "indel", "by"],
    )
    funnel_figure(steps, out / "funnel.png")
    _write(out / "funnel.html", funnel_html(steps))
    difficulty_figure(published["difficulty"], out / "difficulty.png", threshold)
    _write(out / "difficulty.html", difficulty_html(published["difficulty"]))
    topics_figure(published["topic"], out / "topics.png")
    _write(out / "topics.html", topics_html(published["topic"]))
    _write(
        out / "contamination.html",
        contamination_html(contamination_by_benchmark(stats["decontam"]), reports, examples),
    )
    log.info("dataset report: %d published rows, funnel %s -> %s", len(published), steps, out)
    return [out / name for name in DATASET_OUTPUTS]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.report",
        description="Figures and tables for the `snakemake --report` HTML report.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("dataset", help="funnel, difficulty, topics, contamination")
    p.add_argument("--stats", required=True, help="JSON mapping stage -> stats files")
    p.add_argument("--main", nargs="+", required=True, help="topic-labelled shards")
    p.add_argument("--supplement", nargs="*", default=[], help="labelled supplement sets")
    p.add_argument("--dataset", nargs="+", required=True, help="published parquet shards")
    p.add_argument("--contaminated", nargs="*", default=[], help="decontam *.contaminated.parquet")
    p.add_argument("--threshold", type=float, default=None, help="difficulty filter threshold")
    p.add_argument("--examples", type=int, default=3, help="examples per benchmark")
    p.add_argument("--out-dir", required=True)
    c = sub.add_parser("cost", help="requests, tokens and dollars per LLM role")
    c.add_argument("--usage", nargs="*", default=[], help="*.usage.json files")
    c.add_argument("--prices", help="JSON: role -> prices (default: the dollars jobs recorded)")
    c.add_argument("--out", required=True)
    r = sub.add_parser("results", help="the evaluation results table as HTML")
    r.add_argument("--md", required=True, help="tables/main_results.md")
    r.add_argument("--csv", required=True, help="tables/main_results.csv")
    r.add_argument("--sensitivity", help="tables/scorer_sensitivity.md (shown beside the table)")
    r.add_argument("--examples", help="tables/scorer_disagreements.md (attached to the page)")
    r.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    setup_logging()
    if args.cmd == "dataset":
        stats = {k: load_json_files(v) for k, v in json.loads(args.stats).items()}
        write_dataset_report(
            stats=stats,
            main=args.main,
            supplement=args.supplement,
            dataset=args.dataset,
            contaminated=args.contaminated,
            out_dir=args.out_dir,
            threshold=args.threshold,
            examples=args.examples,
        )
    elif args.cmd == "cost":
        usages = load_json_files(args.usage)
        prices = json.loads(args.prices) if args.prices else None
        _write(args.out, cost_html(usages, prices))
        log.info("cost table from %d usage files -> %s", len(usages), args.out)
    else:
        tidy = pd.read_csv(args.csv)
        page = results_html(
            Path(args.md).read_text(),
            tidy,
            sensitivity=Path(args.sensitivity).read_text() if args.sensitivity else None,
            examples=Path(args.examples).read_text() if args.examples else None,
        )
        _write(args.out, page)
        log.info("results table (%d rows) -> %s", len(tidy), args.out)


if __name__ == "__main__":
    run_cli(main)
