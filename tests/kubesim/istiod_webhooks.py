"""istiod's webhook controllers in the simulated cluster (test harness).

A running istiod keeps the webhook configurations of its revision working (istio/istio
``pkg/webhooks/validation/controller/controller.go`` and ``pkg/webhooks/webhookpatch.go``):

* every ValidatingWebhookConfiguration labelled ``istio.io/rev=<its revision>`` (its own
  ``istio-validator-<rev>-<ns>``, and ``istiod-default-validator`` when the default revision is it) gets the
  CA bundle, and -- once a dry run of invalid config is really rejected through the webhook, i.e. the webhook
  reaches a serving istiod -- ``failurePolicy: Fail`` (Helm installs them fail-open, ``Ignore``);
* every MutatingWebhookConfiguration labelled ``istio.io/rev=<its revision>`` (its injector, the revision
  tags pointing at it) gets the CA bundle.

It never sets a policy back to ``Ignore``: a validator whose istiod is gone keeps ``Fail`` and rejects Istio
config ("failed calling webhook ... service not found"), as on a real cluster.
"""

from __future__ import annotations

import logging
import threading

from . import istio
from .admission import MWC, VWC, WebhookCallError, resolve_backend
from .errors import ApiError

log = logging.getLogger("kubesim.istiod_webhooks")

PODS = "pods"


def _serving_revisions(store) -> set:
    """Revisions with a Ready istiod pod (container ``discovery``)."""
    out = set()
    for p in store.list(PODS, None, "app=istiod"):
        if (p.get("metadata") or {}).get("deletionTimestamp"):
            continue
        if not any(c.get("name") == "discovery" for c in (p.get("spec") or {}).get("containers") or []):
            continue
        if any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (p.get("status") or {}).get("conditions") or []):
            out.add(((p.get("metadata") or {}).get("labels") or {}).get("istio.io/rev") or istio.DEFAULT_REVISION)
    return out


class IstiodWebhookController:
    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()
        self._running = False
        self._dirty = False

    def on_event(self, event_type, rtype, obj):
        key = rtype if isinstance(rtype, str) else rtype.key
        if key == PODS:
            if ((obj.get("metadata") or {}).get("labels") or {}).get("app") != "istiod":
                return
        elif key == "endpoints":  # a webhook reaches istiod once its Service has ready endpoints
            if not str((obj.get("metadata") or {}).get("name", "")).startswith("istiod"):
                return
        elif key not in (MWC, VWC) or event_type == "DELETED":
            return
        with self._lock:
            self._dirty = True
            if self._running:  # the running sync goes round again (our own updates come back as events too)
                return
            self._running = True
        try:
            while True:
                with self._lock:
                    if not self._dirty:
                        self._running = False
                        return
                    self._dirty = False
                try:
                    self.sync()
                except ApiError as e:
                    if e.code not in (404, 409):
                        log.warning("istiod webhook controller: %s", e.message)
        except BaseException:
            with self._lock:
                self._running = False
            raise

    def sync(self):
        revisions = _serving_revisions(self.store)
        for rev in sorted(revisions):
            for key in (VWC, MWC):
                for cfg in self.store.list(key, None, f"istio.io/rev={rev}"):
                    self._reconcile(key, cfg)

    def _reconcile(self, key, cfg):
        changed = False
        for wh in cfg.get("webhooks") or []:
            cc = wh.setdefault("clientConfig", {})
            if cc.get("caBundle") != istio.CA_BUNDLE:
                cc["caBundle"] = istio.CA_BUNDLE
                changed = True
        if key == VWC and any((wh.get("failurePolicy") or "Fail") != "Fail" for wh in cfg.get("webhooks") or []):
            # readyForFailClose: only when the webhook really reaches a serving istiod
            try:
                for wh in cfg.get("webhooks") or []:
                    resolve_backend(self.store, wh)
            except WebhookCallError:
                pass
            else:
                for wh in cfg.get("webhooks") or []:
                    wh["failurePolicy"] = "Fail"
                changed = True
        if changed:
            self.store.update(key, cfg)


def install(store):
    controller = IstiodWebhookController(store)
    store.add_listener(controller.on_event)
    return controller
