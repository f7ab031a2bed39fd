"""Chat templates that a training run sets on its model (the ORZ prompt of DeepMath-Zero-7B).

A base model such as Qwen2.5-7B is trained with a plain "User: / Assistant: <think>" transcript
instead of its own chat template. The same template must reach every place that turns messages
into tokens: verl (``actor_rollout_ref.model.custom_chat_template``), TRL (the tokenizer), and
the merged checkpoint (``chat_template.jinja``), so that evaluating the trained model later
prompts it exactly as it was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

from deepmath.io import DeepmathError, atomic_path

TEMPLATE_FILE = "chat_template.jinja"
_PROBE = [
    {"role": "system", "content": "SYSTEM-PROBE"},
    {"role": "user", "content": "USER-PROBE"},
]


def render(
    text: str,
    messages: list[dict[str, str]],
    add_generation_prompt: bool = True,
    *,
    bos_token: str | None = None,
    eos_token: str | None = None,
) -> str:
    """Render like transformers' ``apply_chat_template`` does: sandboxed jinja with
    trim_blocks + lstrip_blocks, and a special token passed only where the tokenizer has one
    (Qwen2.5's bos_token is null, so ``{{ bos_token }}`` renders nothing, as it did for the
    authors)."""
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    special = {
        name: value
        for name, value in (("bos_token", bos_token), ("eos_token", eos_token))
        if value is not None
    }
    return env.from_string(text).render(
        messages=messages, add_generation_prompt=add_generation_prompt, **special
    )


def read_chat_template(path: str | Path) -> str:
    """The template's text, after checking that it renders a system + user conversation and
    keeps the user's message."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DeepmathError(f"chat template {path}: cannot read it ({e.strerror})") from None
    try:
        out = render(text, _PROBE)
    except Exception as e:  # jinja's syntax and runtime errors share no useful base class
        raise DeepmathError(f"chat template {path} does not render: {e}") from None
    # the user's message must reach the prompt; a system message may be left out (the authors'
    # ORZ template shows none, and their Zero-7B data still carried one)
    user = _PROBE[-1]["content"]
    if user not in out:
        raise DeepmathError(
            f"chat template {path} drops the user message ({user} not in the rendered prompt "
            f"{out[:200]!r})"
        )
    return text


def install_chat_template(folder: str | Path, text: str) -> Path:
    """Make ``text`` the folder's chat template (a template in tokenizer_config.json would
    compete with the file, so it is removed)."""
    folder = Path(folder)
    config = folder / "tokenizer_config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        if data.pop("chat_template", None) is not None:
            with atomic_path(config) as tmp:
                tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    target = folder / TEMPLATE_FILE
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return target
