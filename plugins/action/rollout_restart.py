# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of meshops.istio.rollout_restart: prints the rollout's live progress while the module runs.

The module does the work and returns once, at the end.  With ``progress`` set it publishes its progress
(module_utils/progress.py): into a ConfigMap, and -- when this plugin gives it ``progress.local_file`` -- into a
file on the controller, rewritten every second.  This plugin runs the module as usual and, meanwhile, reads that
file once a second from a thread of the worker process and prints its lines with ``Display.display``.  A
worker's display is sent to the controller's main process, which prints it at once: in ansible-playbook's
output, and under AWX (ansible-runner's awx_display callback wraps ``Display.display``) as job events of the job
output.  Which lines to print is decided in module_utils/progress.py (ProgressFollower), not here.

Reading a local file costs the worker no Kubernetes client (importing it cost 0.16-0.26 s of CPU per task, see
docs/benchmarks.md) and the cluster no request.  Under ``become`` the module may run as a user who cannot write where
the controller's user reads, so there the plugin reads the ConfigMap instead, through the collection's client.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid

from ansible import constants as C
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display
from ansible.utils.vars import merge_hash

from ansible_collections.meshops.istio.plugins.module_utils.args import AUTH_ARG_SPEC
from ansible_collections.meshops.istio.plugins.module_utils.progress import (
    PROGRESS_CONFIGMAP,
    ProgressFollower,
    read_progress,
    read_progress_file,
)

display = Display()
POLL_SECONDS = 1.0


class FileSource:
    """The progress entry the module keeps in a file of a private directory on the controller.

    The directory lives in Ansible's temporary directory of this run (``C.DEFAULT_LOCAL_TMP``, created by the
    controller's main process and removed by it when it exits): a worker killed mid-task (Ctrl-C, a cancelled
    AWX job) ends with ``os._exit`` and cannot remove its own files, but the main process then removes them."""

    def __init__(self, parent=None):
        self.directory = tempfile.mkdtemp(prefix='meshops-progress-', dir=parent or C.DEFAULT_LOCAL_TMP)
        self.path = os.path.join(self.directory, 'progress.json')

    def read(self):
        return read_progress_file(self.path)

    def close(self):
        shutil.rmtree(self.directory, ignore_errors=True)


class ConfigMapSource:
    """The progress key on the cluster, read with the task's cluster options (used under become)."""

    def __init__(self, args, configmap, namespace, label):
        self.args = args
        self.configmap = configmap
        self.namespace = namespace
        self.label = label
        self.client = None
        self.problem = None

    def read(self):
        if self.problem is not None:
            return None
        try:
            if self.client is None:
                # built here, not before the module starts: importing the kubernetes client takes a while
                self.client = cluster_client(self.args)
            return read_progress(self.client, self.configmap, self.namespace).get(self.label)
        except Exception as exc:  # pylint: disable=broad-except
            # the module may still be fine: a read that fails only costs its line
            if self.client is None:
                self.problem = str(exc)
                display.warning('rollout_restart: no live progress (%s); the rollout runs all the same' % exc)
            return None

    def close(self):
        """Close the client and remove the credential files the kubernetes library wrote for it."""
        try:
            if self.client is not None:
                self.client.close()
        except Exception:  # pylint: disable=broad-except
            pass
        forget_credential_files()


class ProgressPrinter(threading.Thread):
    """Reads the progress of this run every second and displays what ProgressFollower says."""

    def __init__(self, source, follower):
        super(ProgressPrinter, self).__init__(name='meshops-progress-printer')
        self.daemon = True
        self.source = source
        self.follower = follower
        self.stop = threading.Event()
        self.printing = threading.Lock()
        self.halted = False

    def poll(self):
        for line in self.follower.poll(self.source.read(), time.monotonic()):
            with self.printing:
                if self.halted:
                    return
                display.display(line)

    def halt(self):
        """Print nothing more, and return once no line is half handed to the controller.

        Called from the worker's signal handler just before Ansible's own handler ends the process with
        os._exit: a line is handed over through the queue to the controller's main process under a lock shared
        by both processes, and a worker that died holding it would leave ansible-playbook waiting for it forever.
        """
        acquired = self.printing.acquire(timeout=2)
        self.halted = True
        self.stop.set()
        if acquired:
            self.printing.release()

    def run(self):
        # Ctrl-C and AWX's cancel reach the worker as process-directed signals (forwarded by ansible-playbook).
        # The kernel may hand one to any thread that does not block it; taken by this thread, it would never
        # wake the worker's main thread, which waits on the module's output without a timeout, so the worker and
        # the module would run the wave to its end despite the interrupt. Blocked here, they go to the main thread.
        if hasattr(signal, 'pthread_sigmask'):
            signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM))
        try:
            while not self.stop.wait(POLL_SECONDS):
                self.poll()
            self.poll()  # the closing line the module wrote before it returned
        finally:
            self.source.close()

    def finish(self):
        self.stop.set()
        self.join(POLL_SECONDS * 30)
        if self.is_alive():
            # an API that does not answer: the task's result goes on without the closing line
            forget_credential_files()


