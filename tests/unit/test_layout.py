"""The package's layers: process handling at the bottom, one LLM-stage entry, no cycles."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import deepmath
import deepmath.io
from deepmath.llmstage import StageLLM

PACKAGE = Path(deepmath.__file__).parent


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = ast.parse(path.read_text())
    return out


def _top_level_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_only_procs_signals_process_groups():
    users = sorted(
        name
        for name, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "killpg"
    )
    assert users == ["deepmath.procs"] * len(users) and users


def test_procs_is_the_bottom_layer():
    imports = _top_level_imports(_modules()["deepmath.procs"])
    assert not any(m.startswith("deepmath") for m in imports), imports


@pytest.mark.parametrize("package", ["deepmath.llm", "deepmath.serve"])
def test_split_packages_keep_modules_small(package):
    sizes = {
        path.name: len(path.read_text().splitlines())
        for path in (PACKAGE / package.split(".")[1]).glob("*.py")
    }
    assert len(sizes) >= 5 and max(sizes.values()) < 600, sizes


def test_no_import_cycle_between_serving_and_ray():
    mods = _modules()
    assert not any(
        m.startswith("deepmath.serve") for m in _top_level_imports(mods["deepmath.raycluster"])
    )


def test_the_llm_stage_entry_is_typed_and_frozen(tmp_path):
    llm = StageLLM.build(
        "judge",
        {"model": "m", "base_url": "http://127.0.0.1:8000/v1"},
        journal=tmp_path / "j.jsonl",
        usage=tmp_path / "u.json",
    )
    assert dataclasses.is_dataclass(llm) and not llm.served
    with pytest.raises(dataclasses.FrozenInstanceError):
        llm.journal = "other"  # type: ignore[misc]
    with pytest.raises(deepmath.io.DeepmathError, match="--model-dir"):
        StageLLM.build("judge", {"model": "m", "serve": {"model": "x"}}, journal="j", usage="u")
