#!/usr/bin/env python3
"""Validates the deployment files of gitlab-connector without a cluster.

    python3 -m venv /tmp/kv && /tmp/kv/bin/pip install kubernetes-validate pyyaml
    /tmp/kv/bin/python deploy/validate.py [--kube-version 1.30] [--no-kustomize]

Checks, in order (any failure: a message naming the file and object, exit status 1):
  1. every YAML file under deploy/ parses (PyYAML);
  2. every kustomization.yaml uses only known fields and every file or directory it lists
     (resources, patches, generator files, components) exists; every manifest under deploy/ is
     listed by some kustomization;
  3. every Kubernetes object in the resource files, and every object of each kustomization as
     rendered, is valid against the official Kubernetes JSON schemas for --kube-version, strictly
     (unknown fields are errors), using the schemas that the kubernetes-validate package ships
     offline. Rendering is done here in Python (resources, configMap/secretGenerator, strategic
     merge and JSON 6902 patches, images, replicas, namespace; generated names are not hashed).
     When `kustomize` or `kubectl` is on PATH, the real `kustomize build` output is validated too
     and compared with the Python rendering;
     Prometheus-operator kinds (ServiceMonitor, PodMonitor), which have no such schema, are
     validated strictly against validate.py's own schemas of them (MONITOR_SCHEMAS);
  4. rendered objects reference what exists: ConfigMaps/Secrets (and Secret keys) used by pods,
     Service selectors and ports, Ingress backends, HPA targets, PDB selectors, probe ports,
     ServiceMonitor/PodMonitor selectors and endpoint ports (and no pod port scraped twice); the
     base sets no namespace; terminationGracePeriodSeconds covers SHUTDOWN_GRACE (workers) and
     REQUEST_TIMEOUT + the preStop sleep (API);
  5. docker-compose.yml: services, depends_on (and their conditions), named volumes, secrets,
     configs, profiles, build contexts and ${VAR} interpolation defaults.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

try:
    import yaml
    import jsonschema  # a dependency of kubernetes-validate
    import kubernetes_validate
    from kubernetes_validate import utils as kv_utils
except ImportError as e:  # pragma: no cover
    sys.exit(
        f"missing dependency ({e.name}): python3 -m venv /tmp/kv && "
        "/tmp/kv/bin/pip install kubernetes-validate pyyaml, then run with /tmp/kv/bin/python"
    )

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
COMPOSE = REPO / "docker-compose.yml"


class Failures:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")


FAIL = Failures()
STATS: dict[str, int] = {}


def count(key: str, n: int = 1) -> None:
    STATS[key] = STATS.get(key, 0) + n


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def load_yaml_docs(path: Path) -> list:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# --------------------------------------------------------------------------- 1. parse every file

def parse_all_yaml() -> dict[Path, list]:
    parsed: dict[Path, list] = {}
    for path in sorted(list(DEPLOY.rglob("*.yaml")) + list(DEPLOY.rglob("*.yml"))):
        try:
            parsed[path] = load_yaml_docs(path)
            count("yaml files parsed")
            count("yaml documents", len(parsed[path]))
        except yaml.YAMLError as e:
            FAIL.add(rel(path), f"YAML does not parse: {e}")
    return parsed


# --------------------------------------------------------------------------- 2. kustomizations

KUSTOMIZATION_FIELDS = {
    "apiVersion", "kind", "metadata", "resources", "components", "namespace", "namePrefix",
    "nameSuffix", "labels", "commonLabels", "commonAnnotations", "images", "replicas", "patches",
    "patchesStrategicMerge", "patchesJson6902", "configMapGenerator", "secretGenerator",
    "generatorOptions", "buildMetadata", "openapi", "crds", "generators", "transformers",
    "validators", "replacements", "vars", "configurations", "sortOptions", "helmCharts",
    "helmGlobals", "bases",
}
# What the Python renderer below implements; anything else is reported, not silently ignored.
RENDERED_FIELDS = {"apiVersion", "kind", "metadata", "resources", "namespace", "images", "replicas",
                   "patches", "configMapGenerator", "secretGenerator"}


def is_kustomization_file(path: Path) -> bool:
    return path.name in ("kustomization.yaml", "kustomization.yml", "Kustomization")


def check_kustomization(path: Path, k: dict, listed: set[Path]) -> None:
    where = rel(path)
    base = path.parent
    count("kustomizations")
    if not isinstance(k, dict):
        FAIL.add(where, "is not a mapping")
        return
    if k.get("kind", "Kustomization") != "Kustomization":
        FAIL.add(where, f"kind is {k.get('kind')!r}, expected Kustomization")
    for field in k:
        if field not in KUSTOMIZATION_FIELDS:
            FAIL.add(where, f"unknown kustomization field {field!r}")

    def must_exist(entry: str, what: str, directory_ok: bool) -> None:
        if re.match(r"^[a-z]+://|^github\.com/", entry):
            FAIL.add(where, f"{what} {entry!r} is remote; this validator only checks local files")
            return
        target = (base / entry).resolve()
        count("kustomization references checked")
        if target.is_dir() and directory_ok:
            if not any((target / n).is_file() for n in ("kustomization.yaml", "kustomization.yml", "Kustomization")):
                FAIL.add(where, f"{what} {entry!r} is a directory without a kustomization.yaml")
            listed.add(target)
        elif target.is_file():
            listed.add(target)
        else:
            FAIL.add(where, f"{what} {entry!r} does not exist ({rel(target)})")

    for entry in k.get("resources", []) or []:
        must_exist(entry, "resource", directory_ok=True)
    for entry in k.get("bases", []) or []:
        must_exist(entry, "base", directory_ok=True)
    for entry in k.get("components", []) or []:
        must_exist(entry, "component", directory_ok=True)
    for entry in k.get("patchesStrategicMerge", []) or []:
        if isinstance(entry, str) and "\n" not in entry:
            must_exist(entry, "patchesStrategicMerge", directory_ok=False)
    for key in ("patches", "patchesJson6902"):
        for i, patch in enumerate(k.get(key, []) or []):
            if not isinstance(patch, dict):
                FAIL.add(where, f"{key}[{i}] is not a mapping")
            elif "path" in patch:
                must_exist(patch["path"], f"{key}[{i}].path", directory_ok=False)
            elif "patch" not in patch:
                FAIL.add(where, f"{key}[{i}] has neither path nor patch")
    for key in ("configMapGenerator", "secretGenerator"):
        for gen in k.get(key, []) or []:
            for entry in gen.get("files", []) or []:
                must_exist(entry.split("=", 1)[-1], f"{key} {gen.get('name')} file", directory_ok=False)
            for entry in gen.get("envs", []) or []:
                must_exist(entry, f"{key} {gen.get('name')} env file", directory_ok=False)
            if gen.get("env"):
                must_exist(gen["env"], f"{key} {gen.get('name')} env file", directory_ok=False)


# --------------------------------------------------------------------------- 3. rendering

# Strategic merge keys of the lists that appear in pod specs and Services.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "envFrom": None, "volumes": "name", "volumeMounts": "mountPath", "imagePullSecrets": "name",
    "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
}


def merge_key_for(field: str, items: list) -> str | None:
    if field == "ports":
        if any(isinstance(i, dict) and "containerPort" in i for i in items):
            return "containerPort"
        return "port"
    return MERGE_KEYS.get(field)


def strategic_merge(base, patch, field: str = ""):
    if isinstance(patch, dict) and isinstance(base, dict):
        if "$patch" in patch or any(k.startswith("$") for k in patch):
            raise NotImplementedError(f"patch directive in {field or 'patch'}: not supported by validate.py")
        out = dict(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = strategic_merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(patch, list) and isinstance(base, list):
        key = merge_key_for(field, base + patch)
        if key is None:
            return copy.deepcopy(patch)
        out = [copy.deepcopy(i) for i in base]
        for item in patch:
            match = next((j for j, b in enumerate(out) if isinstance(b, dict) and isinstance(item, dict)
                          and b.get(key) == item.get(key)), None)
            if match is None:
                out.append(copy.deepcopy(item))
            else:
                out[match] = strategic_merge(out[match], item, field)
        return out
    return copy.deepcopy(patch)


def json_pointer_parts(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")] if pointer else []


def json6902(obj: dict, ops: list) -> dict:
    obj = copy.deepcopy(obj)
    for op in ops:
        parts = json_pointer_parts(op["path"])
        parent = obj
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if isinstance(parent, list):
            index = len(parent) if last == "-" else int(last)
            if kind == "add":
                parent.insert(index, op["value"])
            elif kind == "replace":
                parent[index] = op["value"]
            elif kind == "remove":
                del parent[index]
            else:
                raise NotImplementedError(f"JSON patch op {kind!r}")
        else:
            if kind in ("add", "replace"):
                if kind == "replace" and last not in parent:
                    raise KeyError(f"replace of missing {op['path']}")
                parent[last] = op["value"]
            elif kind == "remove":
                del parent[last]
            else:
                raise NotImplementedError(f"JSON patch op {kind!r}")
    return obj


def ident(obj: dict) -> tuple[str, str]:
    return obj.get("kind", "?"), (obj.get("metadata") or {}).get("name", "?")


def generate(gen: dict, kind: str, base: Path) -> dict:
    data: dict[str, str] = {}
    for literal in gen.get("literals", []) or []:
        key, _, value = literal.partition("=")
        data[key] = value
    for env_file in (gen.get("envs", []) or []) + ([gen["env"]] if gen.get("env") else []):
        for line in (base / env_file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                key, _, value = line.partition("=")
                data[key] = value
    for entry in gen.get("files", []) or []:
        key, _, file = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        data[key] = (base / file).read_text()
    options = gen.get("options", {}) or {}
    obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": gen["name"]}}
    if options.get("labels"):
        obj["metadata"]["labels"] = dict(options["labels"])
    if options.get("annotations"):
        obj["metadata"]["annotations"] = dict(options["annotations"])
    if kind == "Secret":
        obj["type"] = gen.get("type", "Opaque")
        obj["stringData"] = data
    else:
        obj["data"] = data
    obj["__generated__"] = True
    return obj


def set_image(image: str, rules: list) -> str:
    m = re.match(r"^(?P<name>[^@]+?)(?::(?P<tag>[^:/@]+))?(?:@(?P<digest>.+))?$", image)
    name = m.group("name") if m else image
    for rule in rules:
        if rule.get("name") == name:
            new = rule.get("newName", name)
            if rule.get("digest"):
                return f"{new}@{rule['digest']}"
            tag = rule.get("newTag", m.group("tag") if m else None)
            return f"{new}:{tag}" if tag else new
    return image


def pod_spec(obj: dict) -> dict | None:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    if obj.get("kind") == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    return (spec.get("template") or {}).get("spec")


def render(kdir: Path) -> list[dict]:
    """A kustomize-equivalent rendering of the subset of kustomize these files use."""
    kfile = next(kdir / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization") if (kdir / n).is_file())
    k = load_yaml_docs(kfile)[0]
    where = rel(kfile)
    for field in k:
        if field in KUSTOMIZATION_FIELDS and field not in RENDERED_FIELDS:
            raise NotImplementedError(f"{where}: field {field!r} is not rendered by validate.py; extend it")
    objects: list[dict] = []
    for entry in k.get("resources", []) or []:
        target = (kdir / entry).resolve()
        if target.is_dir():
            objects.extend(render(target))
        else:
            objects.extend(copy.deepcopy(d) for d in load_yaml_docs(target))
    for key, kind in (("configMapGenerator", "ConfigMap"), ("secretGenerator", "Secret")):
        for gen in k.get(key, []) or []:
            new = generate(gen, kind, kdir)
            behavior = gen.get("behavior", "create")
            existing = next((i for i, o in enumerate(objects) if ident(o) == (kind, gen["name"])), None)
            if behavior == "create":
                if existing is not None:
                    raise ValueError(f"{where}: {kind} {gen['name']} generated twice (use behavior: merge)")
                objects.append(new)
            elif existing is None:
                raise ValueError(f"{where}: {kind} {gen['name']} has behavior {behavior} but no base to act on")
            elif behavior == "merge":
                field = "stringData" if kind == "Secret" else "data"
                objects[existing].setdefault(field, {}).update(new[field])
            else:  # replace
                objects[existing] = new
    for i, patch in enumerate(k.get("patches", []) or []):
        if "path" in patch:
            docs = load_yaml_docs((kdir / patch["path"]).resolve())
        else:
            docs = list(yaml.safe_load_all(patch["patch"]))
        target = patch.get("target") or {}
        unsupported = set(target) - {"kind", "name", "group", "version"}
        if unsupported:
            raise NotImplementedError(f"{where}: patches[{i}].target {sorted(unsupported)} not supported by validate.py")
        if len(docs) == 1 and isinstance(docs[0], list):  # JSON 6902
            if not target:
                raise ValueError(f"{where}: patches[{i}] is a JSON 6902 patch without a target")
            hits = [j for j, o in enumerate(objects) if o.get("kind") == target.get("kind") and
                    (not target.get("name") or ident(o)[1] == target["name"])]
            if not hits:
                raise ValueError(f"{where}: patches[{i}] matches no object ({target})")
            for j in hits:
                objects[j] = json6902(objects[j], docs[0])
            count("patches applied")
            continue
        for doc in docs:
            kind = target.get("kind") or doc.get("kind")
            name = target.get("name") or (doc.get("metadata") or {}).get("name")
            hits = [j for j, o in enumerate(objects) if ident(o) == (kind, name)]
            if not hits:
                raise ValueError(f"{where}: patch {patch.get('path', i)} targets {kind}/{name}, which the resources do not contain")
            for j in hits:
                objects[j] = strategic_merge(objects[j], doc)
            count("patches applied")
    for rule in k.get("replicas", []) or []:
        hits = [o for o in objects if o.get("kind") in ("Deployment", "StatefulSet", "ReplicaSet") and ident(o)[1] == rule["name"]]
        if not hits:
            raise ValueError(f"{where}: replicas entry {rule['name']} matches no workload")
        for o in hits:
            o["spec"]["replicas"] = rule["count"]
    if k.get("images"):
        used = set()
        for o in objects:
            spec = pod_spec(o)
            for c in (spec or {}).get("containers", []) + (spec or {}).get("initContainers", []):
                new = set_image(c["image"], k["images"])
                if new != c["image"]:
                    used.add(c["image"].split(":")[0])
                c["image"] = new
        for rule in k["images"]:
            if rule["name"] not in used:
                raise ValueError(f"{where}: images entry {rule['name']} matches no container image")
    if k.get("namespace"):
        for o in objects:
            o.setdefault("metadata", {})["namespace"] = k["namespace"]
    return objects


# --------------------------------------------------------------------------- 3b. schemas

# kubernetes-validate has schemas for built-in kinds only. The Prometheus operator's kinds are
# validated against these schemas of our own: the fields these files use, strict
# (additionalProperties: false) where the CRD is (kubectl's server-side field validation rejects
# unknown fields of a custom resource too), with the CRD's enums and duration patterns. Two
# deliberate additions to the CRD: every endpoint names its `port` (we select ports by name, and
# the cross-reference checks need it), and a monitor has at least one endpoint. A field the CRD
# has but these schemas lack is reported as unknown: add it here.
PROM_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"


def monitor_schema(kind: str, endpoints_field: str, port_means: str) -> dict:
    string_map = {"type": "object", "additionalProperties": {"type": "string"}}
    endpoint = {
        "type": "object",
        "additionalProperties": False,
        "required": ["port"],
        "properties": {
            "port": {"type": "string", "minLength": 1, "description": port_means},
            "path": {"type": "string"},
            "scheme": {"type": "string", "enum": ["http", "https"]},
            "interval": {"type": "string", "pattern": PROM_DURATION},
            "scrapeTimeout": {"type": "string", "pattern": PROM_DURATION},
            "authorization": {
                "type": "object",
                "additionalProperties": False,
                "required": ["credentials"],
                "properties": {
                    "type": {"type": "string", "enum": ["Bearer"]},
                    "credentials": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "key"],
                        "properties": {"name": {"type": "string"}, "key": {"type": "string"}},
                    },
                },
            },
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "maxLength": 253, "pattern": DNS_SUBDOMAIN},
                    "namespace": {"type": "string", "maxLength": 63, "pattern": DNS_SUBDOMAIN},
                    "labels": {"type": "object", "propertyNames": {"pattern": LABEL_KEY},
                               "additionalProperties": {"type": "string", "pattern": LABEL_VALUE}},
                    "annotations": string_map,
                },
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints_field],
                "properties": {
                    "selector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"matchLabels": string_map},
                    },
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    endpoints_field: {"type": "array", "minItems": 1, "items": endpoint},
                },
            },
        },
    }


MONITOR_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitor_schema("ServiceMonitor", "endpoints", "a port name of the selected Service"),
    ("monitoring.coreos.com/v1", "PodMonitor"): monitor_schema("PodMonitor", "podMetricsEndpoints", "a container port name of the selected pods"),
}
MONITOR_GROUP = "monitoring.coreos.com/"


def validate_monitor(obj: dict, where: str) -> None:
    kind, name = ident(obj)
    schema = MONITOR_SCHEMAS.get((obj.get("apiVersion"), kind))
    if schema is None:
        FAIL.add(where, f"{kind}/{name}: validate.py has no schema for {obj.get('apiVersion')} {kind} "
                        f"(it has {', '.join(f'{a} {k}' for a, k in MONITOR_SCHEMAS)}); add one to MONITOR_SCHEMAS")
        return
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    count("monitors validated against own schemas")
    for e in errors:
        path = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        hint = ""
        if e.validator == "additionalProperties":
            hint = " (unknown field; if the Prometheus operator's CRD has it, add it to MONITOR_SCHEMAS in validate.py)"
        FAIL.add(where, f"{kind}/{name} is invalid for {obj.get('apiVersion')} (validate.py's schema): {path}: {e.message}{hint}")


def validate_object(obj: dict, where: str, version: str) -> None:
    obj = {k: v for k, v in obj.items() if k != "__generated__"}
    kind, name = ident(obj)
    if str(obj.get("apiVersion", "")).startswith(MONITOR_GROUP):
        validate_monitor(obj, where)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
        count("objects validated against schemas")
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path) or "(top level)"
        FAIL.add(where, f"{kind}/{name} is invalid for Kubernetes {e.version}: {path}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        FAIL.add(where, f"{kind}/{name}: {e.message}")
    except kv_utils.VersionNotSupportedError:
        sys.exit(f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes {version}; "
                 f"it has {', '.join(sorted(set(kv_utils.all_versions()), key=lambda v: tuple(map(int, v.split('.')))))}")


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def normalise(obj: dict, generated: set[str]) -> dict:
    """kustomize's output, with generated names' hash suffixes removed, for comparison."""
    text = json.dumps(obj, sort_keys=True)
    for name in generated:
        text = re.sub(rf'"{re.escape(name)}-[a-z0-9]{{10}}"', f'"{name}"', text)
    return json.loads(text)


# --------------------------------------------------------------------------- 4. cross-references

def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total, matched = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", text):
        total += float(number) * units[unit]
        matched = True
    if not matched:
        raise ValueError(f"not a duration: {text!r}")
    return total


def prom_duration_seconds(text: str) -> float:
    """A Prometheus duration (1y2w3d4h5m6s7ms; the schema has checked the syntax)."""
    units = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|y|w|d|h|m|s)", text))


def check_references(objects: list[dict], where: str, is_base: bool) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objects:
        kind, name = ident(o)
        if name in by_kind.setdefault(kind, {}):
            FAIL.add(where, f"{kind}/{name} is defined twice")
        by_kind[kind][name] = o
        if is_base and (o.get("metadata") or {}).get("namespace"):
            FAIL.add(where, f"{kind}/{name} sets a namespace; the base must stay namespace-agnostic")

    def ref(ok: bool, message: str) -> None:
        count("references checked")
        if not ok:
            FAIL.add(where, message)

    def keys_of(kind: str, name: str) -> set[str]:
        o = by_kind.get(kind, {}).get(name, {})
        return set(o.get("data") or {}) | set(o.get("stringData") or {})

    workloads = [o for o in objects if pod_spec(o) is not None]
    for o in workloads:
        kind, name = ident(o)
        spec = pod_spec(o)
        tmpl_labels = (((o.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}
        selector = ((o.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
            ref(bool(selector) and all(tmpl_labels.get(k) == v for k, v in selector.items()),
                f"{kind}/{name}: selector {selector} does not match its pod template labels {tmpl_labels}")
        volumes = {v["name"]: v for v in spec.get("volumes", []) or []}
        for v in volumes.values():
            if "secret" in v:
                ref(v["secret"].get("secretName") in by_kind.get("Secret", {}),
                    f"{kind}/{name}: volume {v['name']} uses Secret {v['secret'].get('secretName')}, which is not defined")
            if "configMap" in v:
                ref(v["configMap"].get("name") in by_kind.get("ConfigMap", {}),
                    f"{kind}/{name}: volume {v['name']} uses ConfigMap {v['configMap'].get('name')}, which is not defined")
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            cwhere = f"{kind}/{name} container {c.get('name')}"
            for m in c.get("volumeMounts", []) or []:
                ref(m["name"] in volumes, f"{cwhere}: volumeMount {m['name']} has no volume")
            for source in c.get("envFrom", []) or []:
                for field, skind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                    if field in source and not source[field].get("optional"):
                        ref(source[field]["name"] in by_kind.get(skind, {}),
                            f"{cwhere}: envFrom {skind} {source[field]['name']} is not defined")
            env = {}
            for e in c.get("env", []) or []:
                env[e["name"]] = e.get("value")
                vf = e.get("valueFrom") or {}
                for field, skind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                    if field in vf and not vf[field].get("optional"):
                        r = vf[field]
                        ref(r["name"] in by_kind.get(skind, {}), f"{cwhere}: env {e['name']} uses {skind} {r['name']}, which is not defined")
                        if r["name"] in by_kind.get(skind, {}):
                            ref(r["key"] in keys_of(skind, r["name"]), f"{cwhere}: env {e['name']} uses key {r['key']} missing from {skind} {r['name']}")
            file_var = env.get("MASTER_KEYS_FILE")
            if file_var:
                ref(any(file_var.startswith(m["mountPath"].rstrip("/") + "/") for m in c.get("volumeMounts", []) or []),
                    f"{cwhere}: MASTER_KEYS_FILE {file_var} is not under any volumeMount")
            port_names = {p.get("name") for p in c.get("ports", []) or []}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str):
                    ref(port in port_names, f"{cwhere}: {probe} uses port {port!r}, which the container does not name")
            # Shutdown budgets of this binary.
            args = c.get("args") or c.get("command") or []
            grace = spec.get("terminationGracePeriodSeconds", 30)
            roles = args[args.index("--roles") + 1].split(",") if "--roles" in args else (["api", "ingest", "worker"] if args[:1] == ["serve"] else [])
            if "worker" in roles:
                shutdown = duration_seconds(env.get("SHUTDOWN_GRACE") or "30s")
                ref(grace > shutdown, f"{cwhere}: terminationGracePeriodSeconds {grace} must exceed SHUTDOWN_GRACE ({shutdown:g}s), set in the same Deployment")
            if "api" in roles or "ingest" in roles:
                timeout = duration_seconds(env.get("REQUEST_TIMEOUT") or "30s")
                pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command", [])
                sleep = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] and len(pre_stop) > 1 else 0
                ref(grace > timeout + sleep, f"{cwhere}: terminationGracePeriodSeconds {grace} must exceed REQUEST_TIMEOUT ({timeout:g}s) + preStop sleep ({sleep:g}s)")

    def pods_matching(selector: dict) -> list[dict]:
        return [o for o in workloads if selector and all(
            ((((o.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}).get(k) == v
            for k, v in selector.items())]

    for name, svc in by_kind.get("Service", {}).items():
        pods = pods_matching((svc.get("spec") or {}).get("selector") or {})
        ref(bool(pods), f"Service/{name}: selector matches no pod template")
        named = {p.get("name") for o in pods for c in pod_spec(o).get("containers", []) for p in c.get("ports", []) or []}
        for p in (svc.get("spec") or {}).get("ports", []) or []:
            if isinstance(p.get("targetPort"), str):
                ref(p["targetPort"] in named, f"Service/{name}: targetPort {p['targetPort']!r} is not a container port name")
    for name, ing in by_kind.get("Ingress", {}).items():
        for rule in (ing.get("spec") or {}).get("rules", []) or []:
            for path in ((rule.get("http") or {}).get("paths")) or []:
                backend = (path.get("backend") or {}).get("service") or {}
                svc = by_kind.get("Service", {}).get(backend.get("name"))
                ref(svc is not None, f"Ingress/{name}: path {path.get('path')} goes to Service {backend.get('name')}, which is not defined")
                if svc is not None:
                    port = backend.get("port") or {}
                    ports = (svc.get("spec") or {}).get("ports", [])
                    ok = any(p.get("name") == port.get("name") for p in ports) if "name" in port else any(p.get("port") == port.get("number") for p in ports)
                    ref(ok, f"Ingress/{name}: path {path.get('path')} uses port {port} missing from Service {backend.get('name')}")
    for name, hpa in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        ref(target.get("name") in by_kind.get(target.get("kind"), {}),
            f"HorizontalPodAutoscaler/{name}: target {target.get('kind')}/{target.get('name')} is not defined")
        scaled = by_kind.get(target.get("kind"), {}).get(target.get("name"))
        if scaled is not None and "replicas" in (scaled.get("spec") or {}):
            FAIL.add(where, f"{target.get('kind')}/{target.get('name')} sets spec.replicas although HorizontalPodAutoscaler/{name} manages it")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        selector = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        ref(any(ident(o)[0] in ("Deployment", "StatefulSet") for o in pods_matching(selector)),
            f"PodDisruptionBudget/{name}: selector {selector} matches no Deployment or StatefulSet")

    # Prometheus operator monitors: a ServiceMonitor selects Services by their labels and names a
    # Service port; a PodMonitor selects pods by their labels and names a container port. Both
    # look in their own namespace unless namespaceSelector says otherwise. A pod port scraped by
    # two monitors would count every counter twice in sums.
    def template_labels(o: dict) -> dict:
        return (((o.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}

    def container_ports(o: dict) -> dict:
        return {p.get("name"): p.get("containerPort") for c in pod_spec(o).get("containers", []) or [] for p in c.get("ports", []) or []}

    scraped: dict[tuple, str] = {}

    def scrape(o: dict, port, path: str, by: str) -> None:
        number = container_ports(o).get(port) if isinstance(port, str) else port
        key = (ident(o), number, path)
        count("references checked")
        if key in scraped and scraped[key] != by:
            FAIL.add(where, f"{ident(o)[0]}/{ident(o)[1]} pods are scraped twice on port {number} {path}: "
                            f"by {scraped[key]} and by {by}")
        scraped.setdefault(key, by)

    for kind, endpoints_field, target_kind in (("ServiceMonitor", "endpoints", "Service"),
                                               ("PodMonitor", "podMetricsEndpoints", "pod template")):
        for name, mon in by_kind.get(kind, {}).items():
            mwhere = f"{kind}/{name}"
            spec = mon.get("spec") or {}
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            if not selector:
                FAIL.add(where, f"{mwhere}: empty selector, which selects every {target_kind} in the namespace; name the labels")
                continue
            ns_selector = spec.get("namespaceSelector") or {}
            own_ns = (mon.get("metadata") or {}).get("namespace")
            if ns_selector.get("any"):
                scope, scope_text = (lambda ns: True), "any namespace"
            elif ns_selector.get("matchNames"):
                scope, scope_text = (lambda ns: ns in ns_selector["matchNames"]), f"namespaces {ns_selector['matchNames']}"
            else:
                scope, scope_text = (lambda ns: ns == own_ns), "the monitor's own namespace"
            if kind == "ServiceMonitor":
                candidates = list(by_kind.get("Service", {}).values())
                labels_of = lambda o: (o.get("metadata") or {}).get("labels") or {}
            else:
                candidates = workloads
                labels_of = template_labels
            targets = [o for o in candidates if scope((o.get("metadata") or {}).get("namespace"))
                       and all(labels_of(o).get(k) == v for k, v in selector.items())]
            ref(bool(targets), f"{mwhere}: selector {selector} matches no {target_kind}'s labels in {scope_text} "
                               f"(candidates: {', '.join(f'{ident(o)[1]} {labels_of(o)}' for o in candidates) or 'none'})")
            for i, ep in enumerate(spec.get(endpoints_field) or []):
                ewhere = f"{mwhere}: {endpoints_field}[{i}]"
                port, path = ep.get("port"), ep.get("path", "/metrics")
                for t in targets:
                    if kind == "ServiceMonitor":
                        svc_ports = {p.get("name"): p for p in (t.get("spec") or {}).get("ports", []) or []}
                        ref(port in svc_ports, f"{ewhere}.port {port!r} is not a port name of Service/{ident(t)[1]} "
                                               f"(it has {sorted(str(n) for n in svc_ports)})")
                        if port in svc_ports:
                            target_port = svc_ports[port].get("targetPort", svc_ports[port].get("port"))
                            for o in pods_matching((t.get("spec") or {}).get("selector") or {}):
                                scrape(o, target_port, path, f"{mwhere} (via Service/{ident(t)[1]})")
                    else:
                        names = container_ports(t)
                        ref(port in names, f"{ewhere}.port {port!r} is not a container port name of {ident(t)[0]}/{ident(t)[1]} "
                                           f"(it has {sorted(str(n) for n in names)})")
                        if port in names:
                            scrape(t, port, path, mwhere)
                cred = (ep.get("authorization") or {}).get("credentials")
                if cred:
                    ref(cred["name"] in by_kind.get("Secret", {}), f"{ewhere}.authorization uses Secret {cred['name']}, which is not defined")
                    if cred["name"] in by_kind.get("Secret", {}):
                        ref(cred["key"] in keys_of("Secret", cred["name"]), f"{ewhere}.authorization uses key {cred['key']} missing from Secret {cred['name']}")
                if ep.get("interval") and ep.get("scrapeTimeout"):
                    ref(prom_duration_seconds(ep["scrapeTimeout"]) <= prom_duration_seconds(ep["interval"]),
                        f"{ewhere}: scrapeTimeout {ep['scrapeTimeout']} exceeds interval {ep['interval']} (the operator rejects it)")


# --------------------------------------------------------------------------- 5. docker compose

COMPOSE_TOP = {"version", "name", "services", "networks", "volumes", "secrets", "configs", "include"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def check_compose() -> None:
    where = rel(COMPOSE)
    if not COMPOSE.is_file():
        FAIL.add(where, "does not exist")
        return
    text = COMPOSE.read_text()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        FAIL.add(where, f"YAML does not parse: {e}")
        return
    count("compose files parsed")
    for key in doc:
        if key not in COMPOSE_TOP and not str(key).startswith("x-"):
            FAIL.add(where, f"unknown top-level key {key!r}")
    # ${VAR} without a default would make `docker compose up` depend on the caller's environment.
    for m in re.finditer(r"(?<!\$)\$\{([^}]+)\}", text):
        count("compose interpolations checked")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*(:?-|:?\?)", m.group(1)):
            FAIL.add(where, f"${{{m.group(1)}}} has no default (use ${{VAR:-default}})")
    services = doc.get("services") or {}
    volumes = doc.get("volumes") or {}
    secrets = doc.get("secrets") or {}
    configs = doc.get("configs") or {}
    networks = doc.get("networks") or {}
    for top, items in (("secrets", secrets), ("configs", configs)):
        for name, spec in items.items():
            if isinstance(spec, dict) and "file" in spec:
                count("compose references checked")
                if not (REPO / spec["file"]).exists():
                    FAIL.add(where, f"{top}.{name}: file {spec['file']} does not exist")
            elif not isinstance(spec, dict) or not ({"content", "environment", "external", "file"} & set(spec)):
                FAIL.add(where, f"{top}.{name}: needs file, content, environment or external")
    for name, svc in services.items():
        swhere = f"services.{name}"
        count("compose services")
        if not isinstance(svc, dict):
            FAIL.add(where, f"{swhere} is not a mapping")
            continue
        if "image" not in svc and "build" not in svc:
            FAIL.add(where, f"{swhere} has neither image nor build")
        build = svc.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
            count("compose references checked", 2)
            if not context.is_dir():
                FAIL.add(where, f"{swhere}.build context {rel(context)} does not exist")
            elif not dockerfile.is_file():
                FAIL.add(where, f"{swhere}.build dockerfile {rel(dockerfile)} does not exist")
        depends = svc.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {d: {"condition": "service_started"} for d in depends}
        for dep, spec in depends.items():
            count("compose references checked")
            spec = spec or {}
            if dep not in services:
                FAIL.add(where, f"{swhere}.depends_on names {dep!r}, which is not a service")
                continue
            if dep == name:
                FAIL.add(where, f"{swhere} depends on itself")
            condition = spec.get("condition", "service_started")
            if condition not in CONDITIONS:
                FAIL.add(where, f"{swhere}.depends_on.{dep}: unknown condition {condition!r}")
            target = services[dep]
            if condition == "service_healthy" and not (target.get("healthcheck") or {}).get("test"):
                FAIL.add(where, f"{swhere} waits for {dep} to be healthy, but {dep} has no healthcheck")
            if condition == "service_completed_successfully" and str(target.get("restart", "no")) not in ("no", "on-failure"):
                FAIL.add(where, f"{swhere} waits for {dep} to complete, but {dep} restarts ({target.get('restart')})")
            if target.get("profiles") and not svc.get("profiles") and spec.get("required", True):
                FAIL.add(where, f"{swhere} (always on) depends on {dep}, which only runs in profiles {target['profiles']}")
        for v in svc.get("volumes", []) or []:
            if isinstance(v, str):
                source = v.split(":")[0] if ":" in v else None
                is_named = source is not None and not source.startswith((".", "/", "~", "$"))
            else:
                source, is_named = v.get("source"), v.get("type") == "volume" and v.get("source")
            if is_named:
                count("compose references checked")
                if source not in volumes:
                    FAIL.add(where, f"{swhere} mounts volume {source!r}, which is not declared under volumes:")
            elif source and not source.startswith("$") and not (REPO / source).exists():
                FAIL.add(where, f"{swhere} bind-mounts {source}, which does not exist")
        for key, declared in (("secrets", secrets), ("configs", configs)):
            for item in svc.get(key, []) or []:
                ref_name = item if isinstance(item, str) else item.get("source")
                count("compose references checked")
                if ref_name not in declared:
                    FAIL.add(where, f"{swhere}.{key} uses {ref_name!r}, which is not declared under {key}:")
        svc_networks = svc.get("networks") or []
        for net in (svc_networks if isinstance(svc_networks, list) else list(svc_networks)):
            count("compose references checked")
            if net != "default" and net not in networks:
                FAIL.add(where, f"{swhere} joins network {net!r}, which is not declared under networks:")
        env = svc.get("environment") or {}
        if isinstance(env, dict):
            for k, v in env.items():
                if isinstance(v, (dict, list)):
                    FAIL.add(where, f"{swhere}.environment.{k} is a {type(v).__name__}, not a scalar")


# --------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kube-version", default="1.30", help="Kubernetes version whose schemas to use (default 1.30)")
    parser.add_argument("--no-kustomize", action="store_true", help="skip the real kustomize build even when it is installed")
    args = parser.parse_args()

    parsed = parse_all_yaml()

    # 2. kustomizations and the files they list
    listed: set[Path] = set()
    kdirs = []
    for path, docs in parsed.items():
        if is_kustomization_file(path):
            kdirs.append(path.parent)
            if docs:
                check_kustomization(path, docs[0], listed)
    for path in parsed:
        if not is_kustomization_file(path) and path.resolve() not in listed:
            FAIL.add(rel(path), "is not listed by any kustomization.yaml (a manifest that is never applied)")

    # 3a. every object in the resource files, as written (patches are partial: validated merged, below)
    patch_files = set()
    for kdir in kdirs:
        k = load_yaml_docs(next(kdir / n for n in ("kustomization.yaml", "kustomization.yml", "Kustomization") if (kdir / n).exists()))[0]
        for p in (k.get("patches") or []) + (k.get("patchesJson6902") or []):
            if isinstance(p, dict) and "path" in p:
                patch_files.add((kdir / p["path"]).resolve())
    for path, docs in parsed.items():
        if is_kustomization_file(path) or path.resolve() in patch_files:
            continue
        for obj in docs:
            if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
                FAIL.add(rel(path), "a document without apiVersion/kind")
                continue
            validate_object(obj, rel(path), args.kube_version)
            count("objects in resource files")

    # 3b. every kustomization, rendered, then 4. its cross-references
    kustomize = None if args.no_kustomize else kustomize_command()
    for kdir in sorted(kdirs):
        where = rel(kdir)
        try:
            objects = render(kdir)
        except (NotImplementedError, ValueError, KeyError, IndexError, OSError) as e:
            FAIL.add(where, f"cannot render: {e}")
            continue
        count("kustomizations rendered")
        for obj in objects:
            validate_object(obj, f"{where} (rendered)", args.kube_version)
            count("rendered objects")
        check_references(objects, f"{where} (rendered)", is_base=(kdir.name == "base"))
        if kustomize:
            run = subprocess.run(kustomize + [str(kdir)], capture_output=True, text=True)
            if run.returncode != 0:
                FAIL.add(where, f"`{' '.join(kustomize)}` failed: {run.stderr.strip()}")
                continue
            built = [d for d in yaml.safe_load_all(run.stdout) if d]
            for obj in built:
                validate_object(obj, f"{where} ({kustomize[0]} build)", args.kube_version)
                count("kustomize-built objects")
            check_references(built, f"{where} ({kustomize[0]} build)", is_base=(kdir.name == "base"))
            generated = {ident(o)[1] for o in objects if o.get("__generated__")}
            ours = {ident(o): {k: v for k, v in o.items() if k != "__generated__"} for o in objects}
            theirs = {}
            for o in built:
                o = normalise(o, generated)
                theirs[ident(o)] = o
            if set(ours) != set(theirs):
                FAIL.add(where, f"validate.py's rendering and kustomize's differ in objects: "
                                f"only here {sorted(set(ours) - set(theirs))}, only kustomize {sorted(set(theirs) - set(ours))}")
            else:
                for key in ours:
                    if json.dumps(ours[key], sort_keys=True) != json.dumps(theirs[key], sort_keys=True):
                        FAIL.add(where, f"validate.py's rendering of {key[0]}/{key[1]} differs from kustomize's")
                count("kustomize renderings compared")

    # 5. compose
    check_compose()

    print(f"gitlab-connector deployment files, Kubernetes schemas {args.kube_version} (strict), "
          f"kubernetes-validate {kubernetes_validate.__version__}")
    if not kustomize and not args.no_kustomize:
        print("  (no kustomize or kubectl on PATH: validated the Python rendering only)")
    elif kustomize:
        print(f"  (also validated `{' '.join(kustomize)}` output)")
    for key, value in STATS.items():
        print(f"  {key:38} {value}")
    if FAIL.errors:
        print(f"\nFAILED: {len(FAIL.errors)} problem(s):", file=sys.stderr)
        for error in FAIL.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    print("OK: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
