"""What a module's ``run(module)`` reads of the module base (module.MeshopsModule), for unit tests that call
run() directly."""
import functools

from ansible_collections.meshops.istio.plugins.module_utils.args import AUTH_ARG_SPEC


class ModuleStub:
    """params (every shared auth option unset, then the module's defaults, then the test's values),
    check mode, diff, and the client (a test double; None fails the test if the module asks for it)."""

    def __init__(self, params, defaults=None, check_mode=False, diff=False, client=None):
        self.params = dict((k, None) for k in AUTH_ARG_SPEC)
        self.params.update(defaults or {})
        self.params.update(params)
        self.check_mode = check_mode
        self.diff = diff
        self.result = {}
        self.warnings = []
        self._client = client

    @property
    def client(self):
        assert self._client is not None, 'touched the cluster'
        return self._client

    def warn(self, warning):
        self.warnings.append(warning)


def stub_for(defaults):
    """A ModuleStub factory with one module's option defaults: ``FakeModule({'revision': ...}, diff=True)``."""
    return functools.partial(ModuleStub, defaults=defaults)
