"""GRPO training with verl 0.9.x on a Ray cluster over the Slurm job's nodes (the paper's backend).

``python -m deepmath.train_verl --spec JSON --model-dir DIR --train P --val P --reward PATH
--work-dir DIR --out DONE.json [--dry-run]`` (the shared backend CLI, deepmath.backends)

1. builds the ``python -m verl.trainer.main_ppo`` overrides from the run spec
   (``rl.runs.<name>``, deepmath.verl_recipe);
2. starts Ray over the job's nodes (deepmath.raycluster: head here, workers through ``srun``;
   one node: just the head), runs ``main_ppo`` on the head with ``RAY_ADDRESS`` set, and always
   tears Ray down;
3. checkpoints go to ``<work-dir>/checkpoints`` - outside the rule's declared outputs, so a
   failed or preempted job keeps them and the next attempt resumes (``trainer.resume_mode=auto``);
4. does not trust exit code 0: reads ``latest_checkpointed_iteration.txt`` and writes ``--out``
   (step, paths, overrides) only when the last checkpoint's step equals ``steps``.

Which Python runs verl: ``--python``, else ``$DEEPMATH_VERL_PYTHON``, else ``python`` (on a
cluster the rule runs inside the train conda env; here inside ``.venv-verl``). Ray's CLI is
taken next to that interpreter. ``scripts/`` is put on ``PYTHONPATH`` before Ray starts, so the
Ray workers that load ``reward.py`` by path can import ``deepmath``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepmath import verl_recipe
from deepmath.backends import (
    Backend,
    Job,
    add_reward_arguments,
    check_reward,
    cli,
    record,
    require_last_step,
    reward_env,
)
from deepmath.io import DeepmathError, run_cli
from deepmath.io import load_spec as read_spec
from deepmath.procs import end_group, signals_raise
from deepmath.sampling import read_report

log = logging.getLogger("deepmath.train_verl")

PYTHON_ENV = "DEEPMATH_VERL_PYTHON"
SCRIPTS_DIR = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- pure helpers


def load_spec(text: str) -> dict[str, Any]:
    """The run spec from a JSON string or a JSON file."""
    spec = read_spec(text.strip(), "config rl.runs.<name>")
    VerlGRPO().check_spec(spec)
    return spec


def verl_python(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return flag or env.get(PYTHON_ENV) or "python"


def latest_step(ckpt_dir: str | os.PathLike[str]) -> int | None:
    """The step in ``latest_checkpointed_iteration.txt``, or None when there is none yet."""
    tracker = Path(ckpt_dir) / verl_recipe.LATEST_FILE
    if not tracker.is_file():
        return None
    text = tracker.read_text().strip()
    try:
        return int(text)
    except ValueError:
        raise DeepmathError(f"{tracker} holds {text!r}, not a step number") from None


def actor_dir(ckpt_dir: str | os.PathLike[str], step: int) -> Path:
    return Path(ckpt_dir) / f"global_step_{step}" / "actor"


def shards_dir(ckpt_dir: str | os.PathLike[str], step: int) -> Path:
    """Where a step's FSDP shards are: ``actor/`` for GRPO, the step folder itself for SFT."""
    actor = actor_dir(ckpt_dir, step)
    return actor if actor.is_dir() else Path(ckpt_dir) / f"global_step_{step}"


def check_actor_checkpoint(path: Path) -> dict[str, Any]:
    """A complete FSDP actor checkpoint: fsdp_config.json, every rank's model shard, HF config."""
    cfg_file = path / "fsdp_config.json"
    if not cfg_file.is_file():
        raise DeepmathError(f"{path} is not a complete verl FSDP checkpoint (no fsdp_config.json)")
    cfg = json.loads(cfg_file.read_text())
    world = int(cfg.get("world_size", 0))
    missing = [
        f"model_world_size_{world}_rank_{r}.pt"
        for r in range(world)
        if not (path / f"model_world_size_{world}_rank_{r}.pt").is_file()
    ]
    if world < 1 or missing:
        raise DeepmathError(f"{path}: incomplete checkpoint, missing {', '.join(missing) or '?'}")
    if not (path / "huggingface" / "config.json").is_file():
        raise DeepmathError(f"{path}: no huggingface/config.json (the merger needs it)")
    return cfg


