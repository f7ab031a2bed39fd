"""What every training backend shares: one interface (prepare, run, finish) and one CLI.

A backend trains one ``rl.runs.<name>`` entry: GRPO with verl on Ray (deepmath.train_verl) or
with TRL (deepmath.train_trl), SFT with verl's SFT trainer (deepmath.train_sft_verl) or TRL's
SFTTrainer (deepmath.train_sft_trl). Every one of them keeps its state in ``--work-dir``
(outside the rule's declared outputs, so a failed or preempted job resumes instead of
restarting), trusts no exit code (the output is written only when the last checkpoint is the
configured last step) and writes ``--out`` atomically. The three steps:

- ``prepare(job)``: check the inputs, build the trainer's command or configuration, find where
  an earlier attempt stopped. Pure enough to run under ``--dry-run``.
- ``run(job, plan)``: train (or resume); returns the trainer's exit code, None when nothing
  needed training (the last step was already checkpointed).
- ``finish(job, plan, code)``: check the final checkpoint and write the output; returns the
  record (:func:`record`) that goes into the output.

``python -m deepmath.<backend module> --spec JSON --model-dir DIR --train P --val P
--work-dir DIR --out OUT [--dry-run]`` is the same for all of them (:func:`cli`); a backend adds
its own flags with ``add_arguments``.
"""

from __future__ import annotations

import argparse
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepmath.fingerprint import claim, digest, file_digest, model_identity, source_digest
from deepmath.io import DeepmathError, load_spec, setup_logging

log = logging.getLogger("deepmath.backends")


@dataclass
class Job:
    """One training job: the run spec and the paths the rule hands over (all absolute)."""

    spec: dict[str, Any]
    model_dir: Path
    train: Path
    val: Path
    work_dir: Path
    out: Path
    name: str
    args: argparse.Namespace = field(default_factory=argparse.Namespace)

    @property
    def steps(self) -> int | None:
        steps = self.spec.get("steps")
        return int(steps) if steps is not None else None

    def paths(self) -> dict[str, str]:
        return {
            "model_dir": str(self.model_dir),
            "train": str(self.train),
            "val": str(self.val),
            "work_dir": str(self.work_dir),
        }


class Backend(ABC):
    """A training backend: ``backend`` (and for SFT ``trainer``) is the spec value it trains."""

    backend: str = ""
    trainer: str | None = None
    description: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:  # noqa: B027
        """Flags of this backend only (the shared ones are :func:`cli`'s)."""

    def check_spec(self, spec: Mapping[str, Any]) -> None:
        """Refuse a spec meant for another backend (a spec without one is taken as ours)."""
        got = spec.get("backend", self.backend)
        if got != self.backend:
            raise DeepmathError(
                f"{type(self).__name__} trains backend {self.backend!r}, the spec says {got!r}"
            )
        trainer = spec.get("trainer", "verl")
        if self.trainer is not None and trainer != self.trainer:
            raise DeepmathError(
                f"{type(self).__name__} trains {self.backend} with {self.trainer!r}, the spec "
                f"says trainer {trainer!r}"
            )

    @abstractmethod
    def prepare(self, job: Job) -> dict[str, Any]: ...

    @abstractmethod
    def run(self, job: Job, plan: dict[str, Any]) -> int | None: ...

    @abstractmethod
    def finish(self, job: Job, plan: dict[str, Any], code: int | None) -> dict[str, Any]: ...

    def dry_run(self, job: Job, plan: dict[str, Any]) -> str:
        """What ``--dry-run`` prints (default: the plan's command)."""
        import shlex

        return shlex.join(plan.get("command") or [])

    def write(self, job: Job, plan: dict[str, Any], record: dict[str, Any]) -> None:
        """Write the output (default: the record as JSON at ``--out``)."""
        from deepmath.io import write_json

        write_json(record, job.out)


def recipe_items(
    spec: Mapping[str, Any],
    required: Sequence[str],
    optional: Mapping[str, Any],
    what: str,
) -> dict[str, Any]:
    """The run's ``recipe`` with the optional items' defaults; a missing or unknown item is an
    error that names it (and what is allowed)."""
    raw = spec.get("recipe")
    if not isinstance(raw, Mapping):
        raise DeepmathError(f"{what} run: 'recipe' must be a mapping of its settings")
    missing = [k for k in required if k not in raw]
    if missing:
        raise DeepmathError(f"{what} recipe: missing {', '.join(missing)}")
    unknown = sorted(set(raw) - set(required) - set(optional))
    if unknown:
        allowed = ", ".join([*required, *optional])
        raise DeepmathError(
            f"{what} recipe: unknown item(s) {', '.join(unknown)}; allowed: {allowed}"
        )
    return {**optional, **dict(raw)}


