"""istio_upgrade_state: the record model (module_utils/upgrade_state.py) and the module's run() against an
in-memory ConfigMap store that behaves like the API for the four calls it makes (get, create, conditional
replace with 409 on a stale resourceVersion, delete)."""
import copy

import pytest

from ansible_collections.meshops.istio.plugins.module_utils import upgrade_state as us
from ansible_collections.meshops.istio.plugins.module_utils.client import ReadModifyWrite
from ansible_collections.meshops.istio.plugins.module_utils.errors import AlreadyExists, Conflict
from ansible_collections.meshops.istio.plugins.modules import istio_upgrade_state as state_mod
from ansible_collections.meshops.istio.plugins.modules import istio_upgrade_state_info as info_mod

from module_stub import ModuleStub

T1 = "2026-11-22T00:00:01Z"
T2 = "2026-11-22T00:05:00Z"


class Store(ReadModifyWrite):
    """ConfigMaps by (namespace, name); replace is conditional on metadata.resourceVersion (update_with_retry
    is ClusterClient's own, the ReadModifyWrite mixin)."""

    def __init__(self):
        self.objects = {}
        self.rv = 0
        self.writes = 0
        self.interfere = None  # callable run once before the next replace (a concurrent writer)

    def get_or_none(self, kind, name, namespace=None, api_version=None):
        assert kind == "ConfigMap"
        obj = self.objects.get((namespace, name))
        return copy.deepcopy(obj)

    def _bump(self, obj):
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)

    def create(self, kind, obj, namespace=None, dry_run=False):
        key = (namespace, obj["metadata"]["name"])
        if key in self.objects:
            raise AlreadyExists("exists")
        obj = copy.deepcopy(obj)
        self._bump(obj)
        self.objects[key] = obj
        self.writes += 1
        return obj

    def replace(self, kind, obj, namespace=None, dry_run=False):
        if self.interfere:
            hook, self.interfere = self.interfere, None
            hook()
        key = (namespace, obj["metadata"]["name"])
        current = self.objects[key]
        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict("conflict", status=409)
        obj = copy.deepcopy(obj)
        self._bump(obj)
        self.objects[key] = obj
        self.writes += 1
        return obj

    def delete(self, kind, name, namespace=None, dry_run=False, api_version=None, resource_version=None):
        self.writes += 1
        return self.objects.pop((namespace, name), None) is not None


def params(**kw):
    base = dict(state="present", name="meshops-istio-upgrade", istio_namespace="istio-system", tag=None,
                from_revision=None, from_version=None, to_revision=None, to_version=None, phase=None,
                wave=None, forget_phases=[], forget_waves=False)
    base.update(kw)
    return base


def data(store):
    return store.objects[("istio-system", "meshops-istio-upgrade")]["data"]


# --- the model -------------------------------------------------------------------------------------

def test_render_parse_round_trip():
    fields = dict(tag="default", from_revision="1-14-6", from_version="1.14.6", to_revision="1-15-4", to_version="1.15.4")
    record = us.merge(us.empty_record(), fields=fields, phase="precheck", now=T1)
    record = us.merge(record, wave=dict(name="wave2", namespaces=["foo", "baz"], workloads=["foo/Deployment/foo"],
                                        status="started"), now=T2)
    rendered = us.render(record)
    assert rendered == {
        "tag": "default", "from_revision": "1-14-6", "from_version": "1.14.6", "to_revision": "1-15-4",
        "to_version": "1.15.4", "phase.precheck": T1, "wave.wave2.namespaces": "baz,foo",
        "wave.wave2.workloads": "foo/Deployment/foo", "wave.wave2.started": T2,
    }
    assert us.parse(rendered) == record


def test_phase_keeps_first_time_and_wave_lists_merge():
    record = us.merge(us.empty_record(), phase="install", now=T1)
    again = us.merge(record, phase="install", now=T2)
    assert again["phases"] == {"install": T1}
    wave = us.merge(record, wave=dict(name="w", namespaces=["bar"], status="started"), now=T1)
    wave = us.merge(wave, wave=dict(name="w", namespaces=["bar", "qux"], workloads=["bar/Deployment/bar"], status="done"), now=T2)
    assert wave["waves"]["w"] == {"namespaces": ["bar", "qux"], "workloads": ["bar/Deployment/bar"], "started": T1, "done": T2}


