"""Helm releases in scenarios: real release records made by real Helm at scenario start (test harness).

A scenario YAML may list ``helm:`` releases::

    helm:
      - {release: istio-base, chart: base, namespace: istio-system, values: {defaultRevision: 1-29-6}}
      - {release: istiod-1-29-6, chart: istiod, namespace: istio-system,
         values: {revision: 1-29-6, revisionTags: [default], global: {tag: 1.29.6}}}

``chart`` names a directory of ``tests/kubesim/charts`` (or is a path).  ``kubesim serve`` installs them in
order, once the API is served and before the controllers start, by running the test ``helm``
(``tests/kubesim/bin/helm upgrade --install ... --create-namespace``), i.e. Helm v4's own SDK: the objects
carry Helm's ownership metadata and the ``sh.helm.release.v1.<name>.v1`` Secrets are written by Helm itself,
so ``helm list``/``upgrade``/``uninstall`` work on them exactly as on a cluster installed by hand.  The
controllers then settle, so the scenario's pods are Running when ``kubesim ready`` is printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

KUBESIM_DIR = Path(__file__).resolve().parent
CHARTS_DIR = KUBESIM_DIR / "charts"
HELM_BIN = KUBESIM_DIR / "bin" / "helm"


def chart_path(chart: str) -> str:
    p = CHARTS_DIR / chart
    return str(p) if p.is_dir() else str(Path(chart).resolve())


def install_releases(releases: list, kubeconfig: str, workdir: str | None = None, timeout: float = 300.0):
    """Install ``releases`` (scenario ``helm:`` entries) with the test helm; raise SystemExit on failure."""
    if not releases:
        return
    env = dict(os.environ)
    env["KUBECONFIG"] = kubeconfig
    env.pop("HELM_NAMESPACE", None)
    env.pop("HELM_KUBECONTEXT", None)
    work = workdir or tempfile.mkdtemp(prefix="kubesim-helm-")
    env["KUBECACHEDIR"] = os.path.join(work, "kube-cache")
    env.setdefault("HELM_CACHE_HOME", os.path.join(work, "helm-cache"))
    env.setdefault("HELM_CONFIG_HOME", os.path.join(work, "helm-config"))
    env.setdefault("HELM_DATA_HOME", os.path.join(work, "helm-data"))
    for rel in releases:
        cmd = [sys.executable, str(HELM_BIN), "upgrade", "--install", rel["release"], chart_path(rel["chart"]),
               "-n", rel.get("namespace", "default"), "--create-namespace"]
        values = rel.get("values") or {}
        vfile = None
        if values:
            fd, vfile = tempfile.mkstemp(prefix="kubesim-values-", suffix=".yaml", dir=work)
            with os.fdopen(fd, "w") as fh:
                yaml.safe_dump(values, fh)
            cmd += ["-f", vfile]
        try:
            cp = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        finally:
            if vfile:
                os.unlink(vfile)
        if cp.returncode != 0:
            raise SystemExit(f"kubesim: helm release {rel['release']} of scenario failed:\n{cp.stdout}{cp.stderr}")
