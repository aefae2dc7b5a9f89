"""What a module's ``run(module)`` reads of AnsibleModule, for unit tests that call run() directly."""
import functools

from ansible_collections.meshops.istio.plugins.module_utils.args import AUTH_ARG_SPEC


class ModuleStub:
    """params (every shared auth option unset, then the module's defaults, then the test's values),
    check mode and diff."""

    def __init__(self, params, defaults=None, check_mode=False, diff=False):
        self.params = dict((k, None) for k in AUTH_ARG_SPEC)
        self.params.update(defaults or {})
        self.params.update(params)
        self.check_mode = check_mode
        self._diff = diff


def stub_for(defaults):
    """A ModuleStub factory with one module's option defaults: ``FakeModule({'revision': ...}, diff=True)``."""
    return functools.partial(ModuleStub, defaults=defaults)