def halt_printer_on_signals(printer):
    """Until the returned handlers are restored, SIGINT and SIGTERM (Ctrl-C, AWX's cancel, forwarded to the worker
    by ansible-playbook) halt the printer before the worker's own handler ends the process (see
    ProgressPrinter.halt). Returns {signal: previous handler}."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if not callable(handler):
            continue  # SIG_DFL / SIG_IGN: nothing of Ansible's runs in this process on that signal

        def halt_then(number, frame, handler=handler):
            printer.halt()
            handler(number, frame)
        try:
            signal.signal(signum, halt_then)
        except ValueError:  # not the main thread: leave the signals alone
            break
        previous[signum] = handler
    return previous


def forget_credential_files():
    """The kubernetes library writes a kubeconfig's inline client certificate and key (and CA) to temporary
    files that it removes only at interpreter exit; an Ansible worker process ends with os._exit, so they would
    stay behind. Remove them now (this worker read only this task's kubeconfig)."""
    kube_config = sys.modules.get('kubernetes.config.kube_config')
    cleanup = getattr(kube_config, '_cleanup_temp_files', None)
    if cleanup is not None:
        try:
            cleanup()
        except Exception:  # pylint: disable=broad-except
            pass


def cluster_client(args):
    """A ClusterClient from the task's cluster options (module_defaults included), with the module's fallbacks."""
    from ansible_collections.meshops.istio.plugins.module_utils.client import HAS_KUBERNETES, ClusterClient
    if not HAS_KUBERNETES:
        raise RuntimeError('the kubernetes Python library is not installed on the controller')
    auth = dict((key, value) for key, value in args.items() if key in AUTH_ARG_SPEC)
    validated = ArgumentSpecValidator(AUTH_ARG_SPEC).validate(auth)
    if validated.error_messages:
        raise RuntimeError('; '.join(validated.error_messages))
    return ClusterClient.from_params(validated.validated_parameters)


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def _printer(self, args, task_vars):
        """A started ProgressPrinter for this run (and the module args naming the run), or None."""
        progress = args.get('progress')
        if not isinstance(progress, dict) or not progress.get('label') or self._task.check_mode or \
                self._task.async_val or getattr(self._connection, 'transport', None) != 'local':
            return None
        try:
            interval = int(progress.get('interval') or 10)
        except (TypeError, ValueError):
            return None  # the module says what is wrong with it
        run_id = uuid.uuid4().hex
        source = None
        if not self._play_context.become:
            try:
                source = FileSource()
                args['progress'] = dict(progress, run_id=run_id, local_file=source.path)
            except OSError:
                source = None  # no temporary directory: read the cluster instead
        if source is None:
            source = ConfigMapSource(dict(args), progress.get('configmap') or PROGRESS_CONFIGMAP,
                                     progress.get('namespace') or 'istio-system', progress['label'])
            args['progress'] = dict(progress, run_id=run_id)
        printer = ProgressPrinter(source, ProgressFollower(run_id, max(1, interval),
                                                           host=task_vars.get('inventory_hostname')))
        printer.start()
        return printer

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        task_vars = task_vars or {}
        wrap_async = self._task.async_val and not self._connection.has_native_async
        args = dict(self._task.args)
        printer = self._printer(args, task_vars)
        handlers = halt_printer_on_signals(printer) if printer is not None else {}
        try:
            result = merge_hash(result, self._execute_module(module_args=args, task_vars=task_vars,
                                                             wrap_async=wrap_async))
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)
            if printer is not None:
                printer.finish()
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)
        return result
