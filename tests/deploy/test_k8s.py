"""k8s/ checked statically and offline: every document against the Kubernetes schemas (kubernetes-validate,
strict: an unknown or misspelt field fails), then the wiring the scale deployment needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT, skip_or_fail

K8S = REPO_ROOT / "k8s"


# the Kubernetes release the manifests are checked against: the newest schema of the locked
# kubernetes-validate (1.37.0, requirements/dev.txt)
K8S_VERSION = "1.37.0"


def documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def by_kind(kind: str, name: str) -> dict[str, Any]:
    return next(d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name)


@pytest.mark.parametrize("path,doc", documents(), ids=lambda v: v.name if isinstance(v, Path) else "")
def test_manifest_matches_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        skip_or_fail("kubernetes-validate not installed (pip install -e '.[dev]')")
    from kubernetes_validate.utils import all_versions

    # a fixed release, not latest_version(): a new kubernetes-validate (a re-lock) must not change what is
    # checked behind our back
    assert K8S_VERSION in all_versions(), f"no {K8S_VERSION} schema in kubernetes-validate: update it"
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(
            f"{path.name}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}"
        )


def test_the_pieces_fit_together() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    assert kinds >= {
        ("Deployment", "masklite-api"), ("Service", "masklite"), ("HorizontalPodAutoscaler", "masklite-api"),
        ("Deployment", "masklite-worker"), ("StatefulSet", "redis"), ("Service", "redis"),
        ("PersistentVolumeClaim", "masklite-jobs"),
    }  # fmt: skip
    api, worker = by_kind("Deployment", "masklite-api"), by_kind("Deployment", "masklite-worker")
    api_c, worker_c = (d["spec"]["template"]["spec"]["containers"][0] for d in (api, worker))
    assert api_c["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api_c["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert worker_c["command"] == ["python", "-m", "service", "worker"]
    assert "--check" in worker_c["livenessProbe"]["exec"]["command"]
    for c in (api_c, worker_c):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["MASKLITE_BROKER_URL"] == "redis://redis:6379/0"  # the redis Service
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["jobs"] == env["MASKLITE_JOBS_DIR"]
        assert c["securityContext"]["readOnlyRootFilesystem"] and c["resources"]["requests"]["cpu"]
    for d in (api, worker):
        claims = [v["persistentVolumeClaim"]["claimName"] for v in d["spec"]["template"]["spec"]["volumes"]
                  if "persistentVolumeClaim" in v]  # fmt: skip
        assert claims == ["masklite-jobs"]
    assert by_kind("PersistentVolumeClaim", "masklite-jobs")["spec"]["accessModes"] == ["ReadWriteMany"]
    hpa = by_kind("HorizontalPodAutoscaler", "masklite-api")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "masklite-api" and hpa["metrics"][0]["resource"]["name"] == "cpu"
    service = by_kind("Service", "masklite")["spec"]
    assert service["selector"] == api["spec"]["template"]["metadata"]["labels"]
    redis = by_kind("Service", "redis")["spec"]
    assert redis["selector"] == by_kind("StatefulSet", "redis")["spec"]["template"]["metadata"]["labels"]
