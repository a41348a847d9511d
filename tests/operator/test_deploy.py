"""operator/deploy: schema-valid manifests, least-privilege RBAC derived from the code, a buildable image.

Schemas come from ``kubernetes-validate``, which bundles them: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import ast
import configparser
import fnmatch
import functools
import importlib
import importlib.metadata
import inspect
import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import kubernetes_validate
import pytest
import yaml
from kubernetes import client
from metallb.allocator import get_plugin_manager, parse_config
from metallb.allocator.resources import config_kinds
from metallb.operator import cli, commands

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator"
DEPLOY = OPERATOR / "deploy"
DOC = ROOT / "docs" / "operator.md"
NS = "metallb-system"
#: The oldest Kubernetes these manifests target, and the newest whose schemas kubernetes-validate 1.37.0 bundles.
KUBERNETES_VERSION = "1.30"
KUBERNETES_VERSIONS = (KUBERNETES_VERSION, "1.37")
#: Files outside the base (base/kustomization.yaml): the sample config is applied by hand, the address service is opt-in.
NOT_IN_KUSTOMIZATION = {"config.yaml", "address-service/address-service.yaml", "address-service/metallb.io_addressleases.yaml"}
#: Folders whose files are not plain manifests: overlays and monitoring are built (tests/operator/test_kustomize.py).
BUILT = {"overlays", "monitoring"}
#: The build command the Dockerfile documents (with python standing for the interpreter).
WHEEL_COMMAND = "python -m pip wheel --no-deps --no-build-isolation -w dist ."
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def path_of(name: str) -> Path:
    """A manifest by its path under operator/deploy, or by its file name alone when that is unique."""
    if (DEPLOY / name).exists():
        return DEPLOY / name
    (found,) = [DEPLOY / m for m in manifests() if Path(m).name == name]
    return found


def load(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path_of(name).read_text()) if doc]


def manifests() -> list[str]:
    """Every manifest (path under operator/deploy) but the kustomizations and the built folders."""
    found = (p.relative_to(DEPLOY) for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")
    return sorted(str(p) for p in found if p.parts[0] not in BUILT)


def crd_manifests() -> list[str]:
    return sorted(f"crds/{p.name}" for p in (DEPLOY / "crds").glob("*.yaml") if p.name != "kustomization.yaml")


@functools.cache
def builtin_kinds() -> tuple[tuple[str, str], ...]:
    """(group, plural) of every configuration kind of metallb's own plugins (not third-party ones)."""
    eps = [ep for ep in importlib.metadata.distribution("metallb").entry_points if ep.group == "metallb"]
    pm = get_plugin_manager(entry_points=False, plugins=[ep.load() for ep in eps])
    return tuple((k.group, k.plural) for k in config_kinds(pm))


def one(name: str, kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in load(name) if doc["kind"] == kind]
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (found,) = workload["spec"]["template"]["spec"]["containers"]
    return found


def port_number(ctr: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in ctr["ports"] if p.get("name") == port]
    return int(number)


# --- RBAC: grants from the manifests, needs from the code ---------------------------------


class Grant(NamedTuple):
    scope: str  # "cluster" (ClusterRole), "namespace" (Role in metallb-system), or another namespace's name
    group: str
    resource: str
    verb: str


def grants(name: str) -> set[Grant]:
    out = set()
    for doc in load(name):
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        namespace = doc["metadata"].get("namespace")
        scope = "cluster" if doc["kind"] == "ClusterRole" else "namespace" if namespace == NS else namespace
        for rule in doc.get("rules") or ():
            assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    out.update(Grant(scope, group, resource, verb) for verb in rule["verbs"])
    return out


_CALL_API = re.compile(r"call_api\(\s*'(?P<path>[^']+)',\s*'(?P<method>[A-Z]+)'")
_WRITE_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_API_CLASSES = [getattr(client, n) for n in dir(client) if n.endswith("Api") and n != "ApiClient"]


