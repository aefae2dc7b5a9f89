# -*- coding: utf-8 -*-
# Test harness (not shipped): writes each task's complete result (diff and invocation included) as one
# JSON line to the file named by $MESHOPS_MODULE_RESULT, so tests/integration/helpers.run_module reads
# what the module really returned through Ansible instead of parsing screen output.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: module_result
type: aggregate
short_description: complete task results as JSON lines (test harness)
description:
  - Appends one JSON object per task result to the file named by MESHOPS_MODULE_RESULT.
"""

import json
import os

from ansible.plugins.callback import CallbackBase


def _plain(value, depth=0):
    if depth > 20:
        return str(value)
    if isinstance(value, dict):
        return dict((str(k), _plain(v, depth + 1)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "module_result"
    CALLBACK_NEEDS_ENABLED = True

    def _write(self, result, status):
        path = os.environ.get("MESHOPS_MODULE_RESULT")
        if not path:
            return
        record = _plain(dict(result._result))
        record["_status"] = status
        record["_task"] = str(result._task.get_name())
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def v2_runner_on_ok(self, result):
        self._write(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._write(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._write(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._write(result, "unreachable")
