"""The cluster configurations: KubeRay's own CRD schemas (strict, as `kubectl --validate=strict`), Ray
Serve's own config schema, Ray's own launcher validation, and what the operator then does with them."""

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from kube_schema import errors

from draw_service.serve.app import AppArgs
from draw_service.serve.config import ServeSettings

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
RAY_PIN = re.search(r'"ray\[[^\]]*\]==([0-9.]+)"', (REPO / "pyproject.toml").read_text()).group(1)
MANIFESTS = ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "kuberay/rayservice.yaml"]
# What a node offers pods (allocatable, after the kubelet and system reservations, EKS figures, rounded down)
ALLOCATABLE = {"g5.2xlarge": {"cpu": 7.9, "memory_gi": 28.5, "gpu": 1}}


def load(name):
    return list(yaml.safe_load_all((CLUSTER / name).read_text()))


def cluster_spec(doc):
    return {"RayCluster": lambda d: d["spec"], "RayJob": lambda d: d["spec"]["rayClusterSpec"],
            "RayService": lambda d: d["spec"]["rayClusterConfig"]}[doc["kind"]](doc)


def gi(quantity: str) -> float:
    return float(quantity[:-2]) if quantity.endswith("Gi") else float(quantity) / 2**30


@pytest.mark.parametrize("path", sorted(p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*.yaml")))
def test_every_yaml_parses(path):
    docs = load(path)
    assert docs and all(isinstance(d, dict) for d in docs)


@pytest.mark.parametrize("path", MANIFESTS)
def test_manifests_pass_kuberays_crd_schema_strictly(path):
    (doc,) = load(path)
    assert doc["apiVersion"] == "ray.io/v1"
    assert errors(doc) == []
    broken = json.loads(json.dumps(doc))  # the check is real: an unknown field anywhere is an error
    cluster_spec(broken)["headGroupSpec"]["template"]["spec"]["containers"][0]["prots"] = []
    assert any("'prots' was unexpected" in e for e in errors(broken))


@pytest.mark.parametrize("path", MANIFESTS)
def test_what_the_operator_does_with_them(path):
    (doc,) = load(path)
    spec = cluster_spec(doc)
    assert spec["rayVersion"] == RAY_PIN and spec["enableInTreeAutoscaling"] is True
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the head trains nothing
    head_container = head["template"]["spec"]["containers"][0]
    # KubeRay builds the head Service from the listed ports: without `dashboard` it cannot reach the
    # dashboard, so it submits no job and no Serve application.
    ports = {p["name"]: p["containerPort"] for p in head_container.get("ports", [])}
    if ports:
        assert ports.get("dashboard") == 8265 and ports.get("gcs") == 6379
    if doc["kind"] == "RayService":
        assert ports.get("serve") == 8000
        assert doc["spec"]["upgradeStrategy"]["type"] in ("NewCluster", "NewClusterWithIncrementalUpgrade")
    gpu = next(g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu")
    assert gpu["minReplicas"] == (1 if doc["kind"] == "RayService" else 0)
    pod = gpu["template"]["spec"]
    container = pod["containers"][0]
    # The pod fits the instance type it names, /dev/shm (memory-backed) included.
    instance = pod["nodeSelector"]["node.kubernetes.io/instance-type"]
    res, node = container["resources"], ALLOCATABLE[instance]
    assert res["requests"] == res["limits"]  # what Ray counts is what the pod is guaranteed
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory" and {"name": "dshm", "mountPath": "/dev/shm"} in \
        container["volumeMounts"]
    assert float(res["limits"]["cpu"]) <= node["cpu"], instance
    assert gi(res["limits"]["memory"]) <= node["memory_gi"], instance
    assert int(res["limits"]["nvidia.com/gpu"]) == node["gpu"]
    assert int(gpu["rayStartParams"]["object-store-memory"]) / 2**30 <= gi(shm["emptyDir"]["sizeLimit"])
    # The W&B key only where training runs (the GPU workers): never on the head, nor on serving pods.
    holds_wandb_key = lambda c: any(e["name"] == "WANDB_API_KEY" for e in c.get("env", []))  # noqa: E731
    assert not holds_wandb_key(head_container)
    assert holds_wandb_key(container) == (doc["kind"] != "RayService")
    # S3 keys are optional, so IAM roles for service accounts work in their place.
    for c in (head_container, container):
        refs = [e["secretRef"] for e in c["envFrom"] if "secretRef" in e]
        assert {"name": "draw-service-s3", "optional": True} in refs


def test_the_rayjob_runs_trials_in_parallel_on_an_autoscaling_cluster():
    (doc,) = load("kuberay/rayjob.yaml")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[0] == "python" and argv[1].endswith("jobs/tune_svhn.py") and (REPO / "jobs" / "tune_svhn.py").is_file()
    opt = lambda name: argv[argv.index(name) + 1]  # noqa: E731
    assert opt("--storage").startswith("s3://")
    gpu = next(g for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    # GPU workers scale from zero: the search is told how many trials the group can grow to hold
    assert gpu["minReplicas"] == 0 and int(opt("--max-concurrent")) == gpu["maxReplicas"]
    cpus = float(gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"])
    assert float(opt("--cpus-per-worker")) == cpus and float(opt("--gpus-per-worker")) == 1  # uses its pod
    budget = float(opt("--time-budget"))
    assert budget < doc["spec"]["activeDeadlineSeconds"] and doc["spec"]["shutdownAfterJobFinishes"] is True
    # a lost head reruns the entrypoint on a new cluster, and the search resumes by its name from S3
    assert doc["spec"]["backoffLimit"] >= 1 and "--name" not in argv  # so every rerun gets the same default name


@pytest.mark.parametrize("source", ["serve.yaml", "kuberay/rayservice.yaml"])
def test_serve_configs_pass_serves_own_schema_and_point_at_an_importable_app(source):
    from ray.serve.schema import ServeDeploySchema

    doc = load(source)[0]
    if doc.get("kind") == "RayService":
        doc = yaml.safe_load(doc["spec"]["serveConfigV2"])
    config = ServeDeploySchema.model_validate(doc)  # Ray Serve's own schema
    app = doc["applications"][0]
    module, attr = app["import_path"].split(":")
    assert callable(getattr(importlib.import_module(module), attr))
    AppArgs(**app["args"])  # the arguments build_app takes
    deployment = app["deployments"][0]
    assert deployment["name"] == "DRAWService"
    settings = ServeSettings.from_dict(deployment["user_config"])
    assert settings.max_batch_size <= deployment["max_ongoing_requests"]  # a batch can fill
    # autoscaling on ongoing requests, one full batch per replica
    assert config.applications[0].deployments[0].num_replicas == "auto"
    assert deployment["autoscaling_config"]["target_ongoing_requests"] == settings.max_batch_size
    assert deployment["ray_actor_options"]["num_gpus"] == 1


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
    # A custom head profile gets no autoscaler role from Ray: its policy must launch workers and pass their role.
    policy = json.loads((CLUSTER / "aws-head-policy.json").read_text())
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "ec2:CreateTags", "iam:PassRole", "s3:PutObject"} <= actions
    worker_role = gpu["node_config"]["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1]
    passrole = next(s for s in policy["Statement"] if "iam:PassRole" in s["Action"])
    assert any(r.endswith("/" + worker_role) for r in passrole["Resource"])


def test_the_image_is_built_on_the_pinned_ray_without_the_workspace():
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert f"rayproject/ray:{RAY_PIN}-" in dockerfile and "pip install" in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs/", "wandb/", "demo-out/", "bench-out/"} <= set(ignored)


def ray_clusters_described() -> list[tuple[str, dict]]:
    """Every document under cluster/ that describes a Ray cluster: KubeRay's three kinds and `ray up` configs."""
    found = []
    for path in sorted(CLUSTER.rglob("*.yaml")):
        for doc in load(path.relative_to(CLUSTER).as_posix()):
            if doc.get("kind") in ("RayCluster", "RayJob", "RayService") or "head_node_type" in doc:
                found.append((path.relative_to(CLUSTER).as_posix(), doc))
    return found


def token_auth_problems(name: str, doc: dict) -> list[str]:
    """What leaves a described Ray cluster open to whoever reaches it (none: token authentication is on)."""
    problems = []
    if "kind" in doc:
        spec = cluster_spec(doc)
        auth = spec.get("authOptions", {})
        if auth.get("mode") != "token":
            problems.append(f"{name}: authOptions.mode is {auth.get('mode')!r}, not 'token'")
        # one Secret the user makes (key auth_token), named the same in every manifest and the docs
        if auth.get("secretName") != "draw-service-ray-token":
            problems.append(f"{name}: authOptions.secretName is {auth.get('secretName')!r}")
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            for container in group["template"]["spec"]["containers"]:  # nothing turns it off again
                if any(e["name"] == "RAY_AUTH_MODE" for e in container.get("env", [])):
                    problems.append(f"{name}: container {container['name']} sets RAY_AUTH_MODE itself")
        return problems
    for command in (c for c in doc["head_start_ray_commands"] + doc["worker_start_ray_commands"] if "ray start" in c):
        if not re.search(r"\bRAY_AUTH_MODE=token\b", command):
            problems.append(f"{name}: `{command}` starts Ray without RAY_AUTH_MODE=token")
        if "0.0.0.0" in command:
            problems.append(f"{name}: `{command}` opens the dashboard beyond the head's localhost")
    # the token is made on the head, printed nowhere, and reaches every worker from the head
    made = [c for c in doc.get("head_setup_commands", []) if "get-auth-token --generate" in c]
    if not made or not all("> /dev/null" in c for c in made):
        problems.append(f"{name}: the head does not make its token quietly (ray get-auth-token --generate > /dev/null)")
    if "/home/ray/.ray/auth_token" not in doc.get("cluster_synced_files", []):
        problems.append(f"{name}: the token does not reach the workers (cluster_synced_files)")
    return problems


def test_every_ray_cluster_described_here_has_token_authentication_on():
    """No cluster of ours lets anyone who reaches its dashboard run code (ShadowRay, CVE-2023-48022)."""
    described = ray_clusters_described()
    assert {name for name, _ in described} == {*MANIFESTS, "aws.yaml"}  # a new cluster file is checked too
    assert [p for name, doc in described for p in token_auth_problems(name, doc)] == []


def test_the_token_check_finds_a_cluster_left_open():
    (job,) = load("kuberay/rayjob.yaml")
    del job["spec"]["rayClusterSpec"]["authOptions"]
    assert token_auth_problems("rayjob.yaml", job) == ["rayjob.yaml: authOptions.mode is None, not 'token'",
                                                       "rayjob.yaml: authOptions.secretName is None"]
    (aws,) = load("aws.yaml")
    aws["worker_start_ray_commands"] = ["ray start --address=$RAY_HEAD_IP:6379"]
    aws["head_setup_commands"] = ["ray get-auth-token --generate"]
    assert len(token_auth_problems("aws.yaml", aws)) == 2