@functools.cache
def endpoint(method: str) -> tuple[str, str] | None:
    """The (URL path, HTTP method) a kubernetes client API method calls, read from the client's source."""
    for cls in _API_CLASSES:
        impl = getattr(cls, f"{method}_with_http_info", None)
        if impl is not None:
            found = _CALL_API.search(inspect.getsource(impl))
            assert found is not None, method
            return found["path"], found["method"]
    return None


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level names bound to one string literal."""
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _fixed_namespace(call: ast.Call | None, constants: dict[str, str]) -> str | None:
    """The namespace a call names as a constant (``namespace=`` or ``list_kwargs={"namespace": ...}``), if any."""
    if call is None:
        return None
    values = [k.value for k in call.keywords if k.arg == "namespace"]
    for keyword in call.keywords:
        if keyword.arg == "list_kwargs" and isinstance(keyword.value, ast.Dict):
            pairs = zip(keyword.value.keys, keyword.value.values, strict=True)
            values += [v for k, v in pairs if isinstance(k, ast.Constant) and k.value == "namespace"]
    for value in values:
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return value.value
        if isinstance(value, ast.Name) and value.id in constants:
            return constants[value.id]
    return None


def code_needs(files: list[Path], *, own_namespace: set[str]) -> set[Grant]:
    """The RBAC grants the kubernetes calls in *files* need.

    A list method passed somewhere instead of called is an informer's: it lists
    and watches. Namespaced calls on *own_namespace* resources target
    metallb-system (a Role suffices) unless the call names another namespace as
    a constant (a Role there); others need a ClusterRole. A call on custom
    objects (``{group}``/``{plural}`` in its path) is on the module's ``GROUP``
    and each of ``L2_PLURAL`` and ``BGP_PLURAL`` when it defines them (the announcement status), else needs
    its grant for every configuration kind of metallb's plugins, in metallb-system.
    """
    needs = set()
    for path in files:
        tree = ast.parse(path.read_text())
        constants = _constants(tree)
        called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
        parents = {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or (found := endpoint(node.attr)) is None:
                continue
            template, method = found
            # Custom objects: the group is the module's GROUP, the plural each of its L2_PLURAL and BGP_PLURAL.
            plurals = [constants[c] for c in ("L2_PLURAL", "BGP_PLURAL") if c in constants]
            urls = [template]
            if "GROUP" in constants and plurals:
                urls = [template.replace("{group}", constants["GROUP"]).replace("{plural}", p) for p in plurals]
            for url in urls:
                needs |= _grants(
                    url, method, node, called=called, parents=parents, constants=constants, own=own_namespace
                )
    return needs


def _grants(
    url: str, method: str, node: ast.Attribute, *, called: set[int], parents: dict, constants: dict, own: set[str]
) -> set[Grant]:
    """The grants one kubernetes call on *url* needs (see :func:`code_needs`; *own*: its *own_namespace*)."""
    parts = url.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    namespaced = rest[:2] == ["namespaces", "{namespace}"]
    rest = rest[2:] if namespaced else rest
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    if method == "GET":
        single = len(rest) > 1
        verbs = {"get"} if single else ({"list"} if id(node) in called else {"list", "watch"})
    else:
        verbs = {_WRITE_VERBS[method]}
    if group == "{group}":  # CustomObjectsApi: the configuration kinds
        return {
            Grant("namespace", kind_group, resource.replace("{plural}", plural), verb)
            for kind_group, plural in builtin_kinds()
            for verb in verbs
        }
    scope = "namespace" if namespaced and rest[0] in own else "cluster"
    parent = parents.get(id(node))
    call = parent if isinstance(parent, ast.Call) else parents.get(id(parent))
    fixed = _fixed_namespace(call if isinstance(call, ast.Call) else None, constants)
    if namespaced and fixed not in (None, NS):
        scope = str(fixed)
    return {Grant(scope, group, resource, verb) for verb in verbs}


CONTROLLER_NEEDS_AT_LEAST = {
    Grant("cluster", "", "services", "list"),
    Grant("cluster", "", "services", "watch"),
    Grant("cluster", "", "services", "patch"),
    Grant("cluster", "", "services/status", "patch"),
    Grant("cluster", "", "events", "create"),
    Grant("namespace", "", "configmaps", "list"),
    Grant("namespace", "", "configmaps", "watch"),
    *(Grant("namespace", "coordination.k8s.io", "leases", v) for v in ("get", "create", "update", "delete")),
    *(Grant("cluster", "", r, v) for r in ("nodes", "namespaces") for v in ("list", "watch")),
    *(Grant("namespace", "", "secrets", v) for v in ("list", "watch")),
    *(Grant("namespace", "metallb.io", "ipaddresspools", v) for v in ("list", "watch")),
    Grant("namespace", "metallb.io", "ipaddresspools/status", "patch"),
    Grant("namespace", "metallb.io", "bgppeers/status", "patch"),
}
#: The speaker watches Services, EndpointSlices, Nodes, Namespaces and the configuration, records events,
#: writes its ServiceL2Statuses, and for its liveness watches the speaker Pods (memberlist), the kubelets'
#: node Leases (node), or keeps its own Lease (lease).
SPEAKER_NEEDS_AT_LEAST = {
    *(Grant("cluster", "", r, v) for r in ("services", "nodes", "namespaces") for v in ("list", "watch")),
    *(Grant("cluster", "discovery.k8s.io", "endpointslices", v) for v in ("list", "watch")),
    Grant("cluster", "", "events", "create"),
    *(Grant("namespace", "", r, v) for r in ("configmaps", "secrets", "pods") for v in ("list", "watch")),
    *(Grant("namespace", "metallb.io", r, v) for r in ("bgppeers", "l2advertisements") for v in ("list", "watch")),
    *(Grant("namespace", "coordination.k8s.io", "leases", v) for v in ("list", "watch", "create", "update", "delete")),
    *(Grant("kube-node-lease", "coordination.k8s.io", "leases", v) for v in ("list", "watch")),
    *(
        Grant("namespace", "metallb.io", plural, v)
        for plural in ("servicel2statuses", "servicebgpstatuses")
        for v in ("list", "watch", "create", "delete")
    ),
    Grant("namespace", "metallb.io", "servicel2statuses/status", "patch"),
    Grant("namespace", "metallb.io", "servicebgpstatuses/status", "patch"),
}
OWN_NAMESPACE = {"configmaps", "leases", "secrets", "pods", "servicel2statuses", "servicebgpstatuses"}
#: Namespaced objects outside metallb-system: the speaker's read-only Role on the kubelets' node Leases.
OTHER_NAMESPACES = {
    ("base/speaker-rbac.yaml", "Role", "kube-node-lease"),
    ("base/speaker-rbac.yaml", "RoleBinding", "kube-node-lease"),
}
#: The modules whose kubernetes calls each component makes.
CONTROLLER_FILES = [
    OPERATOR / "controller.py",
    OPERATOR / "config_watch.py",
    OPERATOR / "config_status.py",
    ROOT / "allocator" / "kube.py",  # the leader Lease
]
SPEAKER_FILES = [
    OPERATOR / "speaker.py",
    OPERATOR / "config_watch.py",
    OPERATOR / "liveness.py",
    OPERATOR / "announce_status.py",
]


@pytest.fixture(name="no_network")
def _no_network(monkeypatch):
    """Every attempt to open a connection or resolve a name fails."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted during an offline test")

    for target, attr in ((socket.socket, "connect"), (socket.socket, "connect_ex"), (socket, "getaddrinfo")):
        monkeypatch.setattr(target, attr, refuse)


