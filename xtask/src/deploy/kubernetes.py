"""Checks of deploy/kubernetes/, run by `cargo xtask test` in the virtual
environment xtask/src/deploy/kubernetes.rs makes (kubernetes-validate and
PyYAML; tomllib is Python's own).

  kubernetes.py schema VERSIONS FILE...
      Validates every object in each FILE against the API schemas of each
      Kubernetes version in VERSIONS (comma-separated), strictly: a field the
      API does not have is an error, as the API server's strict field
      validation would make it. One line per file.
  kubernetes.py consistency DIR
      Checks that the manifests in DIR agree with each other: names, labels,
      ports and the config file's path and listen port. One line.

Exits 1 when anything fails.
"""

import pathlib
import sys
import tomllib

import kubernetes_validate
import yaml


def load(path):
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def name(obj):
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def schema(versions, paths):
    failed = False
    for path in paths:
        try:
            objects = load(path)
        except (OSError, yaml.YAMLError) as e:
            print(f"FAIL {path}: cannot read it as YAML: {e}")
            failed = True
            continue
        errors = [] if objects else ["holds no Kubernetes object"]
        for obj in objects:
            for version in versions:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    where = ".".join(str(p) for p in e.path) or "(top level)"
                    errors.append(f"{name(obj)} against Kubernetes {version}: {where}: {e.message}")
                # An unknown kind or apiVersion has no schema: the library
                # only warns, which would let a misspelled kind pass.
                except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                    errors.append(f"{name(obj)} against Kubernetes {version}: {e.message}")
        if errors:
            failed = True
            for error in errors:
                print(f"FAIL {path}: {error}")
        else:
            objects = ", ".join(name(obj) for obj in objects)
            print(f"ok   {path}: {objects} (strict, Kubernetes {' and '.join(versions)})")
    return failed


def only(objects, kind, problems):
    found = [o for o in objects if o.get("kind") == kind]
    if len(found) != 1:
        problems.append(f"expected one {kind}, found {len(found)}")
        return {}
    return found[0]


def consistency(directory):
    objects = [obj for path in sorted(pathlib.Path(directory).glob("*.yaml")) for obj in load(path)]
    problems = []
    namespace = only(objects, "Namespace", problems)
    account = only(objects, "ServiceAccount", problems)
    role = only(objects, "ClusterRole", problems)
    binding = only(objects, "ClusterRoleBinding", problems)
    config_map = only(objects, "ConfigMap", problems)
    daemon_set = only(objects, "DaemonSet", problems)
    service = only(objects, "Service", problems)
    if problems:
        return problems

    ns = namespace["metadata"]["name"]
    for obj in (account, config_map, daemon_set, service):
        if obj["metadata"].get("namespace") != ns:
            problems.append(f"{name(obj)} is in namespace {obj['metadata'].get('namespace')}, not {ns}")

    pod = daemon_set["spec"]["template"]["spec"]
    pod_labels = daemon_set["spec"]["template"]["metadata"].get("labels", {})
    if len(pod["containers"]) != 1:
        return problems + [f"expected one container in the DaemonSet, found {len(pod['containers'])}"]
    container = pod["containers"][0]

    if pod.get("serviceAccountName") != account["metadata"]["name"]:
        problems.append(
            f"the DaemonSet's serviceAccountName {pod.get('serviceAccountName')!r} "
            f"is not the ServiceAccount {account['metadata']['name']!r}"
        )
    if binding["roleRef"].get("kind") != "ClusterRole" or binding["roleRef"].get("name") != role["metadata"]["name"]:
        problems.append(f"the ClusterRoleBinding's roleRef {binding['roleRef']} is not the ClusterRole")
    subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": ns}
    if subject not in binding.get("subjects", []):
        problems.append(f"the ClusterRoleBinding's subjects do not include {subject}")
    # The daemon only reads pods: anything more is a privilege it does not use.
    read_pods = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    if role.get("rules") != [read_pods]:
        problems.append(f"the ClusterRole's rules {role.get('rules')} are not just {read_pods}")

    for selector, what in (
        (daemon_set["spec"]["selector"].get("matchLabels", {}), "the DaemonSet's selector"),
        (service["spec"].get("selector", {}), "the Service's selector"),
    ):
        if not selector or any(pod_labels.get(k) != v for k, v in selector.items()):
            problems.append(f"{what} {selector} does not select the pod labels {pod_labels}")

    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    for port in service["spec"].get("ports", []):
        target = port.get("targetPort", port["port"])
        if target not in ports and target not in ports.values():
            problems.append(f"the Service's targetPort {target!r} is not a port of the container")
        elif ports.get(target, target) != port["port"]:
            problems.append(f"the Service's port {port['port']} differs from the container's {ports.get(target)}")
    annotated = service["metadata"].get("annotations", {}).get("prometheus.io/port")
    if annotated is not None and annotated != str(ports.get("metrics")):
        problems.append(f"the Service's prometheus.io/port {annotated!r} is not the port {ports.get('metrics')}")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        port = container.get(probe, {}).get("httpGet", {}).get("port")
        if port is not None and port not in ports and port not in ports.values():
            problems.append(f"the {probe} probes port {port!r}, which the container does not expose")

    # The --config argument must name the ConfigMap's file where it is mounted.
    args = container.get("args", [])
    config_path = args[args.index("--config") + 1] if "--config" in args[:-1] else None
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounted = [m for m in container.get("volumeMounts", []) if "configMap" in volumes.get(m["name"], {})]
    if len(mounted) != 1:
        problems.append(f"expected one ConfigMap volume mounted in the container, found {len(mounted)}")
        return problems
    mount = mounted[0]
    if volumes[mount["name"]]["configMap"].get("name") != config_map["metadata"]["name"]:
        problems.append(
            f"the config volume refers to ConfigMap {volumes[mount['name']]['configMap'].get('name')!r}, "
            f"not {config_map['metadata']['name']!r}"
        )
    config_file = pathlib.PurePosixPath(config_path or "/")
    key = config_file.name if config_file.parent == pathlib.PurePosixPath(mount["mountPath"]) else None
    if key not in config_map.get("data", {}):
        problems.append(
            f"--config {config_path} is not a key of the ConfigMap mounted at {mount['mountPath']} "
            f"(keys: {', '.join(config_map.get('data', {}))})"
        )
        return problems
    try:
        config = tomllib.loads(config_map["data"][key])
    except tomllib.TOMLDecodeError as e:
        problems.append(f"the ConfigMap's {key} is not valid TOML: {e}")
        return problems
    # The daemon's default when the file leaves it out.
    listen = config.get("daemon", {}).get("listen", "0.0.0.0:9464")
    port = listen.rpartition(":")[2]
    if not port.isdigit() or int(port) != ports.get("metrics"):
        problems.append(
            f"the config's daemon.listen {listen!r} is not the container's metrics port {ports.get('metrics')}"
        )

    env = {e["name"]: e for e in container.get("env", [])}
    if env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "spec.nodeName":
        problems.append("NODE_NAME is not set from the pod's spec.nodeName")
    return problems


def main(argv):
    if len(argv) >= 3 and argv[0] == "schema":
        return 1 if schema(argv[1].split(","), argv[2:]) else 0
    if len(argv) == 2 and argv[0] == "consistency":
        problems = consistency(argv[1])
        for problem in problems:
            print(f"FAIL {argv[1]}: {problem}")
        if not problems:
            print(
                f"ok   {argv[1]}: the ServiceAccount, ClusterRoleBinding, ConfigMap and Service agree with "
                "the DaemonSet, and the config listens on the metrics port"
            )
        return 1 if problems else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
