"""Run inside `deepmath.raycluster run`: report the Ray cluster as JSON (argv[1])."""

import json
import socket
import sys

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@ray.remote(num_cpus=1)
def where() -> str:
    return socket.gethostname()


ray.init()  # RAY_ADDRESS from the launcher
nodes = [n for n in ray.nodes() if n["Alive"]]
hosts = {
    n["NodeManagerAddress"]: ray.get(
        where.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote()
    )
    for n in nodes
}
with open(sys.argv[1], "w") as fh:
    json.dump(
        {
            "nodes": sorted(hosts),
            "task_hosts": hosts,
            "gpus": {n["NodeManagerAddress"]: n["Resources"].get("GPU", 0) for n in nodes},
        },
        fh,
        indent=2,
    )
