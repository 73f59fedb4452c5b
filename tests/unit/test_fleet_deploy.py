"""The DaemonSet and Dockerfile: structure a cluster relies on, and least privilege."""

from __future__ import annotations

from pathlib import Path

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install '.[test]')")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _daemonset():
    return yaml.safe_load((DEPLOY / "kubernetes" / "daemonset.yaml").read_text())


def test_daemonset_has_the_required_fields():
    doc = _daemonset()
    assert doc["apiVersion"] == "apps/v1" and doc["kind"] == "DaemonSet" and doc["metadata"]["name"]
    spec = doc["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["image"] and container["name"]
    mounts = {m["name"] for m in container["volumeMounts"]}
    assert mounts == {v["name"] for v in spec["template"]["spec"]["volumes"]}


def test_daemonset_runs_with_least_privilege_and_limits():
    (container,) = _daemonset()["spec"]["template"]["spec"]["containers"]
    security = container["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["IPC_LOCK"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    limits = container["resources"]["limits"]
    assert limits["cpu"] and limits["memory"]
    assert "hostPID" not in _daemonset()["spec"]["template"]["spec"]


def test_daemonset_writes_state_and_textfile_where_status_and_node_exporter_read():
    (container,) = _daemonset()["spec"]["template"]["spec"]["containers"]
    script = container["args"][0]
    assert "--state-dir /var/lib/shakeout" in script and "--textfile /textfile/shakeout.prom" in script


def test_dockerfile_builds_probes_in_one_stage_and_runs_slim():
    text = (DEPLOY / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    final = text.rsplit(stages[1] + "\n", 1)[1]
    assert "gcc" not in final and "COPY --from=build" in final
