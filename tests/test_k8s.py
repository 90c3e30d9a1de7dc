"""k8s/, checked offline: rendered by real kustomize, validated against the Kubernetes and Dask CRD
schemas, and every `metdata` (and `dask`) command parsed by the real click command lines."""

from __future__ import annotations

import functools
import importlib
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest
import yaml

from metdata.cluster import parse_spec
from metdata.storage.dataset import Dataset

K8S = Path(__file__).resolve().parent.parent / "k8s"
DOCKER = K8S.parent / "docker"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())
BASES = sorted(p.name for p in (K8S / "base").iterdir() if (p / "kustomization.yaml").exists())
#: The Kubernetes version the standard resources are validated against (bundled by kubernetes-validate).
KUBERNETES_VERSION = "1.33.0"
#: Env the dask-kubernetes operator gives every worker container.
OPERATOR_ENV = {"DASK_WORKER_NAME", "DASK_SCHEDULER_ADDRESS"}
#: Env Kubernetes gives every pod of an Indexed Job.
INDEXED_ENV = {"JOB_COMPLETION_INDEX"}
#: The images docker/ builds: name -> Dockerfile.
IMAGES = {"metdata": "Dockerfile", "metdata-train": "Dockerfile.train"}


def _kustomize() -> list[str]:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    pytest.skip("neither kustomize nor kubectl (which bundles kustomize) is installed")


