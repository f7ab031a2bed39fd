"""Runs inside .venv-verl (verl 0.9.x): what verl itself makes of our overrides.

``python tests/verl/verl_probe.py config REQUEST.json RESULT.json``
    For each case ``{name: {"overrides": [...], "samples": [...]}}``: compose verl's
    ``ppo_trainer`` config with hydra exactly as ``main_ppo`` does (struct mode: an unknown key
    is an error), run ``main_ppo``'s own ``validate_config``, build the dataclass configs verl
    builds (actor, rollout, algorithm, reward manager), resolve the DAPO filter metric the way
    the V1 trainer does, load the custom reward function and the reward manager with verl's own
    loaders, and score the samples through the manager's ``run_single`` (the reward loop's call).

``python tests/verl/verl_probe.py checkpoint OUT_DIR``
    Make a real verl FSDP checkpoint of a tiny random Qwen2 on CPU: two gloo ranks, FSDP2
    (``fully_shard`` through verl's ``apply_fsdp2``), one AdamW step, saved by verl's
    ``FSDPCheckpointManager`` to ``OUT_DIR/checkpoints/global_step_3/actor``. The full trained
    weights (gathered from the shards) go to ``OUT_DIR/trained.safetensors`` for comparison.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
import warnings
from pathlib import Path
from types import SimpleNamespace

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def byte_tokenizer():
    """A byte-level tokenizer (one token per byte, exact round trip), built offline."""
    from tokenizers import Tokenizer, decoders, models
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok)
    hf.add_special_tokens({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"})
    return hf


# --------------------------------------------------------------------------- config


def compose(overrides: list[str], config_name: str = "ppo_trainer"):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    # main_ppo: @hydra.main(config_path="config", config_name="ppo_trainer", version_base=None)
    with initialize_config_module(config_module="verl.trainer.config", version_base=None):
        return hydra_compose(config_name=config_name, overrides=overrides)


def _data_item(tokenizer, sample: dict, prompt_len: int = 8):
    import numpy as np
    import torch
    from verl import DataProto

    ids = tokenizer(sample["response"], add_special_tokens=False)["input_ids"]
    response = torch.tensor([ids])
    prompt = torch.full((1, prompt_len), tokenizer.pad_token_id)
    mask = torch.ones(1, prompt_len + len(ids), dtype=torch.long)
    data = DataProto.from_dict(
        tensors={"prompts": prompt, "responses": response, "attention_mask": mask},
        non_tensors={
            "data_source": np.array([sample.get("data_source", "deepmath-103k")], dtype=object),
            "reward_model": np.array(
                [{"style": "rule", "ground_truth": sample["ground_truth"]}], dtype=object
            ),
            "extra_info": np.array([sample.get("extra_info", {})], dtype=object),
        },
    )
    return data, len(ids)


def probe_sft(case: dict) -> dict:
    """verl.trainer.sft_trainer's config (``sft_trainer_engine``) from our overrides, and the
    engine / optimizer dataclasses its trainer builds from it."""
    from omegaconf import OmegaConf
    from verl.utils.config import omega_conf_to_dataclass

    try:
        cfg = compose(case["overrides"], "sft_trainer_engine")
    except Exception as err:
        return {"compose_error": f"{type(err).__name__}: {err}"}
    built = {k: type(omega_conf_to_dataclass(cfg[k])).__name__ for k in ("engine", "optim")}
    return {
        "resolved": OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False),
        "dataclasses": built,
    }


def probe_case(case: dict, tokenizer) -> dict:
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn, load_reward_manager
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer
    from verl.utils.config import omega_conf_to_dataclass, validate_config

    out: dict = {}
    try:
        cfg = compose(case["overrides"])
    except Exception as err:  # hydra's struct errors: unknown keys, bad values
        return {"compose_error": f"{type(err).__name__}: {err}"}
    out["resolved"] = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    out["yaml"] = OmegaConf.to_yaml(cfg)

    # main_ppo.main: validate_config(config, need_reference_policy, need_critic)
    out["need_reference_policy"] = bool(need_reference_policy(cfg))
    out["need_critic"] = bool(need_critic(cfg))
    validate_config(cfg, out["need_reference_policy"], out["need_critic"])
    out["validated"] = True

    # the dataclasses verl instantiates from these sections (types and value checks);
    # reward.reward_manager is read as a plain DictConfig (its dataclass cannot even be built:
    # RewardManagerConfig.__post_init__ calls a missing super().__post_init__ in 0.9.1)
    built = {}
    for key in ("actor_rollout_ref.actor", "actor_rollout_ref.rollout", "algorithm"):
        obj = omega_conf_to_dataclass(OmegaConf.select(cfg, key))
        built[key] = type(obj).__name__
    out["dataclasses"] = built

    # the V1 trainer's DAPO filter metric (trainer_base._resolve_filter_groups_metric)
    with warnings.catch_warnings(record=True):
        import logging

        records: list[str] = []

        class _Catch(logging.Handler):
            def emit(self, record):
                records.append(record.getMessage())

        handler = _Catch()
        logging.getLogger("verl.trainer.ppo.v1.trainer_base").addHandler(handler)
        try:
            out["filter_metric"] = PPOTrainer._resolve_filter_groups_metric(
                SimpleNamespace(config=cfg)
            )
        finally:
            logging.getLogger("verl.trainer.ppo.v1.trainer_base").removeHandler(handler)
        out["filter_warnings"] = records

    out["sampler"] = probe_sampler(cfg)

    # the reward hook, with verl's own loader
    fn = get_custom_reward_fn(cfg)
    if fn is None:
        out["custom_reward_fn"] = None
    else:
        raw = fn.args[0]
        out["custom_reward_fn"] = {
            "name": raw.__name__,
            "file": str(Path(raw.__code__.co_filename).resolve()),
            "kwargs": dict(fn.args[1]),
        }
    manager = load_reward_manager(cfg, tokenizer)
    compute = manager.compute_score
    out["reward_manager"] = type(manager).__name__
    target = compute.args[0] if isinstance(compute, functools.partial) else compute
    out["manager_compute_score"] = {
        "name": getattr(target, "__name__", repr(target)),
        "file": str(Path(target.__code__.co_filename).resolve())
        if hasattr(target, "__code__")
        else None,
    }
    results = []
    for sample in case.get("samples", []):
        data, n_tokens = _data_item(tokenizer, sample)
        try:
            # the manager captured its event loop at init (as RewardLoopWorker does)
            got = manager.loop.run_until_complete(manager.run_single(data))
            results.append(
                {
                    "tokens": n_tokens,
                    "reward": float(got["reward_score"]),
                    "extra": {k: _plain(v) for k, v in got["reward_extra_info"].items()},
                }
            )
        except Exception as err:
            results.append({"tokens": n_tokens, "error": f"{type(err).__name__}: {err}"})
    out["samples"] = results
    return out


def probe_sampler(cfg) -> dict:
    """The replay buffer verl's V1 trainer builds from this config (its own
    ``_build_replay_buffer``), and what our generation budget does inside it: the first refill
    of a step, then refills until the per-step budget runs out."""
    import tempfile

    from omegaconf import OmegaConf
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    asked: list[int] = []
    if OmegaConf.select(cfg, "trainer.v1.sampler.sampler_kwargs.report"):
        cfg = cfg.copy()  # the report goes to a scratch folder, not the run's work dir
        report = str(Path(tempfile.mkdtemp()) / "dynamic_sampling.failed.json")
        OmegaConf.update(cfg, "trainer.v1.sampler.sampler_kwargs.report", report)

    def refill(n: int) -> int:
        asked.append(n)
        return n

    trainer = SimpleNamespace(config=cfg, trainer_mode="sync", _add_prompts_to_generate=refill)
    buffer = PPOTrainer._build_replay_buffer(trainer)
    out = {
        "class": type(buffer).__name__,
        "module_file": str(Path(type(buffer)._refill.__code__.co_filename).resolve())
        if hasattr(type(buffer), "_refill")
        else None,
        "train_batch_size": buffer.train_batch_size,
        "gen_batch_size": buffer.gen_batch_size,
        "max_inflight_gen_batches": buffer.max_inflight_gen_batches,
        "filter_groups_metric": buffer.filter_groups_metric,
    }
    budget = getattr(buffer, "budget", None)
    if budget is None:
        return out
    out["budget"] = {"gen_batch": budget.gen_batch, "limit": budget.limit}
    budget.start_step(1)
    granted = [buffer._refill(10**6)]  # nothing in flight yet: up to gen_batch
    error = None
    try:
        for _ in range(10**4):
            granted.append(buffer._refill(10**6))
    except Exception as err:  # the budget's DynamicSamplingExhausted
        error = {"type": type(err).__name__, "message": str(err)}
    out.update(granted=granted[:3], asked=asked[:3], total=sum(asked), error=error)
    report = budget.report
    out["report_written"] = bool(report) and Path(report).is_file()
    return out


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return value


def run_config(request: Path, result: Path) -> None:
    cases = json.loads(request.read_text())
    tokenizer = byte_tokenizer()
    out = {}
    for name, case in cases.items():
        try:
            sft = case.get("config_name") == "sft_trainer_engine"
            out[name] = probe_sft(case) if sft else probe_case(case, tokenizer)
        except Exception as err:
            out[name] = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()}
    result.write_text(json.dumps(out, default=str))


# --------------------------------------------------------------------------- checkpoint

STEP = 3


def _checkpoint_rank(rank: int, world: int, out: str, port: int) -> None:
    import torch
    import torch.distributed as dist
    from omegaconf import OmegaConf
    from torch.distributed.device_mesh import init_device_mesh
    from transformers import AutoModelForCausalLM, Qwen2Config
    from verl.utils.checkpoint.fsdp_checkpoint_manager import FSDPCheckpointManager
    from verl.utils.fsdp_utils import apply_fsdp2

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    dist.init_process_group("gloo", rank=rank, world_size=world)
    tokenizer = byte_tokenizer()
    torch.manual_seed(0)  # same init on every rank, as verl's rank-0 broadcast would give
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        architectures=["Qwen2ForCausalLM"],  # as in any config loaded from a pretrained folder
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    mesh = init_device_mesh("cpu", (world,), mesh_dim_names=("fsdp",))
    # what verl's FSDP engine does for strategy=fsdp2 (minus its CUDA-only state-dict reload)
    apply_fsdp2(
        model,
        {"mesh": mesh, "reshard_after_forward": True},
        OmegaConf.create({"wrap_policy": {"min_num_params": 0}}),
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    ids = torch.randint(0, 256, (2, 16), generator=torch.Generator().manual_seed(rank))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad()

    full = {
        k: (v.full_tensor() if hasattr(v, "full_tensor") else v)
        for k, v in model.state_dict().items()
    }
    manager = FSDPCheckpointManager(
        model=model,
        optimizer=optimizer,
        lr_scheduler=scheduler,
        processing_class=tokenizer,
        checkpoint_config=OmegaConf.create(
            {
                "save_contents": ["model", "optimizer", "extra"],
                "load_contents": ["model", "optimizer", "extra"],
            }
        ),
    )
    ckpt = Path(out) / "checkpoints"
    manager.save_checkpoint(
        local_path=str(ckpt / f"global_step_{STEP}" / "actor"), global_step=STEP
    )
    dist.barrier()
    if rank == 0:
        from safetensors.torch import save_file

        save_file(
            {k: t.contiguous() for k, t in full.items()}, str(Path(out) / "trained.safetensors")
        )
        # what the V1 trainer writes after a successful save
        (ckpt / "latest_checkpointed_iteration.txt").write_text(str(STEP))
    dist.barrier()
    dist.destroy_process_group()


def run_checkpoint(out: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out.mkdir(parents=True, exist_ok=True)
    mp.spawn(_checkpoint_rank, args=(2, str(out), port), nprocs=2)


# --------------------------------------------------------------------------- sampler loop


class _PollLimit(Exception):
    """The sampler polled far longer than any finite run needs: it would wait forever."""


class _Queue:
    """Stands in for verl's TransferQueue client in the replay buffer module (kv_list,
    kv_batch_get, kv_clear): each poll finishes a few pending prompts with n trajectories whose
    ``acc`` is all equal (a group to drop) with probability ``p_drop``, else mixed."""

    def __init__(self, rng, p_drop: float, per_poll: int, n: int = 2, max_polls: int = 5000):
        self.items: dict = {}
        self.extra: dict = {}
        self.rng, self.p_drop, self.per_poll, self.n = rng, p_drop, per_poll, n
        self.polls, self.max_polls, self.submitted = 0, max_polls, 0

    def submit(self, count: int, step: int) -> int:
        for _ in range(count):
            uid = f"u{self.submitted}"
            self.submitted += 1
            self.items.setdefault("train", {})[uid] = {
                "is_prompt": True,
                "status": "pending",
                "global_steps": step,
            }
        return count

    def kv_list(self, partition_id=None):
        self.polls += 1
        if self.polls > self.max_polls:
            raise _PollLimit(self.polls)
        for part, items in self.items.items():
            pending = [
                k for k, t in items.items() if t.get("is_prompt") and t["status"] == "pending"
            ]
            for uid in pending[: self.per_poll]:
                items[uid]["status"] = "finished"
                drop = self.rng.random() < self.p_drop
                for s in range(self.n):
                    key = f"{uid}_{s}_0"
                    items[key] = {"status": "finished"}
                    acc = 0.0 if drop else float(s % 2)
                    self.extra[(part, key)] = {"reward_extra_info": {"acc": acc}}
        return {p: dict(v) for p, v in self.items.items()}

    def kv_clear(self, partition_id, keys):
        for key in keys:
            self.items.get(partition_id, {}).pop(key, None)

    def kv_batch_get(self, keys, partition_id, select_fields):
        return {"extra_fields": [self.extra[(partition_id, k)] for k in keys]}


def run_sampler_loop(result: Path) -> None:
    """verl's real ReplayBuffer.sample loop with our BudgetedReplayBuffer, over many seeded
    runs of small budgets: every run must end, either with full batches or with
    DynamicSamplingExhausted; one that polls without end is counted as a hang."""
    import logging
    import random

    import verl.trainer.ppo.v1.replay_buffer as module

    from deepmath.sampling import DynamicSamplingExhausted
    from deepmath.verl_sampler import BudgetedReplayBuffer

    logging.disable(logging.CRITICAL)
    outcomes: dict[str, int] = {}
    shapes = [
        (4, 8, 2, 0.7, 3),
        (4, 6, 3, 0.8, 2),
        (4, 10, 2, 0.75, 5),
        (3, 7, 2, 0.7, 7),
        (10, 12, 2, 0.6, 4),
    ]
    for seed in range(200):
        for pps, gen, rounds, p_drop, per_poll in shapes:
            queue = _Queue(random.Random(seed), p_drop, per_poll)
            module.tq = queue
            step = [1]
            buffer = BudgetedReplayBuffer(
                trainer_mode="sync",
                trainer_config={},
                max_off_policy_threshold=None,
                max_off_policy_strategy="drop",
                sampler_kwargs={
                    "filter_metric": "acc",
                    "prompts_per_step": pps,
                    "gen_batch": gen,
                    "max_gen_rounds": rounds,
                    "report": None,
                },
                refill_fn=lambda k, q=queue, st=step: q.submit(k, st[0]),
                poll_interval=0.0,
            )
            outcome = "full"
            for s in range(1, 6):
                step[0] = s
                queue.polls = 0
                queue.submit(pps, s)  # the trainer's prepare_step
                try:
                    batch, _ = buffer.sample(s, "train", pps)
                except DynamicSamplingExhausted:
                    outcome = "exhausted"
                    break
                except _PollLimit:
                    outcome = "hang"
                    break
                queue.kv_clear("train", list(batch.keys))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    result.write_text(json.dumps(outcomes))


# --------------------------------------------------------------------------- skip update


def run_skip_update(result: Path) -> None:
    """verl's own FSDPEngine.optimizer_step, wrapped by deepmath.verl_skip_update through
    verl's external-lib hook, on a bare engine holding a small CPU model: a norm under the
    limit steps (after clipping), one above it is skipped, a non-finite one verl skips itself."""
    import torch
    from verl.utils.import_utils import import_external_libs
    from verl.workers.engine.fsdp.transformer_impl import FSDPEngine

    os.environ["DEEPMATH_SKIP_GRAD_NORM"] = "5.0"
    import_external_libs("deepmath.verl_skip_update")  # what HFModelConfig does in a worker
    engine = object.__new__(FSDPEngine)
    engine.optimizer_config = SimpleNamespace(clip_grad=1.0)
    engine.module = torch.nn.Linear(4, 1, bias=False)
    engine.optimizer = torch.optim.SGD(engine.module.parameters(), lr=0.1)
    engine._qat_enabled = False
    engine.scaler = None
    out: dict = {"limit": getattr(FSDPEngine.optimizer_step, "deepmath_limit", None)}
    for name, scale in (("small", 1.0), ("large", 50.0), ("nan", float("nan"))):
        before = engine.module.weight.detach().clone()
        engine.module.weight.grad = torch.full_like(before, scale)  # norm = 2 x scale
        norm = engine.optimizer_step()
        after = engine.module.weight.detach()
        grad = engine.module.weight.grad
        out[name] = {
            "grad_norm": None if norm != norm else float(norm),
            "moved": float((after - before).abs().max()),
            "grads_zeroed": grad is None or bool((grad == 0).all()),
        }
    out["skipped"] = getattr(engine, "deepmath_skipped_updates", 0)
    result.write_text(json.dumps(out))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "config":
        run_config(Path(sys.argv[2]), Path(sys.argv[3]))
    elif mode == "sampler-loop":
        run_sampler_loop(Path(sys.argv[2]))
    elif mode == "skip-update":
        run_skip_update(Path(sys.argv[2]))
    elif mode == "checkpoint":
        run_checkpoint(Path(sys.argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
