"""The cluster configurations parse, pass Ray's own validation, and agree with this repository."""

import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

from draw_service.serve.app import AppArgs
from draw_service.serve.config import ServeSettings

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
RAY_PIN = re.search(r'"ray\[[^\]]*\]==([0-9.]+)"', (REPO / "pyproject.toml").read_text()).group(1)


def load(name):
    return list(yaml.safe_load_all((CLUSTER / name).read_text()))


@pytest.mark.parametrize("path", sorted(p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*.yaml")))
def test_every_yaml_parses(path):
    docs = load(path)
    assert docs and all(isinstance(d, dict) for d in docs)


def test_the_aws_launcher_config_passes_rays_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load("aws.yaml")[0]
    validate_config(prepare_config(config))
    assert RAY_PIN in config["docker"]["image"]
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # the head trains nothing
    gpu = config["available_node_types"]["gpu_worker"]
    assert gpu["min_workers"] == 0 and gpu["node_config"]["InstanceType"].startswith(("g", "p"))
    for node in config["available_node_types"].values():
        assert "instance-profile" in node["node_config"]["IamInstanceProfile"]["Arn"]  # S3 without keys
    mount = next(iter(config["file_mounts"]))
    assert any("pip install" in c and mount in c for c in config["setup_commands"])  # the package on every node


def cluster_spec_checks(spec, serving=False):
    assert spec["rayVersion"] == RAY_PIN
    assert spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    assert gpu["minReplicas"] == (1 if serving else 0)
    pod = gpu["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    for c in [head["template"]["spec"]["containers"][0], container]:
        assert {"secretRef": {"name": "draw-service-s3"}} in c["envFrom"]


def test_raycluster_has_a_cpu_head_and_gpu_workers_from_zero():
    doc = load("kuberay/raycluster.yaml")[0]
    assert doc["kind"] == "RayCluster"
    cluster_spec_checks(doc["spec"])
    secret = load("kuberay/s3-secret.yaml")[0]
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "draw-service-s3"
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secret["stringData"])


def test_rayjob_runs_the_tune_script_of_this_repo():
    doc = load("kuberay/rayjob.yaml")[0]
    assert doc["kind"] == "RayJob"
    cluster_spec_checks(doc["spec"]["rayClusterSpec"])
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[0] == "python" and argv[1].endswith("jobs/tune_svhn.py")
    assert (REPO / "jobs" / "tune_svhn.py").is_file()
    assert "--storage" in argv and argv[argv.index("--storage") + 1].startswith("s3://")


@pytest.mark.parametrize("source", ["serve.yaml", "kuberay/rayservice.yaml"])
def test_serve_configs_point_at_an_importable_app_with_valid_settings(source):
    doc = load(source)[0]
    if doc.get("kind") == "RayService":
        cluster_spec_checks(doc["spec"]["rayClusterConfig"], serving=True)
        doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
    app = doc["applications"][0]
    module, attr = app["import_path"].split(":")
    builder = getattr(importlib.import_module(module), attr)
    assert callable(builder)
    AppArgs(**app["args"])  # the arguments build_app takes
    deployment = app["deployments"][0]
    assert deployment["name"] == "DRAWService"
    settings = ServeSettings.from_dict(deployment["user_config"])
    assert settings.max_batch_size <= deployment["max_ongoing_requests"]  # a batch can fill
    assert deployment["ray_actor_options"]["num_gpus"] == 1


def test_the_image_is_built_on_the_pinned_ray():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"rayproject/ray:{RAY_PIN}-" in dockerfile and "pip install" in dockerfile