# --- tests ----------------------------------------------------------------------------------


class TestSchemas:
    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    @pytest.mark.parametrize("name", manifests() + crd_manifests())
    def test_manifest_validates(self, name, version):
        """Every object in the manifest passes the strict Kubernetes schema (unknown fields rejected)."""
        docs = load(name)
        assert docs, f"{name} holds no object"
        for doc in docs:
            try:
                assert kubernetes_validate.validate(doc, version, strict=True) == version
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(map(str, exc.path))
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                pytest.fail(f"{name}: {exc.message}")

    def test_validation_is_offline_and_catches_mistakes(self, no_network):
        """With the network cut, a good Deployment validates and one with a misspelt field does not."""
        good = one("controller.yaml", "Deployment")
        assert kubernetes_validate.validate(good, KUBERNETES_VERSION, strict=True) == KUBERNETES_VERSION
        bad = json.loads(json.dumps(good))
        container(bad)["readinesProbe"] = container(bad).pop("readinessProbe")
        with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
            kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)

    def test_kustomization_lists_every_manifest_but_the_sample_config(self):
        """The top kustomization is the base; the base lists each manifest once and the CRDs' folder."""
        assert load("kustomization.yaml")[0]["resources"] == ["base"]
        kustomization = load("base/kustomization.yaml")[0]
        assert kustomization["kind"] == "Kustomization"
        resources = kustomization["resources"]
        assert len(resources) == len(set(resources))
        listed = {f"base/{r}" for r in resources if r != "../crds"}
        assert "../crds" in resources
        assert listed == set(manifests()) - NOT_IN_KUSTOMIZATION - set(crd_manifests())
        crds = load("crds/kustomization.yaml")[0]["resources"]
        assert sorted(f"crds/{name}" for name in crds) == crd_manifests()

    def test_namespaced_objects_live_in_metallb_system(self):
        """Every namespaced object names metallb-system, which namespace.yaml creates."""
        assert one("namespace.yaml", "Namespace")["metadata"]["name"] == NS
        for name in manifests():
            for doc in load(name):
                namespace = doc["metadata"].get("namespace")
                if doc["kind"] not in CLUSTER_SCOPED and (name, doc["kind"], namespace) not in OTHER_NAMESPACES:
                    assert namespace == NS, f"{name}: {doc['kind']}/{doc['metadata']['name']}"

    def test_namespace_admits_the_speaker(self):
        """The namespace's Pod Security level lets a host-network pod with NET_RAW run."""
        labels = one("namespace.yaml", "Namespace")["metadata"]["labels"]
        assert labels["pod-security.kubernetes.io/enforce"] == "privileged"


