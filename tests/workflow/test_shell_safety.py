"""No config value reaches a shell unquoted: hostile paths in every value that becomes part of a
job's command line, each command run by bash for real (with `python` stubbed out)."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from tests.workflow.helpers import REPO, snakemake

# Every way a shell could be talked into running something: separators, substitution,
# backticks, pipes, background, comments, both quote characters, a glob and a newline-free
# redirection. A canary file per trick shows which one ran.
PAYLOAD = (
    "m; touch PWNED1; $(touch PWNED2) `touch PWNED3` && touch PWNED4 | touch PWNED5 & "
    "touch PWNED6 > PWNED7 # \"q\" 'r' *"
)


def test_hostile_paths_never_run_as_shell(venv_env, tmp_path):
    # paths the config names: the model folder, a chat template file, a prompt file
    template = tmp_path / f"tpl {PAYLOAD}.jinja"
    shutil.copy(REPO / "config" / "templates" / "orz.jinja", template)
    prompt = tmp_path / f"judge {PAYLOAD}.txt"
    shutil.copy(REPO / "config" / "prompts" / "demo" / "judge.txt", prompt)
    # a dataset to audit at a hostile path, and hostile labels (they reach params as JSON)
    audited = tmp_path / f"release {PAYLOAD}.parquet"
    audited.write_bytes(b"")
    load = {"path": "parquet", "data_files": str(audited), "split": "train"}
    overlay = tmp_path / "hostile.yaml"
    overlay.write_text(
        yaml.safe_dump(
            {
                "run": "pytest-shell",
                "models_dir": f"results/pytest-shell/{PAYLOAD}",
                "prompts": {"judge": str(prompt)},
                "rl": {"runs": {"smollm2-grpo": {"chat_template": str(template)}}},
                "analysis": {"compare": {"math_train": {"label": PAYLOAD}}},
                "audit": {
                    "datasets": {
                        "release": {"label": PAYLOAD},
                        "hostile": {"label": PAYLOAD, "load": load},
                    }
                },
            }
        )
    )
    proc = snakemake(
        "-n", "-p", "--configfile", "config/demo.yaml", str(overlay), "--cores", "2",
        env=venv_env,
    )  # fmt: skip
    commands = [
        line.split("Shell command: ", 1)[1]
        for line in (proc.stdout + proc.stderr).splitlines()
        if line.startswith("Shell command: ")
    ]
    rules = {c.split("python -m deepmath.")[1].split()[0] for c in commands if "deepmath." in c}
    assert len(rules) >= 15, rules  # every stage's command line is among them
    assert sum(PAYLOAD in c or "PWNED" in c for c in commands) >= 5  # the payload reached them
    assert any("deepmath.pull published --name hostile" in c and "PWNED" in c for c in commands)
    assert any("deepmath.analysis audit-card" in c and "PWNED" in c for c in commands)

    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    for command in commands:
        # `python` is a no-op function: the shell parses, expands and redirects for real, but no
        # stage runs. Any PWNED file afterwards means part of a value ran as a command.
        script = f"python() {{ :; }}\n{command}\n"
        subprocess.run(
            ["bash", "-c", script], cwd=sandbox, capture_output=True, text=True, timeout=30
        )
    ran = sorted(p.name for p in sandbox.rglob("PWNED*"))
    assert ran == [], f"shell injection: {ran}"
