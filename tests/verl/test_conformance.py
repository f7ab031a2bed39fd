"""Recipe conformance: every value the authors trained with, against the verl 0.9 config we compose.

For each of the four runs of config/config.yaml, verl's own hydra config is composed from our
overrides (verl_probe.py, in .venv-verl) and every fact of tests/verl/recipe_facts.py is looked
up through its one mapping entry. A value that differs fails, unless the authors' key is listed
in ``deepmath.verl_recipe.DEVIATIONS`` (with the reason; the README repeats the table). A fact
without a mapping entry fails too, and so does a recipe item of ours that reaches no verl key.
"""

from __future__ import annotations

import copy
from functools import reduce
from typing import Any

import pytest

from deepmath import verl_recipe
from tests.verl.conftest import PAPER_RUNS, PATHS, paper_config
from tests.verl.recipe_facts import AUTHORS, MAPPING, SOURCES

RUNS = sorted(AUTHORS)


def _get(tree: dict, dotted: str) -> Any:
    return reduce(lambda node, key: node[key], dotted.split("."), tree)


def _same(ours: Any, theirs: Any) -> bool:
    if isinstance(theirs, bool) or theirs is None:
        return ours is theirs or ours == theirs
    if isinstance(theirs, int | float) and isinstance(ours, int | float):
        return float(ours) == float(theirs)
    return ours == theirs


def _ours(key: str, fact: Any, run: str, resolved: dict, config: dict) -> tuple[Any, Any]:
    """(what we have, what it must equal) for one authors' fact."""
    entry = MAPPING[key]
    kind = entry[0]
    if kind == "verl":
        convert = entry[2] if len(entry) > 2 else (lambda v: v)
        got = _get(resolved, entry[1])
        want = convert(fact)
        if want == "set":  # a path we choose; the authors' switch was on
            return (got is not None), True
        return got, want
    if kind == "verl_all":
        values = [_get(resolved, k) for k in entry[1]]
        return (values[0] if len(set(map(repr, values))) == 1 else values), fact
    if kind == "run":
        return entry[1](PAPER_RUNS[run], config), fact
    if kind == "skip_update":
        env = verl_recipe.worker_env(PAPER_RUNS[run])
        lib = _get(resolved, "actor_rollout_ref.model.external_lib")
        got = float(env[verl_recipe.SKIP_UPDATE_ENV]) if env else None
        if (lib == verl_recipe.SKIP_UPDATE_MODULE) != (got is not None):
            return ("external_lib", lib, "env", env), fact
        return got, fact
    if kind == "sampler":
        sampler = _get(resolved, "trainer.v1.sampler")
        kwargs = sampler["sampler_kwargs"]
        ours = (
            sampler["custom_sampler"]["path"] == str(verl_recipe.sampler_file())
            and sampler["custom_sampler"]["name"] == verl_recipe.SAMPLER_NAME
            and kwargs["prompts_per_step"] == resolved["data"]["train_batch_size"]
        )
        return (fact if ours else ("sampler", sampler["custom_sampler"])), fact
    if kind == "max_model_len":
        data = resolved["data"]
        got = _get(resolved, "actor_rollout_ref.rollout.max_model_len")
        return got, data["max_prompt_length"] + data["max_response_length"]
    raise AssertionError(f"unknown mapping kind {kind!r} for {key}")


def test_the_facts_name_their_sources_and_cover_four_runs():
    assert set(SOURCES) == {"scripts", "fork", "paper"}
    assert (
        RUNS
        == sorted(PAPER_RUNS)
        == sorted(
            ["deepmath-zero-7b", "deepmath-zero-math-7b", "deepmath-1.5b", "deepmath-omn-1.5b"]
        )
    )


def test_every_fact_is_mapped_or_a_listed_deviation():
    facts = set().union(*(AUTHORS[r] for r in RUNS))
    deviations = set(verl_recipe.DEVIATIONS)
    assert not deviations - facts, f"deviation without a fact: {sorted(deviations - facts)}"
    assert not deviations & set(MAPPING), "a key cannot be both mapped and a deviation"
    unmapped = sorted(facts - set(MAPPING) - deviations)
    assert not unmapped, f"authors' values that reach nothing: {unmapped}"


@pytest.mark.parametrize("run", RUNS)
def test_run_matches_the_authors_recipe(probe, run):
    config = paper_config()
    resolved = probe[f"config:{run}"]["resolved"]
    diffs = []
    for key, fact in sorted(AUTHORS[run].items()):
        if key in verl_recipe.DEVIATIONS:
            continue
        got, want = _ours(key, fact, run, resolved, config)
        if not _same(got, want):
            diffs.append(f"{key}: authors {want!r}, ours {got!r}")
    assert not diffs, f"{run} differs from the authors' recipe:\n  " + "\n  ".join(diffs)


def test_every_deviation_says_what_and_why():
    for key, dev in verl_recipe.DEVIATIONS.items():
        assert dev.authors and dev.ours and dev.reason, key


def test_readme_lists_every_deviation():
    from tests.verl.conftest import REPO

    readme = (REPO / "README.md").read_text()
    for key in verl_recipe.DEVIATIONS:
        assert f"`{key}`" in readme, f"README does not list the deviation {key}"


# --------------------------------------------------------------------------- nothing silent


