"""Watches a Ray cluster from outside, as `ray status` would: every second one JSON line with the nodes alive
, the Ray Train workers running and the Serve replicas, until killed.

    python tests/cluster_watch.py DASHBOARD_ADDRESS    # the environment carries the cluster's token
"""

import json
import sys
import time

from ray.util.state import list_actors, list_nodes

address = sys.argv[1]
while True:
    try:
        nodes = list_nodes(address=address, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False)
        actors = [a.class_name for a in list_actors(address=address, filters=[("state", "=", "ALIVE")], limit=1000,
                                                    raise_on_missing_output=False)]
        print(json.dumps({"t": round(time.time(), 1), "nodes": len(nodes),
                          "workers": actors.count("RayTrainWorker"),
                          "replicas": sum(a.startswith("ServeReplica:") for a in actors)}), flush=True)
    except Exception as err:  # the head still starting, or going: the next second says more
        print(json.dumps({"t": round(time.time(), 1), "error": str(err)[:200]}), flush=True)
    time.sleep(1)
