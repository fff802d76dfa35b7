"""KubeRay's CRD schemas as strict JSON Schemas, for `jsonschema`.

A CRD's `openAPIV3Schema` is JSON Schema plus Kubernetes' extensions. Made strict as
`kubectl --validate=strict` is: an object that lists its properties takes no others unless it says
`x-kubernetes-preserve-unknown-fields`; `x-kubernetes-int-or-string` is an integer or a string.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import yaml

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are large: libyaml reads them 10x faster

CRDS = Path(__file__).resolve().parents[2] / "shared" / "kuberay-crds"
FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml",
         "RayService": "ray.io_rayservices.yaml"}


def strict(schema: dict) -> dict:
    schema = dict(schema)
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = schema.pop("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in schema:
        schema["properties"] = {k: strict(v) for k, v in schema["properties"].items()}
        if not preserve and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = strict(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        schema["items"] = strict(schema["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [strict(s) for s in schema[key]]
    return schema


@cache
def schema_for(kind: str) -> dict:
    for doc in yaml.load_all((CRDS / FILES[kind]).read_text(), Loader=_Loader):
        if doc and doc.get("kind") == "CustomResourceDefinition":
            version = next(v for v in doc["spec"]["versions"] if v["name"] == "v1")
            return strict(version["schema"]["openAPIV3Schema"])
    raise LookupError(f"no CRD for {kind} in {CRDS}")


def errors(doc: dict) -> list[str]:
    """Every way `doc` breaks its kind's schema, as 'path: message'."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in _validator(doc["kind"]).iter_errors(doc)]


@cache
def _validator(kind: str):
    import jsonschema

    return jsonschema.Draft7Validator(schema_for(kind))