# Items whose keys only all move under more than one change (kl off and another estimator;
# the overlong buffer off and another length).
SEVERAL = {
    "kl": [None, {"type": "k2", "coef": 0.05}],
    "overlong_buffer": [0, 1000],
    "skip_grad_norm": [None],  # its value goes to the workers' environment (worker_env)
}
SPECIAL = {
    "truncation": "right",
    "filter_metric": "score",
    "strategy": "fsdp",
    "skip_grad_norm": 7.0,
    "keep_checkpoints": 3,
    "gpu_memory_utilization": 0.5,
    "top_p": 0.9,
    "val_top_p": 0.9,
    "tensor_parallel": 2,
    "ulysses_sp": 4,
    "rollout_n": 32,
    "mini_batch": 32,
    "prompts_per_step": 256,
    "gen_batch": 1000,
    "clip_low": 0.1,
    # 0 and 1 both give verl lr_warmup_steps 1 (the fork's first update at lr x 0)
    "warmup_steps": 5,
}


def _bumps(item: str, value: Any) -> list[Any]:
    """Different valid values for a recipe item."""
    if item in SEVERAL:
        return SEVERAL[item]
    if item in SPECIAL:
        return [SPECIAL[item]]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1]
    if isinstance(value, float):
        return [value * 2 + 0.01]
    raise AssertionError(f"no other value for {item}={value!r}")


@pytest.mark.parametrize("item", sorted(verl_recipe.RECIPE_KEYS))
def test_every_recipe_item_reaches_exactly_its_verl_keys(item):
    """Change one recipe item: the overrides change at the keys RECIPE_KEYS declares, and only
    there; every item has at least one."""
    base = copy.deepcopy(PAPER_RUNS["deepmath-1.5b"])
    base["recipe"] = verl_recipe.recipe(base)
    before = verl_recipe.override_items(base, **PATHS)
    moved: set[str] = set()
    for value in _bumps(item, base["recipe"][item]):
        changed = copy.deepcopy(base)
        changed["recipe"][item] = value
        after = verl_recipe.override_items(changed, **PATHS)
        moved |= {k.lstrip("+") for k in set(before) | set(after) if before.get(k) != after.get(k)}
    declared = {k.lstrip("+") for k in verl_recipe.RECIPE_KEYS[item]}
    assert moved == declared, f"{item}: declared {sorted(declared)}, moved {sorted(moved)}"
    assert declared, item


def test_every_recipe_item_is_declared():
    assert set(verl_recipe.RECIPE_KEYS) == set(verl_recipe.REQUIRED) | set(verl_recipe.OPTIONAL)


@pytest.mark.parametrize("run", RUNS)
def test_every_verl_key_we_set_exists_in_verl(probe, run):
    """Each declared key is in the config verl composed (a '+' key is one we add)."""
    resolved = probe[f"config:{run}"]["resolved"]
    for keys in verl_recipe.RECIPE_KEYS.values():
        for key in keys:
            _get(resolved, key.lstrip("+"))  # KeyError: the key is not in verl's config


# --------------------------------------------------------------------------- SFT baselines

# The paper's appendix B, and where each value lands in verl 0.9's SFT trainer config.
SFT_FACTS = {
    "data.train_batch_size": 128,  # batch 128
    "data.micro_batch_size_per_gpu": 1,  # micro-batch 1
    "data.use_dynamic_bsz": False,  # fixed micro-batches, as the paper's trainer
    "trainer.total_epochs": 1,
    "optim.lr": 1e-6,
    "optim.lr_scheduler_type": "cosine",
    "optim.lr_warmup_steps": 50,
    "optim.min_lr_ratio": 0.0,  # cosine down to 0, as transformers' cosine schedule
    "engine.dtype": "bfloat16",
    "model.enable_gradient_checkpointing": True,
    "model.use_remove_padding": True,  # padding-free
    "data.pad_mode": "no_padding",
    "data.max_length": 9216,  # cut-off
    "data.messages_key": "messages",
}


@pytest.mark.parametrize("run", ["qwen25-7b-sft", "qwen25-7b-sft-x3"])
def test_sft_runs_compose_in_verl_with_the_papers_values(probe, run):
    from deepmath import sft_recipe

    got = probe[f"sft:{run}"]
    assert "compose_error" not in got, got.get("compose_error")
    assert got["dataclasses"] == {"engine": "FSDPEngineConfig", "optim": "FSDPOptimizerConfig"}
    resolved = got["resolved"]
    diffs = [
        f"{key}: paper {want!r}, ours {_get(resolved, key)!r}"
        for key, want in SFT_FACTS.items()
        if not _same(_get(resolved, key), want)
    ]
    assert not diffs, "\n".join(diffs)
    assert _get(resolved, "trainer.total_training_steps") == 805
    assert _get(resolved, "trainer.nnodes") * _get(resolved, "trainer.n_gpus_per_node") == 16
    assert set(sft_recipe.DEVIATIONS) == {"trainer", "deepspeed_zero3"}


def test_skip_update_limit_reaches_the_workers_environment():
    run = copy.deepcopy(PAPER_RUNS["deepmath-1.5b"])
    assert verl_recipe.worker_env(run) == {"DEEPMATH_SKIP_GRAD_NORM": "5.0"}
    run["recipe"]["skip_grad_norm"] = 7.5
    assert verl_recipe.worker_env(run) == {"DEEPMATH_SKIP_GRAD_NORM": "7.5"}
    assert verl_recipe.worker_env(PAPER_RUNS["deepmath-zero-7b"]) == {}