def finish(
    *,
    spec: Mapping[str, Any],
    ckpt_dir: Path,
    exit_code: int | None,
    cmd: Sequence[str],
    overrides: Sequence[str],
    nodes: Sequence[str],
    paths: Mapping[str, str],
    what: str = "verl main_ppo",
    model_dir: Any = None,
) -> dict[str, Any]:
    """The done record, only if the last checkpoint is the configured last step (any exit code).

    ``exit_code`` None: no training ran (the checkpoint was already complete). ``model_dir``
    maps (checkpoint dir, step) to the folder with the FSDP shards (default: ``actor/``).
    """
    steps = int(spec["steps"])
    step = require_last_step(
        what=what,
        step=latest_step(ckpt_dir),
        steps=steps,
        code=exit_code,
        where=ckpt_dir,
        resume="trainer.resume_mode=auto",
    )
    shards = (model_dir or actor_dir)(ckpt_dir, step)
    fsdp = check_actor_checkpoint(shards)
    return record(
        str(spec.get("backend", "verl")),
        spec,
        step=step,
        paths=paths,
        checkpoint_dir=str(ckpt_dir),
        actor_checkpoint=str(shards),
        fsdp=dict(fsdp),
        nodes=list(nodes),
        exit_code=exit_code,
        command=list(cmd),
        overrides=list(overrides),
    )


def check_reward_gate(train: Path, gate: str) -> None:
    """The rows' ``extra_info.reward_gate`` (what compute_score uses) must match the run's."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(train)
    if "extra_info" not in pf.schema_arrow.names:
        raise DeepmathError(f"{train}: no extra_info column (not verl RL data?)")
    for batch in pf.iter_batches(batch_size=1, columns=["extra_info"]):
        rows = batch.to_pylist()
        if rows:
            got = (rows[0]["extra_info"] or {}).get("reward_gate")
            if got is not None and got != gate:
                raise DeepmathError(
                    f"{train}: rows carry reward_gate={got!r} but the run says {gate!r}; "
                    "rebuild the RL data for this run"
                )
        return


# --------------------------------------------------------------------------- running


def _ray_next_to(python: str) -> str:
    found = shutil.which(python)
    if found:
        # not resolved: a venv's bin/python is a symlink to the base interpreter
        candidate = Path(found).parent / "ray"
        if candidate.is_file():
            return str(candidate)
    return "ray"


def _nodes(explicit: str | None, want: int) -> list[str]:
    from deepmath.raycluster import job_nodes

    in_slurm = bool(os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_JOB_ID"))
    if explicit or in_slurm:
        nodes = job_nodes(explicit)
    elif want == 1:
        nodes = [socket.gethostname()]
    else:
        raise DeepmathError(
            f"the run wants {want} nodes but this is not a Slurm job; run it through the Slurm "
            "profile or pass --nodes"
        )
    if len(nodes) != want:
        raise DeepmathError(
            f"the job has {len(nodes)} node(s) ({','.join(nodes)}) but the run wants {want} "
            "(rl.runs.<name>.nodes); fix the rule's resources or the config"
        )
    return nodes


def run_trainer(cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
    """Run the trainer in its own process group; leaving (a SIGTERM to us, an error) ends the
    whole group, Ray and vLLM workers included."""
    proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, start_new_session=True)
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:
            end_group(proc, grace_s=30)


def start_attempt(ckpt_dir: Path, steps: int) -> int | None:
    """The step an earlier attempt stopped at (None: none); past ``steps`` is an error."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    before = latest_step(ckpt_dir)
    if before is not None and before > steps:
        raise DeepmathError(
            f"{ckpt_dir} already has step {before} > steps {steps}: the config changed; "
            "move the old checkpoints away or raise steps"
        )
    return before


