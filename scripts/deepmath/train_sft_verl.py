"""SFT with verl 0.9's own SFT trainer, torchrun over the Slurm job's nodes (the paper's baselines).

``python -m deepmath.train_sft_verl --spec JSON --model-dir DIR --train P --val P --work-dir DIR
--out DONE.json [--dry-run]`` (the shared backend CLI, deepmath.backends)

1. counts the conversations (prepare_sft_data) and fixes the step count of ``epochs`` passes;
2. launches ``python -m torch.distributed.run ... -m verl.trainer.sft_trainer <overrides>``:
   standalone on one node, else one torchrun per node through ``srun`` with a c10d rendezvous
   on the first node;
3. checkpoints go to ``<work-dir>/checkpoints/global_step_N/`` (FSDP shards, the same manager
   and format as GRPO; ``merge_checkpoint`` turns the last one into a HF folder) and verl
   resumes from the latest (``trainer.resume_mode=auto``);
4. writes ``--out`` only when the last checkpoint is the final step.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import socket
from pathlib import Path
from typing import Any

from deepmath import sft_recipe
from deepmath.backends import Backend, Job, cli
from deepmath.io import DeepmathError, run_cli
from deepmath.train_verl import (
    PYTHON_ENV,
    SCRIPTS_DIR,
    _nodes,
    finish,
    latest_step,
    run_trainer,
    start_attempt,
    verl_python,
)

log = logging.getLogger("deepmath.train_sft_verl")


def step_dir(ckpt_dir: str | os.PathLike[str], step: int) -> Path:
    """SFT checkpoints hold the FSDP shards directly (GRPO's are under ``actor/``)."""
    return Path(ckpt_dir) / f"global_step_{step}"


def launch_command(
    python: str,
    overrides: list[str],
    *,
    nodes: list[str],
    gpus_per_node: int,
    port: int,
    job_id: str = "deepmath-sft",
) -> list[str]:
    """torchrun (``python -m torch.distributed.run``) for one node, or srun x torchrun."""
    torchrun = [python, "-m", "torch.distributed.run", f"--nproc_per_node={gpus_per_node}"]
    if len(nodes) <= 1:
        torchrun += ["--standalone", "--nnodes=1"]
        return [*torchrun, "-m", sft_recipe.SFT_MODULE, *overrides]
    torchrun += [
        f"--nnodes={len(nodes)}",
        "--rdzv_backend=c10d",
        f"--rdzv_endpoint={nodes[0]}:{port}",
        f"--rdzv_id={job_id}",
    ]
    # the shape is passed explicitly: the Snakemake job step strips SLURM_* but the job id
    # from the rule's shell (see deepmath.raycluster); --overlap shares the job's allocation
    srun = ["srun", f"--nodes={len(nodes)}", f"--ntasks={len(nodes)}", "--ntasks-per-node=1"]
    srun += ["--overlap", f"--gres=gpu:{gpus_per_node}", "--kill-on-bad-exit=1"]
    srun += [f"--nodelist={','.join(nodes)}"]
    return [*srun, *torchrun, "-m", sft_recipe.SFT_MODULE, *overrides]


class VerlSFT(Backend):
    """SFT with verl 0.9's SFT trainer (torchrun over the job's nodes)."""

    backend = "sft"
    trainer = "verl"
    description = __doc__.splitlines()[0]

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--python", help=f"Python that runs verl (default ${PYTHON_ENV})")
        parser.add_argument("--nodes", help="nodes, first = rendezvous (default: the job's)")
        parser.add_argument("--port", type=int, default=29500, help="torchrun rendezvous port")

    def prepare(self, job: Job) -> dict[str, Any]:
        import pyarrow.parquet as pq

        r = sft_recipe.recipe(job.spec)
        if not job.train.is_file():
            raise DeepmathError(f"--train: {job.train} does not exist (prepare_sft_data)")
        rows = pq.read_metadata(job.train).num_rows
        steps = sft_recipe.total_steps(rows, r)
        job.spec = {**job.spec, "steps": steps}
        overrides = sft_recipe.verl_overrides(
            job.spec,
            model_dir=job.model_dir,
            train=job.train,
            work_dir=job.work_dir,
            steps=steps,
            name=job.name,
        )
        python = verl_python(job.args.python)
        want = int(job.spec.get("nodes", 1))
        in_slurm = bool(os.environ.get("SLURM_JOB_NODELIST") or os.environ.get("SLURM_JOB_ID"))
        nodes = (
            _nodes(job.args.nodes, want)
            if (job.args.nodes or in_slurm or want > 1)
            else [socket.gethostname()]
        )
        command = launch_command(
            python,
            overrides,
            nodes=nodes,
            gpus_per_node=int(job.spec.get("gpus_per_node", 8)),
            port=job.args.port,
            job_id=os.environ.get("SLURM_JOB_ID", "deepmath-sft"),
        )
        return {
            "rows": rows,
            "steps": steps,
            "overrides": overrides,
            "command": command,
            "nodes": nodes,
            "python": python,
            "ckpt_dir": sft_recipe.checkpoint_dir(job.work_dir),
            "done": latest_step(sft_recipe.checkpoint_dir(job.work_dir)) or 0,
        }

    def dry_run(self, job: Job, plan: dict[str, Any]) -> str:
        return shlex.join(plan["command"])

    def run(self, job: Job, plan: dict[str, Any]) -> int | None:
        if not (job.model_dir / "config.json").is_file():
            raise DeepmathError(f"--model-dir: {job.model_dir} has no config.json")
        before = start_attempt(plan["ckpt_dir"], plan["steps"])
        if before == plan["steps"]:
            log.info("checkpoint at step %d already there; not training", before)
            return None
        how = "from scratch" if before is None else f"resuming at {before}"
        log.info(
            "SFT %s for %d step(s) on %d row(s): %s", job.name, plan["steps"], plan["rows"], how
        )
        pythonpath = [str(SCRIPTS_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
        env = {**os.environ, "PYTHONPATH": ":".join(dict.fromkeys(pythonpath))}
        log.info("launching: %s", shlex.join(plan["command"]))
        code = run_trainer(plan["command"], env, job.work_dir)
        log.info("the SFT trainer exited with code %d", code)
        return code

    def finish(self, job: Job, plan: dict[str, Any], code: int | None) -> dict[str, Any]:
        return finish(
            spec=job.spec,
            ckpt_dir=plan["ckpt_dir"],
            exit_code=code,
            cmd=plan["command"],
            overrides=plan["overrides"],
            nodes=plan["nodes"],
            paths={**job.paths(), "train_rows": str(plan["rows"])},
            what="verl sft_trainer",
            model_dir=step_dir,
        )


def main(argv: list[str] | None = None) -> None:
    cli(VerlSFT(), argv, prog="python -m deepmath.train_sft_verl")


if __name__ == "__main__":
    run_cli(main)
