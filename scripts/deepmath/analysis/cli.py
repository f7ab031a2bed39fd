"""``python -m deepmath.analysis <command>``: one command per analysis rule.

Datasets are passed as aligned lists (``--names a b --tables ta tb --embeddings ea eb``) in
the config's order, so tables and figures list them the same way every run.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from deepmath.analysis import contamination, embedmap, novelty, profile, strings
from deepmath.analysis.items import read_items
from deepmath.io import DeepmathError, setup_logging, write_json, write_parquet, write_text

log = logging.getLogger("deepmath.analysis")


def _aligned(names: Sequence[str], values: Sequence[str], what: str) -> dict[str, str]:
    if len(names) != len(values):
        raise DeepmathError(f"{len(names)} dataset names but {len(values)} {what}")
    return dict(zip(names, values, strict=True))


def _write_csv(table: pd.DataFrame, path: str, index: bool = False) -> None:
    table.to_csv(path, index=index)
    log.info("wrote %s (%d rows)", path, len(table))


def cmd_table(args: argparse.Namespace) -> None:
    table = read_items(args.inputs, args.name)
    write_parquet(table, args.out)
    log.info("%s: %d items", args.name, len(table))


def cmd_profile(args: argparse.Namespace) -> None:
    tables = _aligned(args.names, args.tables, "tables")
    profiles = {}
    for name, path in tables.items():
        t = read_items([path], name)
        profiles[name] = profile.profile(t["question"], t["answer"])
    table = profile.profile_table(profiles)
    _write_csv(table, args.out)
    write_json(profiles, args.stats)
    profile_chart(table, args.png)


def profile_chart(table: pd.DataFrame, path: str) -> None:
    """Stacked horizontal bars: the share of each answer type per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.5 * len(table) + 1.8))
    left = np.zeros(len(table))
    colours = plt.get_cmap("tab10")
    for i, kind in enumerate(profile.TYPES):
        values = table[kind].to_numpy(dtype=float)
        ax.barh(table["dataset"], values, left=left, label=kind, color=colours(i % 10))
        left += values
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of items (%)")
    ax.legend(ncol=5, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def cmd_strings(args: argparse.Namespace) -> None:
    tables = _aligned(args.names, args.tables, "tables")
    reference = read_items([args.reference], "reference benchmark").rename(
        columns={"question": "problem"}
    )
    rows, hits = [], []
    for name, path in tables.items():
        table = read_items([path], name)
        found = strings.string_hits(table, reference, args.threshold, progress=True)
        found = found.assign(dataset=name)
        rows.append({"dataset": name, "items": len(table), "hits": len(found)})
        hits.append(found)
        log.info("%s: %d items above %.2f against %s", name, len(found), args.threshold,
                 args.reference_name)  # fmt: skip
    _write_csv(pd.DataFrame(rows), args.out)
    write_parquet(pd.concat(hits, ignore_index=True), args.hits)


def _embeddings(names: Sequence[str], paths: Sequence[str]) -> dict[str, np.ndarray]:
    return {n: np.load(p) for n, p in _aligned(names, paths, "embedding files").items()}


def cmd_novelty(args: argparse.Namespace) -> None:
    embs = _embeddings(args.names, args.embeddings)
    table, matrix = novelty.novelty(
        embs, args.threshold, memory_mb=args.memory_mb, device=args.device
    )
    _write_csv(table, args.out)
    _write_csv(matrix.reset_index(names="dataset"), args.matrix)


def cmd_map(args: argparse.Namespace) -> None:
    embs = _embeddings(args.names, args.embeddings)
    table = embedmap.map_table(embs, args.per_dataset, args.seed, args.perplexity)
    write_parquet(table, args.out)
    embedmap.scatter(table, args.png, f"MiniLM embeddings, t-SNE (seed {args.seed})")


def cmd_contamination(args: argparse.Namespace) -> None:
    judged = pd.concat([pd.read_parquet(p) for p in args.judged], ignore_index=True)
    benchmarks = pd.concat([pd.read_parquet(p) for p in args.benchmarks], ignore_index=True)
    rates = contamination.pool_rates(judged, benchmarks)
    final = final_hits(args)
    rates = contamination.with_final(rates, final)
    rates = contamination.with_paper(rates, json.loads(args.paper or "{}"))
    _write_csv(rates, args.out)
    contamination.bar_chart(rates, args.png, "Benchmark items found in the raw pool")
    write_json(
        {
            "benchmarks": len(rates),
            "final_found": int(rates["final_found"].sum()),
            "rates": dict(zip(rates["bench"], rates["rate"], strict=True)),
        },
        args.stats,
    )


def final_hits(args: argparse.Namespace) -> dict[str, int]:
    """Benchmark items that nearly equal (Indel > threshold) one of the final dataset's items
    among each final item's top-k embedding neighbours, per benchmark."""
    from deepmath.neighbors import topk_cosine
    from deepmath.text import indel_similarity

    final = read_items([args.final_table], "final dataset")
    index = pd.read_parquet(args.bench_index)
    if final.empty or index.empty:
        return {}
    _, nearest = topk_cosine(
        np.load(args.final_embeddings), np.load(args.bench_embeddings), args.top_k,
        memory_mb=args.memory_mb, device=args.device,
    )  # fmt: skip
    found: dict[str, set[Any]] = {}
    for question, row in zip(final["question"], nearest, strict=True):
        for j in row:
            bench = index.iloc[int(j)]
            if indel_similarity(str(question), str(bench["problem"])) > args.threshold:
                found.setdefault(bench["bench"], set()).add(bench["id"])
    for bench, ids in found.items():
        log.warning("final dataset: %d item(s) of %s nearly equal a final item", len(ids), bench)
    return {b: len(ids) for b, ids in found.items()}


def cmd_sample(args: argparse.Namespace) -> None:
    from deepmath.analysis.difficulty import sample

    table = sample(read_items([args.inp], args.name), args.n, args.seed)
    write_parquet(table, args.out)
    log.info("%s: %d items sampled for rating", args.name, len(table))


def cmd_difficulty(args: argparse.Namespace) -> None:
    from deepmath.analysis import difficulty

    ratings = {}
    for name, path in _aligned(args.names, args.tables, "tables").items():
        table = pd.read_parquet(path)
        if "difficulty" not in table.columns:
            raise DeepmathError(f"{path}: no difficulty column (rate it first)")
        ratings[name] = table["difficulty"]
    shares = difficulty.level_shares(ratings)
    _write_csv(shares, args.out)
    difficulty.histogram(shares, args.png)


def cmd_summary(args: argparse.Namespace) -> None:
    from deepmath.analysis.summary import summary_markdown, summary_table

    def optional(path: str | None) -> pd.DataFrame | None:
        return pd.read_csv(path) if path else None

    contamination = optional(args.contamination)
    table = summary_table(pd.read_csv(args.novelty), pd.read_csv(args.types),
                          optional(args.strings), optional(args.difficulty))  # fmt: skip
    _write_csv(table, args.out)
    text = summary_markdown(table, contamination, json.loads(args.labels or "{}"),
                            args.benchmark, args.threshold)  # fmt: skip
    write_text(text, args.markdown)


def cmd_audit_answers(args: argparse.Namespace) -> None:
    from deepmath.analysis import audit

    table = audit.with_ids(pd.read_parquet(args.inp))
    checks, disagreements = audit.answer_checks(table, args.timeout_s, args.workers, True)
    stats = audit.answer_stats(checks, disagreements)
    write_parquet(checks, args.out)
    _write_csv(disagreements, args.disagreements)
    write_json(stats, args.stats)
    log.info(
        "%s: %d of %d solutions agree with final_answer; rows by status: %s",
        args.name,
        stats["solutions_agreeing"],
        stats["solutions_checked"],
        ", ".join(f"{k} {v}" for k, v in stats["status"].items()),
    )


def cmd_audit_card(args: argparse.Namespace) -> None:
    from pathlib import Path

    from deepmath.analysis import audit
    from deepmath.analysis.pages import audit_page
    from deepmath.dataset import tool_versions, write_shards

    spec = json.loads(args.spec)
    table = audit.with_ids(pd.read_parquet(args.dataset))
    checks = pd.read_parquet(args.answers)
    if not checks["id"].equals(table["id"]):
        raise DeepmathError(f"{args.answers} does not match {args.dataset}: rerun audit_answers")
    disagreements = pd.read_csv(args.disagreements, dtype=str, keep_default_na=False)
    contaminated = pd.read_parquet(args.contaminated)
    decontam = json.loads(Path(args.decontam_stats).read_text())
    answer_stats = json.loads(Path(args.answer_stats).read_text())
    flagged = audit.flags(table)
    drop = list(spec.get("drop") or [])
    drops = audit.dropped(checks, flagged, set(contaminated["id"]), drop)
    stats = audit.summary(spec["name"], spec.get("label") or spec["name"], answer_stats,
                          flagged, decontam, drops, drop)  # fmt: skip
    stats["hub"] = table.attrs.get("hub")  # the commit its pull loaded (None: local files)
    kept = table[~drops["drop"].to_numpy()].drop(columns="id")
    write_shards(kept, Path(args.data_dir), 1)
    write_parquet(flagged.merge(drops, on="id"), args.flags)
    write_json(stats, args.stats)
    examples = audit.flagged_examples(table, flagged, per_kind=2)
    card = audit.audit_card(stats, disagreements, contaminated, examples, spec, tool_versions(),
                            args.examples)  # fmt: skip
    write_text(card, args.card)
    write_text(audit_page(stats, disagreements, contaminated, examples, args.examples), args.page)
    log.info("%s: kept %d of %d rows (dropped %s)", spec["name"], stats["kept"], stats["rows"],
             stats["dropped_by"])  # fmt: skip


def cmd_report(args: argparse.Namespace) -> None:
    from deepmath.analysis.pages import write_pages

    for path in write_pages(args):
        log.info("wrote %s", path)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.analysis", description="The dataset analyses, one per command."
    )
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("table", help="a dataset's items (id, question, answer) in one parquet")
    p.add_argument("--name", required=True)
    p.add_argument("--in", dest="inputs", nargs="+", required=True, help="parquet file(s)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_table)

    def datasets(p: argparse.ArgumentParser, tables: bool, embeddings: bool) -> None:
        p.add_argument("--names", nargs="+", required=True, help="dataset names, in order")
        if tables:
            p.add_argument("--tables", nargs="+", required=True, help="their item tables")
        if embeddings:
            p.add_argument("--embeddings", nargs="+", required=True, help="their .npy files")

    p = sub.add_parser("profile", help="answer types per dataset")
    datasets(p, True, False)
    p.add_argument("--out", required=True, help="CSV, one row per dataset (shares in %%)")
    p.add_argument("--stats", required=True, help="JSON with counts")
    p.add_argument("--png", required=True)
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("strings", help="all-pairs string check against one benchmark")
    datasets(p, True, False)
    p.add_argument("--reference", required=True, help="the benchmark's table")
    p.add_argument("--reference-name", default="the benchmark")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--out", required=True, help="CSV: dataset, items, hits")
    p.add_argument("--hits", required=True, help="parquet: every hit with its benchmark item")
    p.set_defaults(func=cmd_strings)

    p = sub.add_parser("novelty", help="items with no near-copy in the other datasets")
    datasets(p, False, True)
    p.add_argument("--threshold", type=float, default=0.98)
    p.add_argument("--memory-mb", type=int, default=512)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", required=True, help="CSV: dataset, items, unique, unique_share")
    p.add_argument("--matrix", required=True, help="CSV: % of row's items copied in column")
    p.set_defaults(func=cmd_novelty)

    p = sub.add_parser("map", help="a 2-D t-SNE map of all datasets")
    datasets(p, False, True)
    p.add_argument("--per-dataset", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--out", required=True, help="parquet: dataset, row, x, y")
    p.add_argument("--png", required=True)
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("contamination", help="benchmark items found in the pool and final set")
    p.add_argument("--judged", nargs="+", required=True, help="decontamination judge tables")
    p.add_argument("--benchmarks", nargs="+", required=True, help="benchmark tables")
    p.add_argument("--final-table", required=True, help="the final dataset's item table")
    p.add_argument("--final-embeddings", required=True)
    p.add_argument("--bench-embeddings", required=True)
    p.add_argument("--bench-index", required=True, help="rows of the benchmark embeddings")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--memory-mb", type=int, default=512)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--paper", help="published rates, JSON {bench: percent}")
    p.add_argument("--out", required=True)
    p.add_argument("--png", required=True)
    p.add_argument("--stats", required=True)
    p.set_defaults(func=cmd_contamination)

    p = sub.add_parser("sample", help="a seeded sample of a dataset's items (for rating)")
    p.add_argument("--name", required=True)
    p.add_argument("--in", dest="inp", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("difficulty", help="difficulty levels per dataset, overlaid")
    datasets(p, True, False)
    p.add_argument("--out", required=True)
    p.add_argument("--png", required=True)
    p.set_defaults(func=cmd_difficulty)

    p = sub.add_parser("report", help="the analyses as HTML pages for the Snakemake report")
    p.add_argument("--novelty", required=True)
    p.add_argument("--matrix", required=True)
    p.add_argument("--threshold", type=float, required=True, help="the novelty threshold")
    p.add_argument("--types", required=True)
    p.add_argument("--contamination", help="contamination.csv (absent: no page)")
    p.add_argument("--strings", help="string_check.csv (absent: no page)")
    p.add_argument("--hits", help="string_hits.parquet")
    p.add_argument("--benchmark", default="the benchmark", help="the string check's benchmark")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("summary", help="the analyses' headline numbers (the card links them)")
    p.add_argument("--novelty", required=True)
    p.add_argument("--types", required=True)
    p.add_argument("--strings", help="string_check.csv (absent: no column)")
    p.add_argument("--difficulty", help="difficulty.csv")
    p.add_argument("--contamination", help="contamination.csv")
    p.add_argument("--labels", help="JSON {dataset: label}")
    p.add_argument("--benchmark", help="the string check's benchmark")
    p.add_argument("--threshold", type=float, required=True, help="the novelty threshold")
    p.add_argument("--out", required=True, help="CSV, one row per dataset")
    p.add_argument("--markdown", required=True, help="the summary page")
    p.set_defaults(func=cmd_summary)

    p = sub.add_parser("audit-answers", help="a dataset's final answers against its solutions")
    p.add_argument("--name", required=True)
    p.add_argument("--in", dest="inp", required=True, help="the dataset (DeepMath-103K schema)")
    p.add_argument("--timeout-s", type=float, default=5.0, help="bound of one check")
    p.add_argument("--workers", type=int, default=None, help="checker processes (default: cores)")
    p.add_argument("--out", required=True, help="parquet: per row answers, verdicts, status")
    p.add_argument("--disagreements", required=True, help="CSV: every disagreeing solution")
    p.add_argument("--stats", required=True)
    p.set_defaults(func=cmd_audit_answers)

    p = sub.add_parser("audit-card", help="flags, the cleaned copy and the audit card")
    p.add_argument("--dataset", required=True, help="the audited dataset")
    p.add_argument("--answers", required=True, help="audit-answers' parquet")
    p.add_argument("--answer-stats", required=True, help="audit-answers' JSON")
    p.add_argument("--disagreements", required=True, help="audit-answers' CSV")
    p.add_argument("--contaminated", required=True, help="the decontamination report")
    p.add_argument("--decontam-stats", required=True, help="the decontamination counts")
    p.add_argument("--spec", required=True, help="JSON: name, label, load, benchmarks, drop, ...")
    p.add_argument("--examples", type=int, default=5, help="examples per table of the card")
    p.add_argument("--data-dir", required=True, help="where the cleaned copy's parquet goes")
    p.add_argument("--flags", required=True, help="parquet: answer type, flags, drop reasons")
    p.add_argument("--card", required=True, help="the audit card (Markdown)")
    p.add_argument("--stats", required=True, help="every count (JSON)")
    p.add_argument("--page", required=True, help="the report page (HTML)")
    p.set_defaults(func=cmd_audit_card)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    args.func(args)