def run_on_nodes(
    args: argparse.Namespace,
    cmd: Sequence[str],
    spec: Mapping[str, Any],
    python: str,
    work_dir: Path,
) -> tuple[int, list[str]]:
    """Start Ray over the job's nodes, run ``cmd`` on the head, always tear Ray down."""
    from deepmath.raycluster import RayCluster

    nodes = _nodes(args.nodes, int(spec.get("nodes", 1)))
    # Ray workers inherit the raylets' environment (head here, workers through srun), and they
    # import deepmath when verl loads reward.py by path.
    pythonpath = [str(SCRIPTS_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    os.environ["PYTHONPATH"] = ":".join(dict.fromkeys(pythonpath))
    os.environ.pop(verl_recipe.SKIP_UPDATE_ENV, None)
    os.environ.update(verl_recipe.worker_env(spec))  # e.g. the skip-update limit
    cluster = RayCluster(
        nodes,
        port=args.port,
        num_gpus=int(spec.get("gpus_per_node", 8)),
        ray=_ray_next_to(python),
        python=python,
        timeout_s=args.ray_timeout,
        log_dir=work_dir / "logs",
    )
    with signals_raise(), cluster:
        env = {**os.environ, "RAY_ADDRESS": cluster.address}
        log.info("main_ppo on %s: %s", nodes[0], verl_recipe.shell(cmd))
        code = run_trainer(cmd, env, work_dir)
    log.info("main_ppo exited with code %d", code)
    return code, nodes


class VerlGRPO(Backend):
    """GRPO (DAPO-style) with verl 0.9 main_ppo on Ray over the Slurm job's nodes."""

    backend = "verl"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--reward", required=True, help="reward module (deepmath/reward.py)")
        parser.add_argument("--python", help=f"Python that runs verl (default ${PYTHON_ENV})")
        parser.add_argument("--nodes", help="nodes, head first (default: the Slurm job's nodes)")
        parser.add_argument("--port", type=int, default=6379, help="Ray head port")
        parser.add_argument("--ray-timeout", type=float, default=300.0, help="s to wait for Ray")
        add_reward_arguments(parser)

    def prepare(self, job: Job) -> dict[str, Any]:
        reward = str(Path(job.args.reward).resolve())
        overrides = verl_recipe.build_overrides(
            job.spec,
            model_dir=job.model_dir,
            train=job.train,
            val=job.val,
            reward=reward,
            work_dir=job.work_dir,
            name=job.name,
        )
        python = verl_python(job.args.python)
        return {
            "reward_env": reward_env(job),
            "overrides": overrides,
            "python": python,
            "command": verl_recipe.command(overrides, python),
            "paths": {**job.paths(), "reward": reward},
            "ckpt_dir": verl_recipe.checkpoint_dir(job.work_dir),
            "done": latest_step(verl_recipe.checkpoint_dir(job.work_dir)) or 0,
        }

    def dry_run(self, job: Job, plan: dict[str, Any]) -> str:
        return verl_recipe.shell(plan["command"])

    def run(self, job: Job, plan: dict[str, Any]) -> int | None:
        paths = plan["paths"]
        for key in ("train", "val", "reward"):
            if not Path(paths[key]).is_file():
                raise DeepmathError(f"--{key}: {paths[key]} does not exist")
        if not (job.model_dir / "config.json").is_file():
            raise DeepmathError(f"--model-dir: {job.model_dir} has no config.json")
        check_reward_gate(job.train, job.spec.get("reward_gate", "think"))
        plan["reward"] = check_reward(job, plan["reward_env"])
        steps = int(job.spec["steps"])
        before = start_attempt(plan["ckpt_dir"], steps)
        plan["nodes"] = []
        if before == steps:
            log.info("checkpoint at step %d already there (%s); not training", steps, job.work_dir)
            return None
        how = "from scratch" if before is None else f"resuming at {before}"
        log.info("training %s: %s", job.name, how)
        report = job.work_dir / verl_recipe.SAMPLING_REPORT
        report.unlink(missing_ok=True)  # a report from an earlier attempt is not this one's
        os.environ.update(plan["reward_env"])  # Ray's workers inherit it with the raylets
        code, plan["nodes"] = run_on_nodes(
            job.args, plan["command"], job.spec, plan["python"], job.work_dir
        )
        reason = read_report(report) if code else None
        if reason:
            raise DeepmathError(
                f"{reason} (main_ppo exited with code {code}; the checkpoints in "
                f"{plan['ckpt_dir']} are kept and a rerun resumes from them)"
            )
        return code

    def finish(self, job: Job, plan: dict[str, Any], code: int | None) -> dict[str, Any]:
        out = finish(
            spec=job.spec,
            ckpt_dir=plan["ckpt_dir"],
            exit_code=code,
            cmd=plan["command"],
            overrides=plan["overrides"],
            nodes=plan.get("nodes", []),
            paths=plan["paths"],
        )
        out["reward"] = plan.get("reward") or check_reward(job, plan["reward_env"])
        log.info("training complete at step %d; writing %s", out["step"], job.out)
        return out


def main(argv: list[str] | None = None) -> None:
    cli(VerlGRPO(), argv, prog="python -m deepmath.train_verl")


if __name__ == "__main__":
    run_cli(main)