def trainer_kwargs(
    spec: Mapping[str, Any], *, save_every: int, use_cpu: bool, dtype: str
) -> dict[str, Any]:
    """transformers TrainingArguments shared by our TRL trainers (GRPO and SFT): checkpoints
    (two kept, resumable), a log line per step, seeds, device and mixed precision."""
    seed = int(spec.get("seed", 42))
    return {
        "save_strategy": "steps",
        "save_steps": int(save_every),
        "save_total_limit": 2,
        "logging_steps": 1,
        "report_to": "none",
        "seed": seed,
        "data_seed": seed,
        "use_cpu": use_cpu,
        "bf16": dtype == "bfloat16",
        "dataloader_num_workers": 0,
    }


def require_last_step(
    *, what: str, step: int | None, steps: int, code: int | None, where: Path, resume: str
) -> int:
    """The shared rule: trust the checkpoint, not the exit code."""
    if step != steps:
        found = "there is no checkpoint" if step is None else f"the last checkpoint is step {step}"
        how = "did not run" if code is None else f"exited with code {code}"
        raise DeepmathError(
            f"{what} {how} but {found}, not step {steps}; the checkpoints in {where} are kept "
            f"and a rerun resumes from them ({resume})"
        )
    return step


def record(
    backend: str, spec: Mapping[str, Any], *, step: int, paths: Mapping[str, str], **details: Any
) -> dict[str, Any]:
    """The output record every backend writes: what ran, from what, to which step, when."""
    return {
        "backend": backend,
        "step": step,
        "steps": int(spec.get("steps") or step),
        **details,
        "spec": dict(spec),
        **dict(paths),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def parser_for(backend: Backend, prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=backend.description)
    p.add_argument("--spec", required=True, help="run spec (rl.runs.<name>) as JSON or a file")
    p.add_argument("--model-dir", required=True, help="local HF folder of the init model")
    p.add_argument("--train", required=True, help="training parquet")
    p.add_argument("--val", required=True, help="validation parquet (may have no rows)")
    p.add_argument("--work-dir", required=True, help="checkpoints and logs (kept across attempts)")
    p.add_argument("--out", required=True, help="written only when training is complete")
    p.add_argument("--name", help="experiment name (default: the work dir's name)")
    p.add_argument("--dry-run", action="store_true", help="print what would run; run nothing")
    p.add_argument("-v", "--verbose", action="store_true")
    backend.add_arguments(p)
    return p


def cli(
    backend: Backend, argv: Sequence[str] | None = None, prog: str | None = None
) -> dict[str, Any] | None:
    """Parse the shared flags, then prepare -> run -> finish -> write; returns the record."""
    args = parser_for(backend, prog or f"python -m deepmath ({backend.backend})").parse_args(argv)
    setup_logging(args.verbose)
    spec = load_spec(args.spec.strip(), "config rl.runs.<name>")
    backend.check_spec(spec)
    work_dir = Path(args.work_dir).resolve()
    job = Job(
        spec=spec,
        model_dir=Path(args.model_dir).resolve(),
        train=Path(args.train).resolve(),
        val=Path(args.val).resolve(),
        work_dir=work_dir,
        out=Path(args.out).resolve(),
        name=args.name or work_dir.name,
        args=args,
    )
    if args.dry_run:
        print(backend.dry_run(job, backend.prepare(job)))
        return None
    return execute(backend, job)


# Run keys that do not shape the trained weights: the run's name (only the work dir's) and the
# `models:` entry it starts from (the folder's identity stands for it, so renaming the entry
# retrains nothing).
SPEC_KEYS_NOT_SHAPING = ("name", "init")
# GRPO runs keep a constant learning rate (after warmup), so steps 1..k are the same whatever
# the total: raising `steps` continues a run from its last checkpoint instead of restarting it.
# (SFT's schedule spans the whole run; its step count follows from its data and recipe.)
GRPO_KEYS_NOT_SHAPING = ("steps",)
_PACKAGE = Path(__file__).resolve().parent


def reward_code(job: Job) -> str | None:
    """Digest of the reward function's code and the checker it calls (None: a run with no
    reward, i.e. SFT). verl loads the file the rule hands over; TRL imports deepmath.reward.
    With the authors' scorer, also the versions its interpreter runs (math-verify, antlr,
    sympy, Python): another math-verify gives other rewards."""
    if job.spec.get("backend") == "sft":
        return None
    reward = getattr(job.args, "reward", None) or _PACKAGE / "reward.py"
    code = source_digest([reward, _PACKAGE / "answers"])
    versions = reward_versions(job, reward_env(job))
    return code if versions is None else digest({"code": code, "authors_env": versions})


def add_reward_arguments(parser: argparse.ArgumentParser) -> None:
    """The GRPO backends' flags for the authors' scorer's interpreter."""
    parser.add_argument(
        "--authors-record",
        help="the authors_python rule's record of the authors' interpreter (JSON)",
    )
    parser.add_argument(
        "--authors-python",
        help="the authors' interpreter (default: the record, then $DEEPMATH_AUTHORS_PYTHON, "
        "then .venv-authors)",
    )


def reward_env(job: Job) -> dict[str, str]:
    """The environment the run's reward needs (deepmath.reward.trainer_env)."""
    from deepmath import reward

    return reward.trainer_env(
        job.spec,
        getattr(job.args, "authors_python", None),
        getattr(job.args, "authors_record", None),
    )


_VERSIONS: dict[str, dict[str, Any] | None] = {}


def reward_versions(job: Job, env: dict[str, str]) -> dict[str, Any] | None:
    """The authors' interpreter's versions (None for our checker), asked once per interpreter."""
    from deepmath import reward

    key = f"{reward.spec_scorer(job.spec)}:{sorted(env.items())}"
    if key not in _VERSIONS:
        _VERSIONS[key] = reward.scorer_versions(job.spec, env)
    return _VERSIONS[key]


def check_reward(job: Job, env: dict[str, str]) -> dict[str, Any]:
    """What the run's reward is computed with, for its output record; a scorer that does not
    start fails here, before training; a deviation from the paper is logged."""
    from deepmath import reward

    deviations = reward.deviations(job.spec)
    for why in deviations.values():
        log.warning("reward deviates from the paper: %s", why)
    return {
        "scorer": reward.spec_scorer(job.spec),
        "interpreter": env.get(reward.AUTHORS_PYTHON_ENV),
        "versions": reward_versions(job, env),
        "deviations": deviations,
    }


def training_fingerprint(job: Job) -> dict[str, Any]:
    """Everything that shapes a training run's checkpoints: the run spec (less its name), the
    content of the train and val files, the init model's identity, the chat template, the
    reward code and, for a ``dtype: auto`` run, the dtype it resolves to on this machine."""
    skip = SPEC_KEYS_NOT_SHAPING
    if job.spec.get("backend") != "sft":
        skip += GRPO_KEYS_NOT_SHAPING
    spec = {k: v for k, v in job.spec.items() if k not in skip}
    out: dict[str, Any] = {
        "spec": spec,
        "train": file_digest(job.train) if job.train.is_file() else None,
        "val": file_digest(job.val) if job.val.is_file() else None,
        "init_model": model_identity(job.model_dir),
        "reward_code": reward_code(job),
    }
    template = spec.get("chat_template")
    if template:
        from deepmath.io import resolve_path

        path = Path(resolve_path(str(template)))
        out["chat_template"] = file_digest(path) if path.is_file() else str(template)
    if "dtype" in spec:
        out["dtype"] = _resolved_dtype(spec["dtype"])
    return out


def _resolved_dtype(requested: Any) -> str:
    from deepmath import dtypes

    try:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        device = "cpu"
    return dtypes.resolve(requested, device, what="training")


def execute(backend: Backend, job: Job) -> dict[str, Any]:
    """claim the work dir -> prepare -> run -> finish -> write; returns the record.

    The work dir belongs to one fingerprint (:func:`training_fingerprint`): checkpoints made
    under another spec, data, init model, template or reward are moved aside (named in the log)
    and training starts fresh; a match resumes from the last checkpoint.
    """
    fingerprint = training_fingerprint(job)
    state = claim(job.work_dir, fingerprint, f"training {job.name}", folder=True)
    plan = backend.prepare(job)
    before = int(plan.get("done") or 0)
    code = backend.run(job, plan)
    out = backend.finish(job, plan, code)
    out["state"] = {
        "fingerprint": state["digest"],
        "work_dir": state["status"],  # new, match (resumed) or moved (old state set aside)
        "moved_aside_to": state["moved_to"],
        "changes": state["changes"],
        "steps_before_this_attempt": before,
        "steps_this_attempt": int(out["step"]) - before,
    }
    out["fingerprint"] = fingerprint
    backend.write(job, plan, out)
    return out
