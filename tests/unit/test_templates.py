"""Chat templates a run sets on its model: the ORZ prompt, reading, installing into a folder."""

from __future__ import annotations

import json
import shutil

import pytest

from deepmath.io import DeepmathError
from deepmath.templates import TEMPLATE_FILE, install_chat_template, read_chat_template, render
from tests.paths import REPO, SMOLLM2

ORZ = REPO / "config" / "templates" / "orz.jinja"
SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def test_orz_prompt_opens_the_think_block():
    text = read_chat_template(ORZ)
    msgs = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is 2+2?"}]
    out = render(text, msgs)
    assert out.startswith("A conversation between User and Assistant. The User asks a question")
    assert "<think> reasoning process here </think> <answer> answer here </answer>." in out
    # the kept system prompt follows the preamble; the user turn; then the open think block
    assert out.endswith(f"</answer>.\n{SYSTEM}\nUser: What is 2+2?\nAssistant: <think>")
    no_system = render(text, msgs[1:])
    assert no_system.endswith("</answer>.\nUser: What is 2+2?\nAssistant: <think>")
    assert not render(text, msgs[1:], add_generation_prompt=False).endswith("<think>")
    # a finished turn (SFT-style) closes with the EOS token
    turn = render(text, [*msgs, {"role": "assistant", "content": "4"}], add_generation_prompt=False)
    assert turn.endswith("User: What is 2+2?\nAssistant: 4")


def test_bad_templates_are_named(tmp_path):
    with pytest.raises(DeepmathError, match="cannot read"):
        read_chat_template(tmp_path / "missing.jinja")
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}{{ m.content }")
    with pytest.raises(DeepmathError, match="does not render"):
        read_chat_template(broken)
    lossy = tmp_path / "lossy.jinja"
    lossy.write_text("{% for m in messages if m.role == 'user' %}{{ m.content }}{% endfor %}")
    with pytest.raises(DeepmathError, match="drops message content.*SYSTEM-PROBE"):
        read_chat_template(lossy)


@pytest.mark.skipif(not SMOLLM2.exists(), reason="needs results/models/smollm2 (make demo)")
def test_installed_template_is_what_transformers_uses(tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "model"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(SMOLLM2 / name, folder / name)
    # a template inside tokenizer_config.json would compete with the file: it goes
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["chat_template"] = "{{ 'stale' }}"
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    install_chat_template(folder, read_chat_template(ORZ))
    assert "chat_template" not in json.loads((folder / "tokenizer_config.json").read_text())
    assert (folder / TEMPLATE_FILE).read_text() == ORZ.read_text()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.startswith("A conversation") and prompt.endswith("User: Hi\nAssistant: <think>")
