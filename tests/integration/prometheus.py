"""A real Prometheus server for the metric-gate tests (Debian's ``prometheus`` binary, see ``make prometheus``).

``PrometheusServer`` writes a temporary config that scrapes the given targets every second, starts
Prometheus on a free loopback port with a temporary TSDB, waits until it is ready, and stops it (SIGTERM,
then SIGKILL) and removes its files.  Nothing here answers a query itself: the tests query Prometheus.

    with PrometheusServer.for_kubesim(kubesim_url, kubeconfig=path) as prom:
        prom.wait_for_scrape()          # every target scraped at least once, up == 1
        prom.url                         # http://127.0.0.1:PORT
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

METRICS_PATH = '/kubesim/metrics'


def prometheus_binary():
    """Path of the prometheus binary, or None (``make prometheus`` installs Debian's package)."""
    found = shutil.which('prometheus')
    if found:
        return found
    for candidate in ('/usr/bin/prometheus', '/usr/local/bin/prometheus'):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port():
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def kubeconfig_ca(kubeconfig_path, directory):
    """Write the cluster CA of the kubeconfig's current context to ``directory``; return its path or None."""
    with open(kubeconfig_path) as handle:
        config = yaml.safe_load(handle) or {}
    current = config.get('current-context')
    cluster_name = None
    for ctx in config.get('contexts') or []:
        if ctx.get('name') == current:
            cluster_name = (ctx.get('context') or {}).get('cluster')
    for cluster in config.get('clusters') or []:
        if cluster_name is None or cluster.get('name') == cluster_name:
            data = cluster.get('cluster') or {}
            if data.get('certificate-authority-data'):
                path = os.path.join(directory, 'ca.crt')
                with open(path, 'wb') as out:
                    out.write(base64.b64decode(data['certificate-authority-data']))
                return path
            if data.get('certificate-authority'):
                return data['certificate-authority']
    return None


class PrometheusServer:
    """A Prometheus process with its own config and TSDB in a temporary directory."""

    def __init__(self, targets, scrape_interval='1s', binary=None):
        """``targets``: list of dicts ``{url, metrics_path, ca_file, insecure, job}`` (url = scheme://host:port)."""
        self.targets = list(targets)
        self.scrape_interval = scrape_interval
        self.binary = binary or prometheus_binary()
        self.workdir = None
        self.process = None
        self.port = None
        self.log_path = None
        self._log = None

    @classmethod
    def for_kubesim(cls, kubesim_url, kubeconfig=None, insecure=False, **kwargs):
        server = cls([], **kwargs)
        server._kubesim = (kubesim_url, kubeconfig, insecure)
        return server

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    # -- lifecycle --------------------------------------------------------------------------------

    def config(self):
        jobs = []
        for index, target in enumerate(self.targets):
            parts = urllib.parse.urlsplit(target['url'])
            job = {
                'job_name': target.get('job') or 'target-%d' % index,
                'scrape_interval': self.scrape_interval,
                'scrape_timeout': self.scrape_interval,
                'metrics_path': target.get('metrics_path') or METRICS_PATH,
                'scheme': parts.scheme,
                'static_configs': [{'targets': [parts.netloc]}],
            }
            if parts.scheme == 'https':
                tls = {}
                if target.get('ca_file') and not target.get('insecure'):
                    tls['ca_file'] = target['ca_file']
                else:
                    tls['insecure_skip_verify'] = True
                job['tls_config'] = tls
            jobs.append(job)
        return {'global': {'scrape_interval': self.scrape_interval, 'evaluation_interval': self.scrape_interval},
                'scrape_configs': jobs}

    def start(self, timeout=60):
        if not self.binary:
            raise RuntimeError('prometheus is not installed: run `make prometheus` (Debian package prometheus)')
        self.workdir = tempfile.mkdtemp(prefix='meshops-prometheus-')
        if getattr(self, '_kubesim', None):
            url, kubeconfig, insecure = self._kubesim
            ca_file = kubeconfig_ca(kubeconfig, self.workdir) if kubeconfig and not insecure else None
            self.targets = [{'url': url, 'metrics_path': METRICS_PATH, 'ca_file': ca_file,
                             'insecure': insecure or not ca_file, 'job': 'kubesim'}]
        config_path = os.path.join(self.workdir, 'prometheus.yml')
        with open(config_path, 'w') as handle:
            yaml.safe_dump(self.config(), handle)
        self.log_path = os.path.join(self.workdir, 'prometheus.log')
        self._log = open(self.log_path, 'wb')
        last_error = None
        for _attempt in range(3):  # a free port can be taken between the check and the bind
            self.port = free_port()
            self.process = subprocess.Popen(
                [self.binary, '--config.file=%s' % config_path,
                 '--storage.tsdb.path=%s' % os.path.join(self.workdir, 'data'),
                 '--storage.tsdb.retention.time=1h',
                 '--web.listen-address=127.0.0.1:%d' % self.port,
                 '--log.level=warn'],
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError as error:
                last_error = error
                self._terminate()
        self.stop()
        raise last_error

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError('prometheus exited with %s: %s' % (self.process.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url + '/-/ready', timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError('prometheus did not become ready in %ss: %s' % (timeout, self.log_tail()))

    def log_tail(self, limit=2000):
        try:
            with open(self.log_path, 'rb') as handle:
                return handle.read()[-limit:].decode('utf-8', 'replace')
        except (OSError, TypeError):
            return ''

    def _terminate(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def stop(self):
        """Stop Prometheus (idempotent) and remove its files."""
        self._terminate()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def pause(self):
        """Stop the process only (keep the files), to test what a gate does with Prometheus gone."""
        self._terminate()

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- reading it (test helpers, through its HTTP API) -----------------------------------------

    def api(self, path, **params):
        url = self.url + path + ('?' + urllib.parse.urlencode(params) if params else '')
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read().decode())

    def query(self, promql):
        """The instant-query result list of ``promql``."""
        return self.api('/api/v1/query', query=promql)['data']['result']

    def wait_for(self, promql, predicate=bool, timeout=60, interval=0.5):
        """Poll ``promql`` until ``predicate(result)`` holds; return the result (or raise with the last one)."""
        deadline = time.monotonic() + timeout
        result = None
        while time.monotonic() < deadline:
            result = self.query(promql)
            if predicate(result):
                return result
            time.sleep(interval)
        raise AssertionError('prometheus: %s did not satisfy the condition in %ss (last: %r; targets: %r)' % (
            promql, timeout, result, self.target_health()))

    def target_health(self):
        try:
            active = self.api('/api/v1/targets')['data']['activeTargets']
        except Exception as error:  # pragma: no cover - diagnostics only
            return repr(error)
        return [{'url': t.get('scrapeUrl'), 'health': t.get('health'), 'error': t.get('lastError')} for t in active]

    def wait_for_scrape(self, timeout=60):
        """Every target scraped successfully at least once."""
        expected = len(self.targets)
        return self.wait_for('up == 1', lambda r: len(r) >= expected, timeout=timeout)