def test_new_target_starts_a_new_record():
    record = us.merge(us.empty_record(), fields=dict(from_revision="1-14-6", to_revision="1-15-4"), phase="cleanup", now=T1)
    new = us.merge(record, fields=dict(from_revision="1-15-4", to_revision="1-16-0"), phase="precheck", now=T2)
    assert new["phases"] == {"precheck": T2}
    assert new["from_revision"] == "1-15-4" and new["to_revision"] == "1-16-0"


def test_forget_after_rollback():
    record = us.merge(us.empty_record(), phase="tag", now=T1)
    record = us.merge(record, phase="gateways", wave=dict(name="wave1", namespaces=["bar"]), now=T1)
    back = us.merge(record, phase="rollback", forget_phases=["tag", "gateways"], forget_waves=True, now=T2)
    assert back["phases"] == {"rollback": T2} and back["waves"] == {}


@pytest.mark.parametrize("bad", ["wave.1", "", "a b", "x" * 64])
def test_names_that_cannot_be_keys_are_refused(bad):
    with pytest.raises(us.UpgradeStateError):
        us.merge(us.empty_record(), wave=dict(name=bad))
    if bad:  # an empty phase means "no phase"
        with pytest.raises(us.UpgradeStateError):
            us.merge(us.empty_record(), phase=bad)


def test_unknown_keys_are_ignored_when_reading():
    record = us.parse({"to_revision": "1-15-4", "wave.a.colour": "red", "something": "else", "phase.tag": T1})
    assert record["to_revision"] == "1-15-4" and record["waves"] == {} and record["phases"] == {"tag": T1}


def test_public_lists_moved_namespaces():
    record = us.merge(us.empty_record(), wave=dict(name="wave1", namespaces=["bar"], status="done"), now=T1)
    record = us.merge(record, wave=dict(name="wave2", namespaces=["foo"], status="started"), now=T1)
    out = us.public(record, True, "n", "ns")
    assert out["waves_done"] == ["wave1"] and out["waves_started"] == ["wave1", "wave2"]
    assert out["moved_namespaces"] == ["bar", "foo"]


# --- the module against the store ------------------------------------------------------------------

class Modules:
    """run(params, store, check_mode=False, diff=False) as the module base calls it."""

    def __init__(self, module):
        self.module = module
        self.last = None

    def run(self, params, store, check_mode=False, diff=False):
        self.last = ModuleStub(params, check_mode=check_mode, diff=diff, client=store)
        return self.module.run(self.last)


mod = Modules(state_mod)


def test_create_then_idempotent():
    store = Store()
    first = mod.run(params(to_revision="1-15-4", to_version="1.15.4", phase="precheck"), store, diff=True)
    assert first["changed"] and store.writes == 1
    assert data(store)["to_revision"] == "1-15-4" and "phase.precheck" in data(store)
    assert first["diff"]["before"] == {} and first["diff"]["after"] == data(store)
    second = mod.run(params(to_revision="1-15-4", to_version="1.15.4", phase="precheck"), store)
    assert not second["changed"] and store.writes == 1
    labels = store.objects[("istio-system", "meshops-istio-upgrade")]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "meshops.istio"


def test_check_mode_never_writes():
    store = Store()
    result = mod.run(params(to_revision="1-15-4", phase="precheck"), store, check_mode=True, diff=True)
    assert result["changed"] and store.writes == 0 and not store.objects
    assert result["upgrade"]["exists"] is False and result["upgrade"]["phases"].keys() == {"precheck"}
    mod.run(params(to_revision="1-15-4"), store)
    before = copy.deepcopy(store.objects)
    result = mod.run(params(phase="tag"), store, check_mode=True)
    assert result["changed"] and store.objects == before


def test_info_reads_and_never_changes():
    store = Store()
    info = Modules(info_mod)
    assert info.run(params(), store)["upgrade"]["exists"] is False
    mod.run(params(from_revision="1-14-6", to_revision="1-15-4", wave=dict(name="wave1", namespaces=["bar"], workloads=[], status="done")), store)
    writes = store.writes
    out = info.run(params(phase="ignored"), store)
    assert not out["changed"] and store.writes == writes
    assert out["upgrade"]["from_revision"] == "1-14-6" and out["upgrade"]["waves_done"] == ["wave1"]


def test_conflict_is_merged_not_clobbered():
    store = Store()
    mod.run(params(to_revision="1-15-4", phase="precheck"), store)

    def concurrent_writer():
        key = ("istio-system", "meshops-istio-upgrade")
        obj = copy.deepcopy(store.objects[key])
        obj["data"]["phase.install"] = T1
        store._bump(obj)
        store.objects[key] = obj

    store.interfere = concurrent_writer
    result = mod.run(params(phase="tag"), store)
    assert result["changed"]
    assert set(k for k in data(store) if k.startswith("phase.")) == {"phase.precheck", "phase.install", "phase.tag"}


