# -*- coding: utf-8 -*-
# Test harness (not shipped): writes every task result of a playbook run as one JSON line to the file
# named by $MESHOPS_EVENT_LOG, so tests and the demo read results without parsing the screen output.
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: event_log
type: aggregate
short_description: JSON lines of task results (test harness)
description:
  - Appends one JSON object per task result and one for the final stats to the file named by MESHOPS_EVENT_LOG.
"""

import json
import os

from ansible.plugins.callback import CallbackBase

KEEP = ("msg", "changed", "failed", "skipped", "skip_reason", "workloads", "summary", "upgrade", "previous_revision",
        "revision", "results", "assertion", "rc", "stdout", "stderr", "diff", "namespace", "previous_labels", "error",
        "plan", "istioctl", "precheck", "changes")


def _plain(value, depth=0):
    if depth > 8:
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
    CALLBACK_NAME = "event_log"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super(CallbackModule, self).__init__()
        self._path = os.environ.get("MESHOPS_EVENT_LOG")

    def _write(self, record):
        if not self._path:
            return
        with open(self._path, "a") as handle:
            handle.write(json.dumps(_plain(record), default=str) + "\n")

    def _result(self, status, result):
        data = result._result
        record = {
            "event": "task",
            "status": status,
            "host": result._host.get_name(),
            "task": result._task.get_name(),
            "action": result._task.action,
        }
        for key in KEEP:
            if key in data:
                record[key] = data[key]
        item = data.get("_ansible_item_label", data.get("item"))
        if item is not None:
            record["item"] = item
        self._write(record)

    def v2_runner_on_ok(self, result):
        self._result("ok", result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._result("ignored" if ignore_errors else "failed", result)

    def v2_runner_on_skipped(self, result):
        self._result("skipped", result)

    def v2_runner_on_unreachable(self, result):
        self._result("unreachable", result)

    def v2_runner_item_on_ok(self, result):
        self._result("item_ok", result)

    def v2_runner_item_on_failed(self, result):
        self._result("item_failed", result)

    def v2_playbook_on_stats(self, stats):
        hosts = sorted(stats.processed.keys())
        self._write({"event": "stats", "hosts": dict((h, stats.summarize(h)) for h in hosts)})
