"""Merge a verl FSDP checkpoint (GRPO actor or SFT) into a Hugging Face folder (runs on CPU).

``python -m deepmath.merge --work-dir DIR --step N|latest --out DIR``

Runs ``python -m verl.model_merger merge --backend fsdp --local_dir
<work-dir>/checkpoints/global_step_N/actor --target_dir <tmp>`` with the verl Python
(``--python``, else ``$DEEPMATH_VERL_PYTHON``, else ``python``), checks that the result is a
loadable HF folder (config + safetensors weights), writes ``deepmath_merge.json`` (provenance)
into it and renames it onto ``--out`` only then. verl's merger writes bfloat16 weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from deepmath import verl_recipe
from deepmath.io import DeepmathError, atomic_path, run_cli, setup_logging
from deepmath.templates import install_chat_template, read_chat_template
from deepmath.train_verl import check_actor_checkpoint, latest_step, shards_dir, verl_python

log = logging.getLogger("deepmath.merge")

PROVENANCE = "deepmath_merge.json"


def resolve_step(ckpt_dir: Path, step: str) -> int:
    """``latest`` -> the tracker's step; else the number; the step folder must exist."""
    if step == "latest":
        found = latest_step(ckpt_dir)
        if found is None:
            raise DeepmathError(f"no {verl_recipe.LATEST_FILE} in {ckpt_dir}: nothing trained yet")
        return found
    try:
        number = int(step)
    except ValueError:
        raise DeepmathError(f"--step must be a number or 'latest', got {step!r}") from None
    if not shards_dir(ckpt_dir, number).is_dir():
        have = sorted(
            int(p.name.removeprefix("global_step_"))
            for p in ckpt_dir.glob("global_step_*")
            if p.name.removeprefix("global_step_").isdigit()
        )
        raise DeepmathError(
            f"no checkpoint for step {number} in {ckpt_dir}; steps there: {have or 'none'}"
        )
    return number


def merger_command(python: str, local_dir: Path, target_dir: Path) -> list[str]:
    return [
        python,
        "-m",
        "verl.model_merger",
        "merge",
        "--backend",
        "fsdp",
        "--local_dir",
        str(local_dir),
        "--target_dir",
        str(target_dir),
    ]


def check_hf_folder(path: Path) -> list[str]:
    """The merged folder must have a config and safetensors weights; returns the file names."""
    if not (path / "config.json").is_file():
        raise DeepmathError(f"the merger wrote no config.json into {path}")
    if not list(path.glob("*.safetensors")):
        raise DeepmathError(f"the merger wrote no *.safetensors weights into {path}")
    return sorted(p.name for p in path.iterdir() if p.is_file())


def _verl_version(python: str) -> str | None:
    code = "import importlib.metadata as m; print(m.version('verl'))"
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def merge(
    work_dir: Path, step: str, out: Path, python: str, chat_template: Path | None = None
) -> dict[str, Any]:
    """Merge one step into ``out``; ``chat_template`` (the run's own, e.g. ORZ) is installed in
    the folder so that evaluation prompts the model as it was trained."""
    template = read_chat_template(chat_template) if chat_template else None
    ckpt_dir = verl_recipe.checkpoint_dir(work_dir)
    number = resolve_step(ckpt_dir, step)
    local_dir = shards_dir(ckpt_dir, number)
    fsdp = check_actor_checkpoint(local_dir)
    cmd: list[str] = []
    with atomic_path(out) as tmp:
        cmd = merger_command(python, local_dir, tmp)
        log.info("merging step %d: %s", number, verl_recipe.shell(cmd))
        started = time.monotonic()
        code = subprocess.call(cmd)
        if code != 0:
            raise DeepmathError(f"verl.model_merger exited with code {code} (see the log above)")
        if template is not None:
            install_chat_template(tmp, template)
        files = check_hf_folder(tmp)
        provenance = {
            "step": number,
            "requested_step": step,
            "checkpoint": str(local_dir),
            "fsdp": fsdp,
            "files": files,
            "command": [*cmd[:-1], str(out)],
            "verl": _verl_version(python),
            "chat_template": str(chat_template) if chat_template else None,
            "seconds": round(time.monotonic() - started, 1),
            "merged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
    log.info("merged step %d into %s", number, out)
    return provenance


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m deepmath.merge",
        description="Merge a verl FSDP actor checkpoint into a Hugging Face folder (CPU).",
    )
    p.add_argument("--work-dir", required=True, help="train_verl's work dir (holds checkpoints/)")
    p.add_argument("--step", default="latest", help="step number or 'latest' (default)")
    p.add_argument("--out", required=True, help="HF folder to write (atomically)")
    p.add_argument("--python", help="Python that runs verl (default $DEEPMATH_VERL_PYTHON)")
    p.add_argument("--chat-template", help="jinja file to install as the folder's chat template")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    merge(
        Path(args.work_dir).resolve(),
        args.step,
        Path(args.out),
        verl_python(args.python),
        Path(args.chat_template) if args.chat_template else None,
    )


if __name__ == "__main__":
    run_cli(main)
