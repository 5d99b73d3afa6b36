"""Headless deployment: the Dockerfile, installers/docker/compose.yaml, installers/kubernetes/,
and the health checks they run (`python -m sayit_node.healthcheck`).

Validated offline: `docker compose config` (or Compose v1's `docker-compose config`) when a
Compose is installed, kubernetes-validate's bundled schemas, and the health checks against a real
node and a real `sayit-node worker` on a private redis-server. No image is pulled or built.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, NodeProcess
from tests.redis_fixture import REDIS_SERVER, RedisServer

COMPOSE_DIR = ROOT / "installers" / "docker"
K8S_DIR = ROOT / "installers" / "kubernetes"


# --- Dockerfile -------------------------------------------------------------------------------

def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_a_non_root_health_checked_node_with_the_model_inside() -> None:
    steps = dockerfile_instructions(ROOT / "Dockerfile")
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM"):]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    health = [args for word, args in final if word == "HEALTHCHECK"]
    assert len(health) == 1 and '"sayit_node.healthcheck"' in health[0]
    assert ("ENTRYPOINT", '["sayit-node"]') in final and ("CMD", '["serve"]') in final
    env = " ".join(args for word, args in final if word == "ENV")
    assert "HOST=0.0.0.0" in env and "SAYIT_DATA_DIR=/data" in env
    runs = " ".join(args for word, args in steps if word == "RUN")
    # The build installs the headless node only and proves tiny.en is inside the image.
    assert "pip install ." in runs and "[desktop" not in runs
    assert "_tiny_en_from_wheel" in runs and "tiny.en missing" in runs
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests", "dist"} <= set(ignored)


# --- compose ----------------------------------------------------------------------------------

def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = compose_command()
    if cmd is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SAYIT_", "DOCKER_HOST"))}
    return subprocess.run([*cmd, "-f", str(COMPOSE_DIR / "compose.yaml"), "config"], cwd=COMPOSE_DIR,
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


def test_compose_file_validates_and_keeps_redis_durable_and_private() -> None:
    proc = compose_config({"REDIS_PASSWORD": "0123abcd" * 8})
    assert proc.returncode == 0, proc.stderr
    config = yaml.safe_load(proc.stdout)
    services = config["services"]
    redis = services["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command and "--maxmemory-policy noeviction" in command
    assert "allkeys" not in command and "maxmemory-policy" not in str(redis.get("environment"))
    assert "requirepass" in command and "0123abcd" not in command  # the password is on no command line
    assert "ports" not in redis
    assert "redis-cli ping" in " ".join(redis["healthcheck"]["test"])

    nodes = [name for name, s in services.items() if s.get("command") == ["serve"]]
    workers = [name for name, s in services.items() if s.get("command") == ["worker"]]
    assert len(nodes) >= 2 and workers
    for name in nodes + workers:
        service = services[name]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["environment"]["REDIS_HOST"] == "redis"
        assert service["environment"]["REDIS_PASSWORD"] == "0123abcd" * 8
        role = "node" if name in nodes else "worker"
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "sayit_node.healthcheck", role]
    for name in nodes:
        published = services[name]["ports"][0]
        host_ip = published["host_ip"] if isinstance(published, dict) else published.split(":")[0]
        assert host_ip == "127.0.0.1"  # never every interface by default
    assert services[workers[0]]["deploy"]["replicas"] >= 2


def test_compose_refuses_to_start_without_a_redis_password() -> None:
    proc = compose_config({})
    assert proc.returncode != 0
    assert "REDIS_PASSWORD" in proc.stderr


# --- kubernetes -------------------------------------------------------------------------------

def k8s_documents() -> dict[tuple[str, str], dict]:
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    docs = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((K8S_DIR / name).read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def test_kubernetes_manifests_validate_against_the_schemas(tmp_path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    files = [K8S_DIR / name for name in kustomization["resources"]]
    assert {p.name for p in K8S_DIR.glob("*.yaml")} == {p.name for p in files} | {"kustomization.yaml"}
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    # The validator can fail: a wrong type and an unknown field are both caught.
    bad = k8s_documents()[("Deployment", "sayit-worker")]
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_kubernetes_shape_redis_pvc_nodes_service_workers_hpa() -> None:
    docs = k8s_documents()
    redis = docs[("StatefulSet", "redis")]
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    container = redis["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(container["args"])
    assert "--appendonly yes" in script and "--maxmemory-policy noeviction" in script
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    password = next(e for e in container["env"] if e["name"] == "REDIS_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": "sayit-redis", "key": "password"}

    node = docs[("Deployment", "sayit-node")]["spec"]["template"]["spec"]["containers"][0]
    assert node["args"] == ["serve"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert node[probe]["httpGet"]["path"] == "/api/health"
    service = docs[("Service", "sayit-node")]["spec"]
    assert service["selector"] == docs[("Deployment", "sayit-node")]["spec"]["selector"]["matchLabels"]

    worker_dep = docs[("Deployment", "sayit-worker")]
    worker = worker_dep["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"] == ["worker"]
    assert worker["livenessProbe"]["exec"]["command"][-2:] == ["sayit_node.healthcheck", "worker"]
    assert worker["resources"]["requests"]["cpu"]  # an HPA on CPU needs a request to compare with
    hpa = docs[("HorizontalPodAutoscaler", "sayit-worker")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "sayit-worker"}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["minReplicas"] < hpa["maxReplicas"]
    for kind, name in docs:
        if kind in ("Deployment", "StatefulSet"):
            assert docs[(kind, name)]["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


# --- health checks against real processes ------------------------------------------------------

def healthcheck(role: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sayit_node.healthcheck", role], env=env,
                          capture_output=True, text=True, timeout=30)


def test_node_healthcheck_follows_a_real_node(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node", env={"SAYIT_ENGINE": "simulated"})
    assert healthcheck("node", node.env).returncode == 1  # nothing listens yet
    node.start()
    try:
        result = healthcheck("node", node.env)
        assert result.returncode == 0, result.stderr
    finally:
        node.stop()
    result = healthcheck("node", node.env)
    assert result.returncode == 1 and "no node on 127.0.0.1" in result.stderr


def test_worker_healthcheck_follows_a_real_worker_heartbeat(tmp_path: Path) -> None:
    if not Path(REDIS_SERVER).exists():
        pytest.skip("redis-server is not installed")
    password = "p@ss/w:rd 9"  # REDIS_PASSWORD is URL-quoted into the Redis URL
    with RedisServer(tmp_path / "redis", password=password).start() as redis:
        node = NodeProcess(tmp_path / "worker", env={
            "SAYIT_ENGINE": "simulated", "REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(redis.port),
            "REDIS_PASSWORD": password})
        env = node.env
        assert "no live heartbeat" in healthcheck("worker", env).stderr or \
            "has not started" in healthcheck("worker", env).stderr
        proc = subprocess.Popen([sys.executable, "-m", "sayit_node", "worker"], env=env, cwd=node.home,
                                stdout=open(node.log, "ab"), stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while (result := healthcheck("worker", env)).returncode != 0:
                assert proc.poll() is None, node.log.read_text()[-2000:]
                assert time.monotonic() < deadline, result.stderr
                time.sleep(0.5)
            proc.send_signal(signal.SIGKILL)  # no goodbye: the heartbeat must expire by itself
            proc.wait(10)
            deadline = time.monotonic() + 30
            while (result := healthcheck("worker", env)).returncode == 0:
                assert time.monotonic() < deadline, "heartbeat of a killed worker never expired"
                time.sleep(0.5)
            assert "no live heartbeat" in result.stderr
            wrong = {**env, "REDIS_PASSWORD": "wrong"}
            result = healthcheck("worker", wrong)
            assert result.returncode == 1 and "cannot reach Redis" in result.stderr, result.stderr
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