class TestController:
    def test_single_replica_recreated(self):
        """One replica, and the old pod is gone before a new one starts."""
        spec = one("controller.yaml", "Deployment")["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"] == {"type": "Recreate"}

    def test_args_are_the_real_command_line(self):
        """The container's args parse with `metallb`'s own parser as the controller on the probed port."""
        ctr = container(one("controller.yaml", "Deployment"))
        args = cli.build_parser().parse_args(ctr["args"])
        assert args.command == "controller"
        assert port_number(ctr, ctr["livenessProbe"]["httpGet"]["port"]) == args.metrics_port == 7472
        assert port_number(ctr, ctr["readinessProbe"]["httpGet"]["port"]) == args.metrics_port
        env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in ctr["env"]}
        assert env == {"METALLB_NAMESPACE": "metadata.namespace"}

    def test_probes_hit_health_and_readiness(self):
        """Liveness asks /healthz and readiness /readyz (synced and leading)."""
        ctr = container(one("controller.yaml", "Deployment"))
        assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"

    def test_locked_down(self):
        """Non-root, read-only root filesystem, no privilege escalation, every capability dropped."""
        pod = one("controller.yaml", "Deployment")["spec"]["template"]["spec"]
        ctr = container({"spec": {"template": {"spec": pod}}})
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert not pod.get("hostNetwork")
        sc = ctr["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}

    def test_resources_bounded(self):
        """Requests for scheduling and a memory limit."""
        resources = container(one("controller.yaml", "Deployment"))["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        assert "memory" in resources["limits"]

    def test_address_service_admits_the_controller(self):
        """The address service's NetworkPolicy selects the controller's pods."""
        labels = one("controller.yaml", "Deployment")["spec"]["template"]["metadata"]["labels"]
        policy = one("address-service.yaml", "NetworkPolicy")
        for rule in policy["spec"]["ingress"]:
            selectors = [peer["podSelector"]["matchLabels"] for peer in rule["from"]]
            assert any(sel.items() <= labels.items() for sel in selectors), selectors


class TestSpeaker:
    def test_host_network_with_only_net_raw(self):
        """Host network; every capability dropped, then only NET_RAW added (as MetalLB's speaker)."""
        pod = one("speaker.yaml", "DaemonSet")["spec"]["template"]["spec"]
        assert pod["hostNetwork"] is True
        sc = pod["containers"][0]["securityContext"]
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["capabilities"]["add"] == ["NET_RAW"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert not sc.get("privileged")

    def test_node_name_from_the_downward_api(self):
        """METALLB_NODE_NAME is the node the pod runs on."""
        env = {e["name"]: e for e in container(one("speaker.yaml", "DaemonSet"))["env"]}
        assert env["METALLB_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"

    @pytest.mark.parametrize("taint", ["node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"])
    def test_runs_on_control_plane_nodes(self, taint):
        """A toleration matches the control-plane NoSchedule taint (current and legacy key)."""
        tolerations = one("speaker.yaml", "DaemonSet")["spec"]["template"]["spec"]["tolerations"]
        assert any(
            t.get("key") in (taint, None)
            and t.get("effect") in ("NoSchedule", None)
            and (t.get("operator") == "Exists" or t.get("value", "") == "")
            for t in tolerations
        )

    def test_args_are_the_real_command_line(self):
        """The container's args parse with `metallb`'s own parser as the speaker on the probed port."""
        ctr = container(one("speaker.yaml", "DaemonSet"))
        args = cli.build_parser().parse_args(ctr["args"])
        assert args.command == "speaker"
        assert port_number(ctr, ctr["livenessProbe"]["httpGet"]["port"]) == args.metrics_port
        assert ctr["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert args.metrics_host in ("0.0.0.0", "::"), "the kubelet probes the node's address"


class TestSpeakerMemberlist:
    def test_gossip_port_declared_for_udp_and_tcp(self):
        """Port 7946, the default of --ml-bindport, is declared once per protocol."""
        ctr = container(one("speaker.yaml", "DaemonSet"))
        args = cli.build_parser().parse_args(ctr["args"])
        assert args.liveness == "memberlist"
        declared = {(p["containerPort"], p.get("protocol", "TCP")) for p in ctr["ports"]}
        assert {(args.ml_bindport, "TCP"), (args.ml_bindport, "UDP")} <= declared

    def test_members_are_the_speaker_pods_at_the_node_address(self):
        """METALLB_ML_LABELS selects the DaemonSet's own pods; the bind address is the pod's (the node's) IP."""
        daemonset = one("speaker.yaml", "DaemonSet")
        env = {e["name"]: e for e in container(daemonset)["env"]}
        selector = dict(term.split("=", 1) for term in env["METALLB_ML_LABELS"]["value"].split(","))
        assert selector.items() <= daemonset["spec"]["template"]["metadata"]["labels"].items()
        assert env["METALLB_ML_BIND_ADDR"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        assert env["METALLB_ML_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
        assert daemonset["spec"]["template"]["spec"]["hostNetwork"] is True  # so the pod IP is the node's

    def test_secret_mounted_where_the_speaker_reads_it(self):
        """The optional Secret `memberlist` is mounted read-only at METALLB_ML_SECRET_KEY_PATH (a directory)."""
        pod = one("speaker.yaml", "DaemonSet")["spec"]["template"]["spec"]
        env = {e["name"]: e for e in container({"spec": {"template": {"spec": pod}}})["env"]}
        (volume,) = [v for v in pod["volumes"] if v["name"] == "memberlist"]
        assert volume["secret"]["secretName"] == "memberlist"
        assert volume["secret"]["optional"] is True, "without the Secret the speaker must start and fall back"
        (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "memberlist"]
        assert mount["mountPath"] == env["METALLB_ML_SECRET_KEY_PATH"]["value"] and mount["readOnly"] is True

    def test_secret_command_documented(self):
        """docs/operator.md gives the command that makes a random key per install, as MetalLB's docs do."""
        from metallb.operator.liveness import SECRET_COMMAND

        assert SECRET_COMMAND in DOC.read_text()
        assert SECRET_COMMAND in path_of("speaker.yaml").read_text()


class TestRbac:
    def test_controller_grants_are_exactly_what_its_code_calls(self):
        """The controller's Role and ClusterRole grant every call of its modules, and nothing else."""
        needs = code_needs(CONTROLLER_FILES, own_namespace=OWN_NAMESPACE)
        assert needs >= CONTROLLER_NEEDS_AT_LEAST, "the scan of controller.py missed calls"
        granted = grants("controller-rbac.yaml")
        assert granted - needs == set(), "granted but never used"
        assert needs - granted == set(), "used but not granted"

    def test_speaker_grants_are_exactly_what_its_code_calls(self):
        """The speaker's Role and ClusterRole grant every call of its modules, and nothing else."""
        needs = code_needs(SPEAKER_FILES, own_namespace=OWN_NAMESPACE)
        assert needs >= SPEAKER_NEEDS_AT_LEAST, "the scan of the speaker's modules missed calls"
        granted = grants("speaker-rbac.yaml")
        assert granted - needs == set(), "granted but never used"
        assert needs - granted == set(), "used but not granted"

    @pytest.mark.parametrize("name", ["controller-rbac.yaml", "speaker-rbac.yaml"])
    def test_nothing_dangerous(self, name):
        """No wildcards, no escalate/bind/impersonate; Secrets only read, only in metallb-system; no pods but
        the speaker reading its own."""
        for grant in grants(name):
            assert "*" not in grant, grant
            assert grant.resource.split("/")[0] != "serviceaccounts", grant
            if grant.resource == "secrets":
                assert grant.scope == "namespace" and grant.verb in ("list", "watch"), grant
            if grant.resource.split("/")[0] == "pods":
                assert (name, grant.scope, grant.resource, grant.verb) in {
                    ("speaker-rbac.yaml", "namespace", "pods", "list"),
                    ("speaker-rbac.yaml", "namespace", "pods", "watch"),
                }, grant
            assert grant.verb not in ("escalate", "bind", "impersonate", "deletecollection"), grant
            assert not grant.group.startswith("rbac."), grant

    def test_speaker_never_writes_services(self):
        """The speaker may read Services but not change them or their status."""
        for grant in grants("speaker-rbac.yaml"):
            if grant.resource.split("/")[0] == "services":
                assert grant.verb in ("get", "list", "watch"), grant

    @pytest.mark.parametrize(("rbac", "workload", "kind"), [
        ("controller-rbac.yaml", "controller.yaml", "Deployment"),
        ("speaker-rbac.yaml", "speaker.yaml", "DaemonSet"),
    ])  # fmt: skip
    def test_bindings_reach_the_workload(self, rbac, workload, kind):
        """Each role is bound to the ServiceAccount the workload runs as, and to nothing else."""
        account = one(workload, kind)["spec"]["template"]["spec"]["serviceAccountName"]
        assert one(rbac, "ServiceAccount")["metadata"]["name"] == account
        roles = {
            (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
            for d in load(rbac)
            if d["kind"] in ("Role", "ClusterRole")
        }
        bound = set()
        for doc in load(rbac):
            if doc["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                assert doc["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NS}]
                bound.add((doc["roleRef"]["kind"], doc["roleRef"]["name"], doc["metadata"].get("namespace")))
        assert bound == roles


class TestSampleConfig:
    def test_parses(self):
        """data.config parses into pools, one of them auto-assigned."""
        config = parse_config(one("config.yaml", "ConfigMap")["data"]["config"])
        assert any(pool.auto_assign for pool in config.pools.values())

    def test_check_config_accepts_it(self, capsys):
        """`metallb check-config operator/deploy/config.yaml` exits 0."""
        # The command's own run(), not cli.main(), which would reconfigure logging for the whole session.
        args = cli.build_parser().parse_args(["check-config", "--quiet", str(DEPLOY / "config.yaml")])
        assert args.run(args) == 0
        assert capsys.readouterr().err == ""

    def test_named_as_the_components_expect(self):
        """The ConfigMap's name is the default of the controller's --config and it lives in metallb-system."""
        meta = one("config.yaml", "ConfigMap")["metadata"]
        args = cli.build_parser().parse_args(container(one("controller.yaml", "Deployment"))["args"])
        assert (meta["name"], meta["namespace"]) == (args.config, args.namespace)


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) for each instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def console_scripts() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    lines = parser["options.entry_points"]["console_scripts"].strip().splitlines()
    return {name.strip(): target.strip() for name, _, target in (line.partition("=") for line in lines)}


class TestImage:
    def test_entrypoint_is_the_metallb_console_script(self):
        """ENTRYPOINT is ["metallb"], a console script of setup.cfg that resolves to a function."""
        (entrypoint,) = [json.loads(args) for ins, args in dockerfile() if ins == "ENTRYPOINT"]
        assert entrypoint == ["metallb"]
        module, _, func = console_scripts()["metallb"].partition(":")
        assert callable(getattr(importlib.import_module(module), func))

    def test_runs_as_the_controllers_non_root_user(self):
        """USER is numeric and non-zero (runAsNonRoot can check it), the uid the controller runs as."""
        (user,) = [args for ins, args in dockerfile() if ins == "USER"]
        uid = int(user.split(":")[0])
        assert uid != 0
        pod = one("controller.yaml", "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == uid

    def test_base_image_satisfies_python_requires(self):
        """FROM python:3.11-slim, a Python that setup.cfg's python_requires accepts."""
        (base,) = [args for ins, args in dockerfile() if ins == "FROM"]
        assert base == "python:3.11-slim"
        parser = configparser.ConfigParser()
        parser.read(ROOT / "setup.cfg")
        assert parser["options"]["python_requires"].strip() == ">=3.11"

    @pytest.mark.slow
    def test_copied_files_come_from_the_documented_build(self, tmp_path):
        """Each COPY source exists in the repo or is made by the documented wheel command, and is in the context."""
        assert WHEEL_COMMAND in (DEPLOY / "Dockerfile").read_text()
        tree = tmp_path / "src"  # a copy of the sources, so the build leaves the repo untouched
        tree.mkdir()
        for name in ("setup.cfg", "pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, tree / name)
        for folder in ("allocator", "announcers", "operator", "plugins"):
            shutil.copytree(ROOT / folder, tree / folder, ignore=shutil.ignore_patterns("__pycache__"))
        command = shlex.split(WHEEL_COMMAND)
        subprocess.run([sys.executable, *command[1:], "--quiet"], cwd=tree, check=True, capture_output=True)
        ignore_text = (DEPLOY / "Dockerfile.dockerignore").read_text()
        ignore = [line for line in ignore_text.splitlines() if line.strip() and not line.startswith("#")]
        copies = [args.split() for ins, args in dockerfile() if ins == "COPY"]
        assert copies
        for *sources, _dest in copies:
            for source in sources:
                if source.startswith("dist/"):  # made by the build, never a stale file in the checkout
                    assert len(list(tree.glob(source))) == 1, source
                else:
                    assert list(ROOT.glob(source)), source
                excluded = False
                for pattern in ignore:  # the last matching line wins, as in .dockerignore
                    if fnmatch.fnmatch(source, pattern.lstrip("!")):
                        excluded = not pattern.startswith("!")
                assert not excluded, f"{source} is left out of the build context"
        (wheel,) = tree.glob("dist/metallb-*.whl")
        names = set(zipfile.ZipFile(wheel).namelist())
        assert {f"metallb/operator/deploy/{name}" for name in manifests()} <= names


class TestDocs:
    @pytest.mark.parametrize("name", ["controller", "speaker"])
    def test_every_option_documented(self, name):
        """docs/operator.md's table for the command names every option it has."""
        parser = argparse.ArgumentParser()
        (command,) = [c for c in commands.COMMANDS if c.name == name]
        command.add_arguments(parser)
        options = [o for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"]
        assert "--lease-duration" in options
        section = DOC.read_text().split(f"### `metallb {name}`", 1)[1].split("\n#", 1)[0]
        for option in options:
            assert f"| `{option}` |" in section, f"metallb {name} {option} is not documented"

    def test_every_deploy_file_documented(self):
        """Every file and folder in operator/deploy has a row in docs/operator.md's table."""
        text = DOC.read_text()
        for path in DEPLOY.iterdir():
            name = path.name + ("/" if path.is_dir() else "")
            assert f"| `{name}` |" in text, f"{name} is not documented"
