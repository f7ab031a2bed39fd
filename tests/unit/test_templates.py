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

# The authors' ORZ template, kept as a fact to compare against: zwhe99/DeepMath at 0d97187,
# utils/chat_template.py, CHAT_TEMPLATE["orz"] (the Python literal's value). Their evaluation
# (uni_eval.py) sets it on the tokenizer for --chat_template_name orz; DeepMath-Zero-7B is
# evaluated with the template its tokenizer carries from zwhe99/Qwen2.5-7B-orz, which this
# string is the authors' own copy of (the hub file itself cannot be read offline).
AUTHORS_ORZ = (
    "{{ bos_token }}A conversation between User and Assistant. The User asks a question, and the "
    "Assistant solves it. The Assistant first thinks about the reasoning process in the mind and "
    "then provides the User with the answer. The reasoning process is enclosed within <think> "
    "</think> and answer is enclosed within <answer> </answer> tags, respectively, i.e., <think> "
    "reasoning process here </think> <answer> answer here </answer>. {% for message in messages "
    "%}{% if message['role'] == 'user' %}User: You must put your answer inside <answer> </answer> "
    "tags, i.e., <answer> answer here </answer>. And your final answer will be extracted "
    "automatically by the \\boxed{} tag.\nThis is the problem:\n{{ message['content'] }}\n{% elif "
    "message['role'] == 'assistant' %}Assistant: <think>{{ message['content'] }}</answer>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant: <think>{% endif %}"
)

_Q = "Find $x$ if $\\frac{x}{2} = 3$.\n\nGive {{ the }} answer {% raw %} in \\boxed{}."
# Every kind of conversation a run or an evaluation renders, and some no run does.
CONVERSATIONS = {
    "user": [{"role": "user", "content": "What is 2+2?"}],
    "system+user": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": _Q}],
    "multi-turn": [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "2+2 = 4 </think> <answer> 4"},
        {"role": "user", "content": "And 3+3?\n"},
    ],
    "ends-with-assistant": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ],
    "system-in-the-middle": [
        {"role": "user", "content": "Ünïcödé √2 · π"},
        {"role": "system", "content": "late system"},
        {"role": "user", "content": ""},
    ],
}
CASES = [(name, gen) for name in CONVERSATIONS for gen in (True, False)]


@pytest.mark.parametrize(("name", "gen"), CASES)
@pytest.mark.parametrize("bos", [None, "<s>"])
def test_orz_renders_byte_identically_to_the_authors(name, gen, bos):
    ours = render(read_chat_template(ORZ), CONVERSATIONS[name], gen, bos_token=bos)
    theirs = render(AUTHORS_ORZ, CONVERSATIONS[name], gen, bos_token=bos)
    assert ours.encode() == theirs.encode()


def test_orz_prompt_is_the_authors_format():
    """What the rendered prompt looks like (a reader's check on the byte comparison above)."""
    out = render(read_chat_template(ORZ), CONVERSATIONS["system+user"])
    assert out.startswith("A conversation between User and Assistant. The User asks a question")
    assert "<answer> answer here </answer>. User: You must put your answer inside" in out
    assert out.endswith(f"\\boxed{{}} tag.\nThis is the problem:\n{_Q}\nAssistant: <think>")
    assert SYSTEM not in out  # the authors' template shows no system message
    assert not render(read_chat_template(ORZ), CONVERSATIONS["user"], False).endswith("<think>")
    with_bos = render(read_chat_template(ORZ), CONVERSATIONS["user"], bos_token="<s>")
    assert with_bos.startswith("<s>A conversation")


@pytest.mark.skipif(not SMOLLM2.exists(), reason="needs results/models/smollm2 (make demo)")
@pytest.mark.parametrize("bos", [None, "<|im_start|>"])
def test_orz_token_ids_equal_the_authors_in_transformers(bos):
    """Through transformers' own apply_chat_template, as verl, TRL and vLLM call it: the same
    token ids for every conversation, with a tokenizer without a BOS (Qwen2.5's bos_token is
    null: the template's {{ bos_token }} adds nothing) and with one (rendered once, by the
    template; tokenizing the text again adds no second one)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    tokenizer.bos_token = bos
    ours, theirs = read_chat_template(ORZ), AUTHORS_ORZ
    for name, gen in CASES:
        msgs = CONVERSATIONS[name]
        kw = {"add_generation_prompt": gen, "tokenize": True, "return_dict": False}
        ids = tokenizer.apply_chat_template(msgs, chat_template=ours, **kw)
        assert ids == tokenizer.apply_chat_template(msgs, chat_template=theirs, **kw), name
        kw["tokenize"] = False
        text = tokenizer.apply_chat_template(msgs, chat_template=ours, **kw)
        assert text == render(ours, msgs, gen, bos_token=bos), name  # render() is transformers'
        assert text.startswith(bos or "A conversation"), name
        assert tokenizer(text, add_special_tokens=False)["input_ids"] == ids, name


def test_bad_templates_are_named(tmp_path):
    with pytest.raises(DeepmathError, match="cannot read"):
        read_chat_template(tmp_path / "missing.jinja")
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}{{ m.content }")
    with pytest.raises(DeepmathError, match="does not render"):
        read_chat_template(broken)
    lossy = tmp_path / "lossy.jinja"
    lossy.write_text("{% for m in messages if m.role == 'system' %}{{ m.content }}{% endfor %}")
    with pytest.raises(DeepmathError, match="drops the user message.*USER-PROBE"):
        read_chat_template(lossy)
    # a template may leave the system message out, as the authors' ORZ template does
    no_system = tmp_path / "no_system.jinja"
    no_system.write_text("{% for m in messages if m.role == 'user' %}{{ m.content }}{% endfor %}")
    assert read_chat_template(no_system) == no_system.read_text()


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
    # SmolLM2's BOS is <|im_start|>: the template renders it first, as the authors' does
    assert prompt.startswith("<|im_start|>A conversation")
    assert prompt.endswith("This is the problem:\nHi\nAssistant: <think>")
