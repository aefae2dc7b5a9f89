"""Watch semantics against the simulated API server (kubernetes Python client and raw HTTP)."""

import json
import threading

from kubernetes import client, watch


def _cm(name, labels=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {"v": "0"}}


def test_watch_replays_after_resource_version_and_times_out(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    core.create_namespaced_config_map(ns, _cm("before"))
    listed = core.list_namespaced_config_map(ns)
    rv = listed.metadata.resource_version
    core.create_namespaced_config_map(ns, _cm("w1"))
    core.patch_namespaced_config_map("w1", ns, {"data": {"v": "1"}})
    core.delete_namespaced_config_map("w1", ns)
    events = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, resource_version=rv, timeout_seconds=1):
        events.append((ev["type"], ev["object"].metadata.name, ev["object"].data))
    # only what happened after rv, in order; the stream ended by itself at timeoutSeconds
    assert events == [("ADDED", "w1", {"v": "0"}), ("MODIFIED", "w1", {"v": "1"}), ("DELETED", "w1", {"v": "1"})]


def test_watch_without_resource_version_starts_with_current_state(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    core.create_namespaced_config_map(ns, _cm("a"))
    core.create_namespaced_config_map(ns, _cm("b"))
    got = []

    def later():
        core.create_namespaced_config_map(ns, _cm("c"))

    t = threading.Timer(0.3, later)
    t.start()
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, ns, timeout_seconds=2):
        got.append((ev["type"], ev["object"].metadata.name))
        if len(got) == 3:
            w.stop()
    t.join()
    assert got == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


def test_watch_label_selector_transitions(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    rv = core.create_namespaced_config_map(ns, _cm("sel", {"team": "a"})).metadata.resource_version
    core.patch_namespaced_config_map("sel", ns, {"metadata": {"labels": {"team": "b"}}})  # leaves the selection
    core.patch_namespaced_config_map("sel", ns, {"metadata": {"labels": {"team": "a"}}})  # enters it again
    core.patch_namespaced_config_map("sel", ns, {"data": {"v": "9"}})
    w = watch.Watch()
    got = [(e["type"], e["object"].metadata.labels["team"]) for e in
           w.stream(core.list_namespaced_config_map, ns, label_selector="team=a", resource_version=rv,
                    timeout_seconds=1)]
    assert got == [("DELETED", "b"), ("ADDED", "a"), ("MODIFIED", "a")]


def test_watch_field_selector_and_watch_path(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    rv = core.create_namespaced_config_map(ns, _cm("one")).metadata.resource_version
    core.create_namespaced_config_map(ns, _cm("two"))
    core.patch_namespaced_config_map("one", ns, {"data": {"v": "1"}})
    code, headers, raw = shared_sim.request(
        "GET", f"/api/v1/watch/namespaces/{ns}/configmaps?fieldSelector=metadata.name%3Done&resourceVersion={rv}"
               f"&timeoutSeconds=1")
    assert code == 200 and headers.get("Transfer-Encoding") == "chunked"
    lines = [json.loads(x) for x in raw.decode().splitlines() if x.strip()]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("MODIFIED", "one")]


def test_watch_too_old_resource_version_gets_410_error_event(kubesim_factory):
    sim = kubesim_factory(watch_history=3)
    core = client.CoreV1Api(sim.client())
    first = core.create_namespaced_config_map("default", _cm("x0")).metadata.resource_version
    for i in range(1, 10):
        core.create_namespaced_config_map("default", _cm(f"x{i}"))
    code, _, raw = sim.request("GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={first}"
                                      "&timeoutSeconds=2")
    lines = [json.loads(x) for x in raw.decode().splitlines() if x.strip()]
    assert code == 200 and len(lines) == 1 and lines[0]["type"] == "ERROR"
    status = lines[0]["object"]
    assert status["kind"] == "Status" and status["code"] == 410 and status["reason"] == "Expired"
    assert status["message"].startswith(f"too old resource version: {first} (")
    # the Python client surfaces it as an ApiException(410)
    from kubernetes.client.rest import ApiException
    try:
        list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=first,
                                  timeout_seconds=2))
        raise AssertionError("expected 410")
    except ApiException as e:
        assert e.status == 410
    # a recent version still works
    latest = core.list_namespaced_config_map("default").metadata.resource_version
    code, _, raw = sim.request("GET", f"/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={latest}"
                                      "&timeoutSeconds=1")
    assert code == 200 and raw.strip() == b""


def test_watch_rejects_malformed_resource_version(shared_sim, ns):
    code, _, raw = shared_sim.request("GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&resourceVersion=abc")
    assert code == 400 and json.loads(raw)["reason"] == "BadRequest"


def test_allow_watch_bookmarks_and_send_initial_events(shared_sim, ns):
    core = client.CoreV1Api(shared_sim.client())
    core.create_namespaced_config_map(ns, _cm("i1"))
    code, _, raw = shared_sim.request(
        "GET", f"/api/v1/namespaces/{ns}/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true"
               f"&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")
    lines = [json.loads(x) for x in raw.decode().splitlines() if x.strip()]
    assert lines[0]["type"] == "ADDED" and lines[0]["object"]["metadata"]["name"] == "i1"
    assert lines[1]["type"] == "BOOKMARK"
    assert lines[1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