@functools.cache
def render(path: str) -> tuple[dict, ...]:
    """The manifests kustomize renders for a kustomization folder under k8s/."""
    out = subprocess.run([*_kustomize(), str(K8S / path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kustomize failed for k8s/{path}:\n{out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


ALL = [f"base/{b}" for b in BASES] + [f"overlays/{o}" for o in OVERLAYS]


def pod_specs(doc: dict) -> list[tuple[str, dict]]:
    """(role, pod spec) of every pod template a resource holds."""
    kind, spec = doc["kind"], doc.get("spec", {})
    if kind == "Job":
        return [("job", spec["template"]["spec"])]
    if kind == "Deployment":
        return [("server", spec["template"]["spec"])]
    if kind == "DaskCluster":
        return [("scheduler", spec["scheduler"]["spec"]), ("worker", spec["worker"]["spec"])]
    if kind == "DaskJob":
        cluster = spec["cluster"]["spec"]
        return [
            ("job", spec["job"]["spec"]),
            ("scheduler", cluster["scheduler"]["spec"]),
            ("worker", cluster["worker"]["spec"]),
        ]
    return []


def containers(doc: dict):
    for role, pod in pod_specs(doc):
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            yield role, pod, container


def argv(container: dict) -> list[str]:
    return [str(a) for a in container.get("command", []) + container.get("args", [])]


def test_there_is_something_to_check():
    assert {"dask", "storage", "train"} <= set(BASES)
    assert {"dataset", "autoscale", "train", "train-multinode", "dataset-minio", "serve"} <= set(OVERLAYS)


@pytest.mark.parametrize("path", ALL)
def test_renders_and_standard_resources_validate(path):
    import kubernetes_validate

    docs = render(path)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("kubernetes.dask.org/"):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@functools.cache
def crd_schemas() -> dict[str, dict]:
    """kind -> openAPIV3Schema of the CRDs dask-kubernetes installs (its Helm chart's, fully resolved)."""
    operator = Path(importlib.import_module("dask_kubernetes.operator").__file__).parent
    schemas = {}
    for file in (operator / "deployment/helm/dask-kubernetes-operator/crds").glob("*.yaml"):
        crd = yaml.safe_load(file.read_text())
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schemas[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return schemas


@pytest.mark.parametrize("path", ALL)
def test_dask_resources_validate_against_the_operator_crds(path):
    pytest.importorskip("dask_kubernetes.operator")
    import jsonschema

    for doc in render(path):
        if not doc["apiVersion"].startswith("kubernetes.dask.org/"):
            continue
        assert doc["apiVersion"] == "kubernetes.dask.org/v1"
        jsonschema.validate({"spec": doc["spec"]}, crd_schemas()[doc["kind"]])


def test_the_crd_check_catches_a_bad_daskcluster():
    pytest.importorskip("dask_kubernetes.operator")
    import jsonschema

    (cluster,) = [d for d in render("base/dask") if d["kind"] == "DaskCluster"]
    broken = {"spec": {**cluster["spec"], "worker": {**cluster["spec"]["worker"], "replicas": "two"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schemas()["DaskCluster"])


def _command(name: str) -> click.Command:
    from metdata.cli import main

    with main.make_context("metdata", [name, "--help"], resilient_parsing=True) as ctx:
        found = main.get_command(ctx, name)
    if found is None and name in ("train", "evaluate", "predict", "serve"):
        # Not (yet) registered in metdata.cli.COMMANDS: take it from its module if it exists.
        try:
            found = getattr(importlib.import_module("metdata.cli.train"), name)
        except ImportError:
            pytest.skip(f"metdata {name} is not written yet")
    assert found is not None, f"'metdata {name}' is not a command"
    return found


def _parse(args: list[str]) -> click.Context:
    """Parse (and type-check) ``metdata ARGS`` the way the CLI would, without running anything."""
    from metdata.cli import main

    name, *rest = args
    assert not name.startswith("-"), f"put the group's options in the pod's env, not before {name!r}"
    group_ctx = main.make_context("metdata", [], resilient_parsing=True)
    return _command(name).make_context(name, rest, parent=group_ctx)


def _dask_command(args: list[str]) -> click.Context:
    from distributed.cli import dask_scheduler, dask_worker

    commands = {"scheduler": dask_scheduler.main, "worker": dask_worker.main}
    assert args[1] in commands, f"unknown dask command {args}"
    return commands[args[1]].make_context(f"dask {args[1]}", args[2:])


def _metdata_args(container: dict) -> list[str] | None:
    """The `metdata ...` argv a container runs, through the metdata.cluster.tfconfig wrapper if any."""
    args = argv(container)
    if args[:3] == ["python", "-m", "metdata.cluster.tfconfig"]:
        args = args[args.index("--") + 1 :] if "--" in args else []
    return args if args[:1] == ["metdata"] else None


def _substituted(args: list[str], values: dict[str, str]) -> list[str]:
    return [re.sub(r"\$\((\w+)\)", lambda m: values.get(m.group(1), f"placeholder-{m.group(1)}"), a) for a in args]


def _config_values(docs) -> dict[str, str]:
    return {
        k: v
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "metdata-storage"
        for k, v in d["data"].items()
    }


def _env_values(container: dict, config: dict[str, str]) -> dict[str, str]:
    values = {}
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("configMapKeyRef")
        values[env["name"]] = env.get("value") or (config.get(ref["key"]) if ref else None) or "metdata"
    return values


@pytest.mark.parametrize("path", ALL)
def test_every_command_parses_with_the_real_cli(path):
    docs = render(path)
    config = _config_values(docs)
    parsed = 0
    for _role, _pod, container in [c for d in docs for c in containers(d)]:
        args = argv(container)
        metdata_args = _metdata_args(container)
        if metdata_args is not None:
            ctx = _parse(_substituted(metdata_args[1:], _env_values(container, config)))
            if "cluster" in ctx.params:
                parse_spec(ctx.params["cluster"])
            parsed += 1
        elif args[:1] == ["dask"]:
            _dask_command(_substituted(args, {}))
            parsed += 1
        else:
            pytest.fail(f"{path}: container {container['name']} runs neither metdata nor dask: {args}")
    assert parsed or not any(pod_specs(d) for d in docs)


def test_a_renamed_flag_would_fail():
    with pytest.raises(click.NoSuchOption):
        _parse(["ingest", "--data", "s3://b/d", "--clusters", "local"])
    with pytest.raises(click.BadParameter):
        _parse(["images", "--data", "s3://b/d", "--size", "huge"])


@pytest.mark.parametrize("path", ALL)
def test_images_and_env_references_are_present(path):
    docs = render(path)
    config_keys = set(_config_values(docs))
    secret = yaml.safe_load((K8S / "base/storage/s3-credentials.example.yaml").read_text())
    for doc in docs:
        for role, _pod, container in containers(doc):
            name = container["image"].rsplit("/", 1)[-1]
            repository, _, tag = name.partition(":")
            assert repository in IMAGES and tag, f"{container['name']}: image {container['image']!r}"
            assert (DOCKER / IMAGES[repository]).exists()
            defined = {e["name"] for e in container.get("env", [])}
            if role == "worker":
                defined |= OPERATOR_ENV
            if doc["kind"] == "Job" and doc["spec"].get("completionMode") == "Indexed":
                defined |= INDEXED_ENV
            used = set(re.findall(r"\$\((\w+)\)", " ".join(argv(container))))
            assert used <= defined, f"{doc['metadata']['name']}/{container['name']}: {used - defined} not in env"
            for env in container.get("env", []):
                source = env.get("valueFrom", {})
                if "configMapKeyRef" in source and not source["configMapKeyRef"].get("optional"):
                    assert source["configMapKeyRef"]["name"] == "metdata-storage"
                    assert source["configMapKeyRef"]["key"] in config_keys
                if "secretKeyRef" in source:
                    assert source["secretKeyRef"]["name"] == secret["metadata"]["name"]
                    assert source["secretKeyRef"]["key"] in secret["stringData"]


@pytest.mark.parametrize("path", ALL)
def test_cluster_addresses_name_a_rendered_scheduler(path):
    docs = render(path)
    clusters = {d["metadata"]["name"] for d in docs if d["kind"] == "DaskCluster"}
    for doc in docs:
        for _role, _pod, container in containers(doc):
            for address in re.findall(r"tcp://[^\s]+", " ".join(argv(container))):
                host, port = address.removeprefix("tcp://").rsplit(":", 1)
                assert port == "8786"
                assert host.split(".")[0].removesuffix("-scheduler") in clusters, f"{address}: no such DaskCluster"
    for doc in docs:
        if doc["kind"] == "DaskAutoscaler":
            assert doc["spec"]["cluster"] in clusters


def _job(path: str, name: str = "metdata-train") -> dict:
    (job,) = [d for d in render(path) if d["kind"] == "Job" and d["metadata"]["name"] == name]
    return job


@pytest.mark.parametrize("path", ["overlays/train", "overlays/train-multinode"])
def test_training_job_runs_on_a_gpu_and_survives_node_disruption(path):
    job = _job(path)
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and spec["backoffLimit"] >= 1
    assert {"type": "DisruptionTarget", "status": "True"} in [
        c for rule in spec["podFailurePolicy"]["rules"] if rule["action"] == "Ignore" for c in rule["onPodConditions"]
    ]
    (train,) = pod["containers"]
    assert int(train["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in train["volumeMounts"]
    ctx = _parse(_substituted(_metdata_args(train)[1:], _env_values(train, _config_values(render(path)))))
    assert ctx.params["out"].startswith("s3://")  # a replacement pod finds the checkpoint


def test_multinode_tf_config_settings_match_the_job_and_service():
    docs = render("overlays/train-multinode")
    job = _job("overlays/train-multinode")
    (service,) = [d for d in docs if d["kind"] == "Service"]
    pod = job["spec"]["template"]["spec"]
    (train,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in train["env"]}
    assert job["spec"]["completionMode"] == "Indexed"
    assert int(env["WORLD_SIZE"]) == job["spec"]["completions"] == job["spec"]["parallelism"] >= 2
    assert env["JOB_NAME"] == job["metadata"]["name"]
    assert env["TF_SERVICE"] == pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": job["metadata"]["name"]}
    assert int(env["TF_PORT"]) == service["spec"]["ports"][0]["port"] == train["ports"][0]["containerPort"]
    assert argv(train)[:4] == ["python", "-m", "metdata.cluster.tfconfig", "--"]


def test_dataset_job_ingests_then_fetches_images():
    pod = _job("overlays/dataset", "metdata-dataset")["spec"]["template"]["spec"]
    assert [argv(c)[1] for c in pod["initContainers"] + pod["containers"]] == ["ingest", "images"]


def test_kustomizations_keep_dask_names_and_secrets_out():
    for file in K8S.rglob("kustomization.yaml"):
        kustomization = yaml.safe_load(file.read_text())
        assert "namePrefix" not in kustomization and "nameSuffix" not in kustomization, file
        assert "s3-credentials.example.yaml" not in kustomization.get("resources", []), file
    for path in ALL:
        assert not [d for d in render(path) if d["kind"] == "Secret"], f"{path} renders a Secret"


def test_the_secret_template_validates_and_holds_no_secret():
    import kubernetes_validate

    secret = yaml.safe_load((K8S / "base/storage/s3-credentials.example.yaml").read_text())
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert all(v.startswith("REPLACE_WITH_") for v in secret["stringData"].values())


def test_the_endpoint_component_sets_aws_endpoint_url():
    (config,) = [d for d in render("overlays/dataset-minio") if d["kind"] == "ConfigMap"]
    assert config["data"]["AWS_ENDPOINT_URL"].startswith("http")
    (plain,) = [d for d in render("overlays/dataset") if d["kind"] == "ConfigMap"]
    assert "AWS_ENDPOINT_URL" not in plain["data"]  # AWS S3: botocore's own endpoint


def test_aws_endpoint_url_env_reaches_s3fs(s3, monkeypatch):
    """What the manifests rely on: the ConfigMap's AWS_ENDPOINT_URL, with no --storage-options."""
    root, options = s3
    monkeypatch.setenv("AWS_ENDPOINT_URL", options["endpoint_url"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    dataset = Dataset(root, {"skip_instance_cache": True})
    dataset.write_json("probe.json", {"ok": True})
    assert Dataset(root, options).read_json("probe.json") == {"ok": True}


def test_serve_deployment_probes_the_model_and_runs_unprivileged():
    docs = render("overlays/serve")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    pod = deployment["spec"]["template"]["spec"]
    (serve,) = pod["containers"]
    ctx = _parse(_substituted(_metdata_args(serve)[1:], _env_values(serve, _config_values(docs))))
    assert ctx.info_name == "serve" and ctx.params["run_url"].startswith("s3://")  # RUN on S3
    assert ctx.params["host"] == "0.0.0.0"  # reachable from the kubelet's probes and the Service
    port = serve["ports"][0]
    assert ctx.params["port"] == port["containerPort"] and service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= service["spec"]["selector"].items()
    # the startup probe covers the model load (/readyz: loaded and warmed up), long enough for it
    startup = serve["startupProbe"]
    assert startup["httpGet"]["path"] == "/readyz" and startup["periodSeconds"] * startup["failureThreshold"] >= 120
    assert serve["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert serve["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(serve["resources"]["requests"]) and "memory" in serve["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] and serve["securityContext"]["allowPrivilegeEscalation"] is False
    if serve["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in [m["mountPath"] for m in serve["volumeMounts"]]


def test_serve_routes_in_the_manifests_exist_in_the_server():
    """The probe paths are the server's own routes (a renamed route would fail here)."""
    pytest.importorskip("flask")
    from flask import Flask

    from metdata.serve.routes import add_routes
    from metdata.serve.state import ServeConfig, Worker

    app = Flask("probe")
    add_routes(app, Worker(ServeConfig(run="s3://unused/run")))  # not started: nothing is loaded
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    (deployment,) = [d for d in render("overlays/serve") if d["kind"] == "Deployment"]
    (serve,) = deployment["spec"]["template"]["spec"]["containers"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert serve[probe]["httpGet"]["path"] in routes
    client = app.test_client()
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 503


def test_serve_replicas_keep_one_pod_through_a_voluntary_disruption():
    docs = render("overlays/serve")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (budget,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]  # a drain can still proceed


def test_the_probe_paths_are_answered_on_the_event_loop():
    """The front answers the probes itself (never queued behind the model's threads)."""
    pytest.importorskip("a2wsgi")
    import asyncio

    from metdata.serve.front import Front

    (deployment,) = [d for d in render("overlays/serve") if d["kind"] == "Deployment"]
    (serve,) = deployment["spec"]["template"]["spec"]["containers"]
    seen = []

    def never(environ, start_response):  # the threads' app: must not be reached by a probe
        raise AssertionError(environ["PATH_INFO"])

    front = Front(never, lambda path: (seen.append(path) or 200, {"status": "live"}), 100, 1.0, 1)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        sent = []

        async def send(message, sent=sent):
            sent.append(message)

        path = serve[probe]["httpGet"]["path"]
        asyncio.run(front({"type": "http", "path": path, "method": "GET", "headers": []}, None, send))
        assert sent[0]["status"] == 200 and seen[-1] == path
