"""``python -m deepmath.evaluate {generate,score,table}``: one command per evaluation rule.

Each subcommand imports only what it runs, so ``table`` (which reads metrics files) needs no
vLLM, no LLM client and no checker; ``score`` runs both scorers, the authors' in their own
environment (``--authors-record`` / ``--authors-python``).
"""

from __future__ import annotations

import argparse

from deepmath.evaluate.spec import eval_spec, load_spec_arg
from deepmath.io import run_cli, setup_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.evaluate",
        description="Generate, score and tabulate the benchmark evaluation of a model.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("generate", help="n samples per problem (vLLM server or offline engine)")
    p.add_argument("--bench", required=True, help="benchmark parquet (bench, id, problem, ...)")
    p.add_argument("--model-dir", help="the model's HF folder")
    p.add_argument("--spec", required=True, help="config evaluation + model entry, JSON or file")
    p.add_argument("--journal", required=True, help="resume journal (JSON lines)")
    p.add_argument("--server-dir", help="folder for the server's log and caches")
    p.add_argument("--server-registry", help="registry of shared servers (share: workflow)")
    p.add_argument("--out", required=True, help="output responses parquet (one row per sample)")
    p.add_argument("--usage", help="output usage JSON (default <out>.usage.json)")
    p = sub.add_parser("score", help="correctness per sample and metrics.json")
    p.add_argument("--in", dest="inp", required=True, help="responses parquet (from generate)")
    p.add_argument("--spec", required=True, help="config evaluation + model entry, JSON or file")
    p.add_argument("--out", required=True, help="output metrics JSON")
    p.add_argument(
        "--scored", help="also write the scored samples: answers and both scorers' verdicts"
    )
    p.add_argument(
        "--authors-record",
        help="the authors' interpreter as the authors_python rule recorded it (JSON)",
    )
    p.add_argument(
        "--authors-python",
        help="the authors' interpreter (default: the --authors-record, else "
        "$DEEPMATH_AUTHORS_PYTHON, else .venv-authors)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="the most worker processes each scorer may start (the rule passes its threads; "
        "default: scoring.workers, else the cores this job may use)",
    )
    p = sub.add_parser("table", help="models x benchmarks, ours next to the paper's")
    p.add_argument("--metrics", nargs="+", required=True, help="metrics.json files")
    p.add_argument("--spec", required=True, help="config evaluation section, JSON or file")
    p.add_argument("--out-md", required=True)
    p.add_argument("--out-csv", required=True)
    p.add_argument("--out-sensitivity-md", help="the scorer-sensitivity table (Markdown)")
    p.add_argument("--out-sensitivity-csv", help="the scorer-sensitivity table (CSV)")
    p.add_argument("--out-examples", help="examples the two scorers judge differently (Markdown)")
    for p in sub.choices.values():
        p.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    raw = load_spec_arg(args.spec)
    if args.cmd == "generate":
        from deepmath.evaluate.generate import generate
        from deepmath.fingerprint import deep_merge
        from deepmath.workflow import runtime_from_env

        # the engine's run-only keys (concurrency, timeouts, placement) come apart from --spec
        runtime = runtime_from_env("engine")
        if runtime and isinstance(raw.get("engine"), dict):
            raw = {**raw, "engine": deep_merge(raw["engine"], runtime)}
        spec = eval_spec(raw)
        generate(
            args.bench,
            spec,
            out=args.out,
            journal=args.journal,
            usage=args.usage,
            model_dir=args.model_dir,
            server_dir=args.server_dir,
            server_registry=args.server_registry,
        )
    elif args.cmd == "score":
        from deepmath.answers.authors.pool import authors_python
        from deepmath.evaluate.score import score

        spec = eval_spec(raw, need_engine=False)
        python = authors_python(args.authors_python, record=args.authors_record)
        score(
            args.inp,
            spec,
            out=args.out,
            scored_out=args.scored,
            authors_python=python,
            workers=args.workers,
        )
    else:
        from deepmath.evaluate.table import write_table

        write_table(
            args.metrics,
            raw,
            out_md=args.out_md,
            out_csv=args.out_csv,
            out_sensitivity_md=args.out_sensitivity_md,
            out_sensitivity_csv=args.out_sensitivity_csv,
            out_examples=args.out_examples,
        )


if __name__ == "__main__":
    run_cli(main)
