"""Evaluation: generate n samples per benchmark problem, score them, tabulate against the paper.

One command per rule (``python -m deepmath.evaluate``, see :mod:`deepmath.evaluate.cli`)::

    python -m deepmath.evaluate generate --bench B.parquet --model-dir DIR --spec JSON \\
        --journal J.jsonl --server-dir DIR [--server-registry DIR] --out responses.parquet
    python -m deepmath.evaluate score --in responses.parquet --spec JSON --out metrics.json \\
        [--scored generations.parquet] [--authors-record python.json | --authors-python PY]
    python -m deepmath.evaluate table --metrics M1.json M2.json ... --spec JSON \\
        --out-md main_results.md --out-csv main_results.csv \\
        [--out-sensitivity-md S.md --out-sensitivity-csv S.csv --out-examples E.md]

``--spec`` is the config's ``evaluation`` section merged with the evaluated model's entry (JSON
text, or the path of a JSON file). The modules, in the order a sample passes through them:

- :mod:`~deepmath.evaluate.spec`: every key, validated once (:data:`EVAL_KEYS`);
- :mod:`~deepmath.evaluate.generate`: prompts as the authors' ``uni_eval.py`` builds them, a
  vLLM server or vLLM's offline engine, one resumable journal;
- :mod:`~deepmath.evaluate.score`: every sample judged by the authors' scorer (in their pinned
  environment) and by our checker, each with the benchmark's rule; both metric sets, where
  they differ, and the per-sample records;
- :mod:`~deepmath.evaluate.table`: the results tables, one per model family, with the verdicts
  of ``scoring.scorer``; the scorer-sensitivity table and its examples page.
"""

from deepmath.evaluate.generate import (
    build_requests,
    eval_role,
    generate,
    generate_offline,
    generate_server,
    generation_rows,
    load_benchmark,
    messages_for,
    offline_dtype,
    offline_llm_kwargs,
    offline_sampling_kwargs,
    prompt_tokens,
    render_prompt,
    vllm_version,
)
from deepmath.evaluate.score import (
    AUTHORS_RULES,
    SCORERS,
    authors_rule,
    authors_verdicts,
    metrics_from_scored,
    score,
    score_samples,
    scorer_disagreement,
    scoring_policy,
    text_rules,
    vote_key,
)
from deepmath.evaluate.spec import (
    BENCH_COLUMNS,
    DEFAULT_SYSTEM_TEXT,
    ENGINE_KEYS,
    EVAL_KEYS,
    OFFLINE_KEYS,
    ROLE,
    RULE_KEYS,
    SCORING_KEYS,
    EvalSpec,
    eval_spec,
    load_spec_arg,
    scoring_rule,
)
from deepmath.evaluate.table import (
    examples_page,
    published,
    results_table,
    sensitivity_table,
    table_scorer,
    write_table,
)

__all__ = [
    "AUTHORS_RULES",
    "BENCH_COLUMNS",
    "DEFAULT_SYSTEM_TEXT",
    "ENGINE_KEYS",
    "EVAL_KEYS",
    "EvalSpec",
    "OFFLINE_KEYS",
    "ROLE",
    "RULE_KEYS",
    "SCORERS",
    "SCORING_KEYS",
    "authors_rule",
    "authors_verdicts",
    "build_requests",
    "eval_role",
    "eval_spec",
    "examples_page",
    "generate",
    "generate_offline",
    "generate_server",
    "generation_rows",
    "load_benchmark",
    "load_spec_arg",
    "messages_for",
    "metrics_from_scored",
    "offline_dtype",
    "offline_llm_kwargs",
    "offline_sampling_kwargs",
    "prompt_tokens",
    "published",
    "render_prompt",
    "results_table",
    "score",
    "score_samples",
    "scorer_disagreement",
    "scoring_policy",
    "scoring_rule",
    "sensitivity_table",
    "table_scorer",
    "text_rules",
    "vllm_version",
    "vote_key",
    "write_table",
]
