"""GRPO training with verl 0.9.x on a Ray cluster over the Slurm job's nodes (the paper's backend).

``python -m deepmath.train_verl --spec JSON --model-dir DIR --train P --val P --reward PATH
--work-dir DIR --done OUT.json [--dry-run]``

1. builds the ``python -m verl.trainer.main_ppo`` overrides from the run spec
   (``rl.runs.<name>``, deepmath.verl_recipe);
2. starts Ray over the job's nodes (deepmath.raycluster: head here, workers through ``srun``;
   one node: just the head), runs ``main_ppo`` on the head with ``RAY_ADDRESS`` set, and always
   tears Ray down;
3. checkpoints go to ``<work-dir>/checkpoints`` - outside the rule's declared outputs, so a
   failed or preempted job keeps them and the next attempt resumes (``trainer.resume_mode=auto``);
4. does not trust exit code 0: reads ``latest_checkpointed_iteration.txt`` and writes ``--done``
   (step, paths, overrides) only when the last checkpoint's step equals ``steps``.

Which Python runs verl: ``--python``, else ``$DEEPMATH_VERL_PYTHON``, else ``python`` (on a
cluster the rule runs inside the train conda env; here inside ``.venv-verl``). Ray's CLI is
taken next to that interpreter. ``scripts/`` is put on ``PYTHONPATH`` before Ray starts, so the
Ray workers that load ``reward.py`` by path can import ``deepmath``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deepmath import verl_recipe
from deepmath.io import DeepmathError, run_cli, setup_logging, write_json
from deepmath.io import load_spec as read_spec
from deepmath.sampling import read_report

log = logging.getLogger("deepmath.train_verl")

PYTHON_ENV = "DEEPMATH_VERL_PYTHON"
SCRIPTS_DIR = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- pure helpers


def load_spec(text: str) -> dict[str, Any]:
    """The run spec from a JSON string or a JSON file."""
    spec = read_spec(text.strip(), "config rl.runs.<name>")
    backend = spec.get("backend", "verl")
    if backend != "verl":
        raise DeepmathError(f"train_verl runs backend 'verl', the spec says {backend!r}")
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


def done_record(
    *,
    spec: Mapping[str, Any],
    step: int,
    ckpt_dir: Path,
    cmd: Sequence[str],
    overrides: Sequence[str],
    nodes: Sequence[str],
    exit_code: int | None,
    fsdp: Mapping[str, Any],
    paths: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "backend": "verl",
        "step": step,
        "steps": int(spec["steps"]),
        "checkpoint_dir": str(ckpt_dir),
        "actor_checkpoint": str(actor_dir(ckpt_dir, step)),
        "fsdp": dict(fsdp),
        "nodes": list(nodes),
        "exit_code": exit_code,
        "command": list(cmd),
        "overrides": list(overrides),
        "spec": dict(spec),
        **dict(paths),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def finish(
    *,
    spec: Mapping[str, Any],
    ckpt_dir: Path,
    exit_code: int | None,
    cmd: Sequence[str],
    overrides: Sequence[str],
    nodes: Sequence[str],
    paths: Mapping[str, str],
) -> dict[str, Any]:
    """The done record, only if the last checkpoint is the configured last step (any exit code).

    ``exit_code`` None: no training ran (the checkpoint was already complete).
    """
    steps = int(spec["steps"])
    step = latest_step(ckpt_dir)
    if step != steps:
        where = "there is no checkpoint" if step is None else f"the last checkpoint is step {step}"
        how = "did not run" if exit_code is None else f"exited with code {exit_code}"
        raise DeepmathError(
            f"verl main_ppo {how} but {where}, not step {steps}; the checkpoints in {ckpt_dir} "
            "are kept and a rerun resumes from them (trainer.resume_mode=auto)"
        )
    fsdp = check_actor_checkpoint(actor_dir(ckpt_dir, step))
    return done_record(
        spec=spec,
        step=step,
        ckpt_dir=ckpt_dir,
        cmd=cmd,
        overrides=overrides,
        nodes=nodes,
        exit_code=exit_code,
        fsdp=fsdp,
        paths=paths,
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


def _run_trainer(cmd: Sequence[str], env: Mapping[str, str], cwd: Path) -> int:
    """Run main_ppo in its own process group; a SIGTERM to us ends the whole group."""
    proc = subprocess.Popen(list(cmd), env=dict(env), cwd=cwd, start_new_session=True)
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=wait)
                if proc.poll() is not None:
                    break


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m deepmath.train_verl",
        description="GRPO (DAPO-style) with verl 0.9 main_ppo on Ray over the Slurm job's nodes.",
    )
    p.add_argument("--spec", required=True, help="run spec (rl.runs.<name>) as JSON or a file")
    p.add_argument("--model-dir", required=True, help="local HF folder of the init model")
    p.add_argument("--train", required=True, help="train parquet (verl RL format)")
    p.add_argument("--val", required=True, help="validation parquet (verl RL format)")
    p.add_argument("--reward", required=True, help="reward module file (deepmath/reward.py)")
    p.add_argument("--work-dir", required=True, help="checkpoints and logs (kept across attempts)")
    p.add_argument("--done", required=True, help="JSON written only when training is complete")
    p.add_argument("--name", help="experiment name (default: the work dir's name)")
    p.add_argument("--python", help=f"Python that runs verl (default ${PYTHON_ENV} or python)")
    p.add_argument("--nodes", help="nodes, head first (default: the Slurm job's nodes)")
    p.add_argument("--port", type=int, default=6379, help="Ray head port")
    p.add_argument("--ray-timeout", type=float, default=300.0, help="seconds to wait for Ray")
    p.add_argument("--dry-run", action="store_true", help="print the main_ppo command; run nothing")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    spec = load_spec(args.spec)
    work_dir = Path(args.work_dir).resolve()
    paths = {
        "model_dir": str(Path(args.model_dir).resolve()),
        "train": str(Path(args.train).resolve()),
        "val": str(Path(args.val).resolve()),
        "reward": str(Path(args.reward).resolve()),
        "work_dir": str(work_dir),
    }
    name = args.name or work_dir.name
    overrides = verl_recipe.build_overrides(
        spec,
        model_dir=paths["model_dir"],
        train=paths["train"],
        val=paths["val"],
        reward=paths["reward"],
        work_dir=work_dir,
        name=name,
    )
    python = verl_python(args.python)
    cmd = verl_recipe.command(overrides, python)
    if args.dry_run:
        print(verl_recipe.shell(cmd))
        return

    for key in ("train", "val", "reward"):
        if not Path(paths[key]).is_file():
            raise DeepmathError(f"--{key}: {paths[key]} does not exist")
    if not (Path(paths["model_dir"]) / "config.json").is_file():
        raise DeepmathError(f"--model-dir: {paths['model_dir']} has no config.json")
    check_reward_gate(Path(paths["train"]), spec.get("reward_gate", "think"))

    steps = int(spec["steps"])
    ckpt_dir = verl_recipe.checkpoint_dir(work_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    before = latest_step(ckpt_dir)
    if before is not None and before > steps:
        raise DeepmathError(
            f"{ckpt_dir} already has step {before} > steps {steps}: the config changed; "
            "move the old checkpoints away or raise steps"
        )
    nodes: list[str] = []
    code: int | None = None
    if before == steps:
        log.info("checkpoint at step %d already there (%s); not training again", steps, ckpt_dir)
    else:
        log.info(
            "training %s: %s", name, "from scratch" if before is None else f"resuming at {before}"
        )
        nodes = _nodes(args.nodes, int(spec.get("nodes", 1)))
        report = work_dir / verl_recipe.SAMPLING_REPORT
        report.unlink(missing_ok=True)  # a report from an earlier attempt is not this one's
        code = _train(args, cmd, nodes, int(spec.get("gpus_per_node", 8)), python, work_dir)
        reason = read_report(report) if code else None
        if reason:
            raise DeepmathError(
                f"{reason} (main_ppo exited with code {code}; the checkpoints in {ckpt_dir} are "
                "kept and a rerun resumes from them)"
            )

    record = finish(
        spec=spec,
        ckpt_dir=ckpt_dir,
        exit_code=code,
        cmd=cmd,
        overrides=overrides,
        nodes=nodes,
        paths=paths,
    )
    write_json(record, args.done)
    log.info("training complete at step %d; wrote %s", record["step"], args.done)


def _train(
    args: argparse.Namespace,
    cmd: Sequence[str],
    nodes: Sequence[str],
    gpus_per_node: int,
    python: str,
    work_dir: Path,
) -> int:
    from deepmath.raycluster import RayCluster
    from deepmath.serve import signals_raise

    # Ray workers inherit the raylets' environment (head here, workers through srun), and they
    # import deepmath when verl loads reward.py by path.
    pythonpath = [str(SCRIPTS_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    os.environ["PYTHONPATH"] = ":".join(dict.fromkeys(pythonpath))
    logs = work_dir / "logs"
    cluster = RayCluster(
        nodes,
        port=args.port,
        num_gpus=gpus_per_node,
        ray=_ray_next_to(python),
        python=python,
        timeout_s=args.ray_timeout,
        log_dir=logs,
    )
    with signals_raise(), cluster:
        env = {**os.environ, "RAY_ADDRESS": cluster.address}
        log.info("main_ppo on %s: %s", nodes[0], verl_recipe.shell(cmd))
        code = _run_trainer(cmd, env, work_dir)
    log.info("main_ppo exited with code %d", code)
    return code


if __name__ == "__main__":
    run_cli(main)