def test_absent_deletes_once():
    store = Store()
    mod.run(params(to_revision="1-15-4"), store)
    assert mod.run(params(state="absent"), store, diff=True)["changed"]
    assert not store.objects
    assert not mod.run(params(state="absent"), store)["changed"]


# --- a rollback under way (recorded before it moves the tag back; the record stays true if it stops) ----------

UPGRADED = dict(tag="default", from_revision="1-14-6", from_version="1.14.6", to_revision="1-15-4", to_version="1.15.4")


def _upgraded():
    record = us.merge(us.empty_record(), fields=UPGRADED, phase="tag", now=T1)
    return us.merge(record, wave=dict(name="wave1", namespaces=["bar"], workloads=["bar/Deployment/bar"]), now=T1)


def test_a_rollback_start_is_kept_until_the_rollback_is_recorded_done():
    started = us.merge(_upgraded(), rollback=dict(revision="1-14-6", namespaces=["bar", "istio-ingress"]), now=T1)
    data_ = us.render(started)
    assert data_["rollback.started"] == T1 and data_["rollback.revision"] == "1-14-6"
    assert data_["rollback.namespaces"] == "bar,istio-ingress"
    assert us.parse(data_)["rollback"] == {"started": T1, "revision": "1-14-6", "namespaces": ["bar", "istio-ingress"]}
    assert all(us.owned_key(k) for k in data_)
    # under way: the upgrade is not over, and messages say so
    assert us.rollback_under_way(started) and us.in_progress(started) and not us.finished(started)
    assert "a rollback to 1-14-6 under way since %s" % T1 in us.progress_text(started)
    assert us.public(started, True, "n", "ns")["rollback_under_way"] is True
    # a re-run records it again: the first start time is kept, namespaces merged
    again = us.merge(started, rollback=dict(revision="1-14-6", namespaces=["foo"]), now=T2)
    assert again["rollback"] == {"started": T1, "revision": "1-14-6", "namespaces": ["bar", "foo", "istio-ingress"]}
    # recorded done: the marker goes with what the rollback undid
    done = us.merge(again, phase="rollback", forget_phases=["tag", "gateways", "verify"], forget_waves=True, now=T2)
    assert done["rollback"] is None and not any(k.startswith("rollback.") for k in us.render(done))
    assert us.finished(done) and not us.in_progress(done)
    assert us.public(done, True, "n", "ns")["rollback_under_way"] is False


def test_a_rollback_start_without_its_revision_is_refused():
    for bad in (dict(namespaces=["bar"]), dict(revision="1.14.6"), dict(revision="1-14-6", namespaces=["a,b"])):
        with pytest.raises(us.UpgradeStateError):
            us.merge(_upgraded(), rollback=bad)


def test_module_records_the_rollback_start_once_and_its_end_removes_it():
    store = Store()
    mod.run(params(**dict(UPGRADED, phase="tag")), store)
    start = params(to_revision="1-15-4", rollback=dict(revision="1-14-6", namespaces=["bar"]))
    # check mode: nothing written
    before = copy.deepcopy(store.objects)
    result = mod.run(start, store, check_mode=True, diff=True)
    assert result["changed"] and store.objects == before
    assert result["diff"]["after"]["rollback.revision"] == "1-14-6" and "rollback.revision" not in result["diff"]["before"]
    first = mod.run(start, store)
    assert first["changed"] and first["upgrade"]["rollback_under_way"]
    assert data(store)["rollback.revision"] == "1-14-6" and data(store)["rollback.namespaces"] == "bar"
    assert "phase.tag" in data(store)  # what was done stays recorded until the rollback is
    writes = store.writes
    assert not mod.run(start, store)["changed"] and store.writes == writes
    # the info module shows it
    assert Modules(info_mod).run(params(), store)["upgrade"]["rollback"]["revision"] == "1-14-6"
    end = mod.run(params(to_revision="1-15-4", phase="rollback", forget_phases=["tag", "gateways", "verify"],
                         forget_waves=True), store)
    assert end["changed"] and not end["upgrade"]["rollback_under_way"]
    assert not [k for k in data(store) if k.startswith("rollback.") or k == "phase.tag"]
