"""``python -m deepmath.serve``: start a server for a config role, check, list or stop the shared
ones.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from deepmath.io import (
    DeepmathError,
    setup_logging,
)
from deepmath.serve.cmdline import build_command
from deepmath.serve.config import (
    ServeConfig,
    ServerError,
    model_dir_for,
    role_serve_config,
    serve_config,
    with_resolved_dtype,
)
from deepmath.serve.registry import acquire, registry_status, server_key, stop_all
from deepmath.serve.server import ManagedServer, log_tail


def _load_spec(args: argparse.Namespace) -> tuple[ServeConfig, Path]:
    if args.config:
        from deepmath.configfile import load_config

        config = load_config(args.config)
        if not args.role:
            raise DeepmathError("--config needs --role (the llm.<role> whose serve: block to use)")
        llm = config.get("llm") or {}
        if args.role not in llm:
            raise DeepmathError(f"llm.{args.role} is not in {', '.join(args.config)}")
        cfg = role_serve_config(args.role, llm[args.role], models=config.get("models"))
        folder = Path(args.model_dir) if args.model_dir else model_dir_for(config, cfg)
        return cfg, folder
    if not args.spec or not args.model_dir:
        raise DeepmathError("give --config FILE --role NAME, or --spec JSON --model-dir DIR")
    try:
        spec = json.loads(args.spec)
    except ValueError as err:
        raise DeepmathError(f"--spec is not JSON: {err}") from None
    return serve_config(spec, where="serve"), Path(args.model_dir)


def _add_spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", help="workflow config file(s), merged in order")
    p.add_argument("--role", help="the llm.<role> whose serve: block to use (with --config)")
    p.add_argument("--spec", help="a serve: block as JSON (instead of --config/--role)")
    p.add_argument("--model-dir", help="model folder (default: <models_dir>/<serve.model>)")
    p.add_argument("--state-dir", help="folder for the log, caches and tmp (default .serve/<key>)")
    p.add_argument("--log", help="server log file (default <state-dir>/server.log)")
    p.add_argument("-v", "--verbose", action="store_true")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m deepmath.serve",
        description="Start, share and stop the vLLM servers of the workflow's LLM roles.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start", help="start a server and keep it in the foreground until Ctrl-C")
    _add_spec_args(p)
    p.add_argument(
        "--registry", help="start (or reuse) a shared, detached server registered here; then exit"
    )
    p.add_argument("--print-command", action="store_true", help="print the command; start nothing")
    p = sub.add_parser("run", help="start a server, run a command with it, stop the server")
    _add_spec_args(p)
    p.add_argument("argv", nargs=argparse.REMAINDER, help="-- command (gets OPENAI_BASE_URL)")
    for name, text in (
        ("stop-all", "stop every server in a registry (the Snakefile's onsuccess/onerror)"),
        ("status", "list the servers in a registry with their state"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument(
            "--registry", required=True, help="registry folder, e.g. results/demo/.servers"
        )
        p.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.cmd == "stop-all":
        done = stop_all(args.registry)
        print(json.dumps([{k: e.get(k) for k in ("base_url", "pid", "stopped")} for e in done]))
        return
    if args.cmd == "status":
        print(json.dumps(registry_status(args.registry), indent=2))
        return
    cfg, folder = _load_spec(args)
    cfg = with_resolved_dtype(cfg)
    state_dir = Path(args.state_dir or Path(".serve") / server_key(cfg, folder))
    if args.cmd == "start" and args.print_command:
        print(" ".join(build_command(cfg, folder, port=cfg.port or 8000)))
        return
    if args.cmd == "start" and args.registry:
        entry = acquire(cfg, folder, registry=args.registry)
        print(json.dumps({k: entry[k] for k in ("base_url", "pid", "port", "log", "reused")}))
        return
    server = ManagedServer(cfg, folder, state_dir=state_dir, log_path=args.log)
    if args.cmd == "run":
        command = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
        if not command:
            raise DeepmathError("run needs a command after --")
        with server as url:
            env = {**os.environ, "OPENAI_BASE_URL": url, "DEEPMATH_SERVE_URL": url}
            env.setdefault("OPENAI_API_KEY", "EMPTY")
            code = subprocess.call(command, env=env)
        sys.exit(code)
    try:
        with server as url:
            print(url, flush=True)
            while server.running():
                time.sleep(1)
            raise ServerError(
                f"the server exited; last lines of {server.log_path}:\n{log_tail(server.log_path)}"
            )
    except KeyboardInterrupt:
        pass
