"""kubesim: a simulated Kubernetes API server with a stand-in Istio control plane.

Test harness only (see tests/kubesim/README.md and DESIGN.md, "The simulated cluster").
Start it with ``PYTHONPATH=tests python -m kubesim serve --scenario NAME --port 0
--kubeconfig PATH``; in tests use :class:`kubesim.testing.KubeSim`.
"""
