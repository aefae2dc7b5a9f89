"""A real headless browser for the report's tests: Debian's chromium driven over the DevTools protocol.

``render(path, screenshot)`` opens a local HTML file in headless chromium with the network cut off
(``--remote-debugging-pipe``: the protocol's JSON messages over file descriptors 3 and 4, no websocket library
needed), records every console message, uncaught exception, log entry and network request of the page, and
saves a full-page PNG screenshot. ``make chromium`` installs the browser (the Makefile's integration target
depends on it).
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time


def chromium_path():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """What the page did while it loaded."""

    def __init__(self):
        self.console = []     # (type, text) of console API calls
        self.exceptions = []  # uncaught exceptions' text
        self.log = []         # (level, source, text) of the browser's log entries (failed loads, CSP, ...)
        self.requests = []    # URLs the page requested
        self.screenshot = None
        self.size = None

    @property
    def errors(self):
        """Everything a reader of the console would call an error."""
        out = ['console.%s: %s' % (kind, text) for kind, text in self.console if kind in ('error', 'assert')]
        out += ['exception: %s' % text for text in self.exceptions]
        out += ['%s (%s): %s' % (level, source, text) for level, source, text in self.log if level == 'error']
        return out


class Chromium:
    """One headless chromium, one tab, driven over --remote-debugging-pipe."""

    def __init__(self, timeout=60):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix='meshops-chromium-')
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()

        def child_fds():
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        cmd = [chromium_path(), '--headless=new', '--no-sandbox', '--disable-gpu', '--hide-scrollbars',
               '--no-first-run', '--no-default-browser-check', '--disable-extensions', '--mute-audio',
               # no network at all: a self-contained page needs none
               '--proxy-server=127.0.0.1:9', '--proxy-bypass-list=<-loopback>',
               '--user-data-dir=%s' % self.profile, '--remote-debugging-pipe', 'about:blank']
        self.proc = subprocess.Popen(cmd, preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.next_id = 0
        self.buffer = b''
        self.events = []
        self.lock = threading.Lock()

    def close(self):
        try:
            self.send('Browser.close')
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for fd in (self.to_browser, self.from_browser):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def _read_message(self, deadline):
        while b'\0' not in self.buffer:
            if time.monotonic() > deadline:
                raise TimeoutError('chromium did not answer in time')
            chunk = os.read(self.from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError('chromium closed the DevTools pipe (exit %s)' % self.proc.poll())
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b'\0', 1)
        return json.loads(message)

    def send(self, method, params=None, session=None):
        self.next_id += 1
        request = {'id': self.next_id, 'method': method, 'params': params or {}}
        if session:
            request['sessionId'] = session
        os.write(self.to_browser, json.dumps(request).encode() + b'\0')
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._read_message(deadline)
            if message.get('id') == self.next_id:
                if 'error' in message:
                    raise RuntimeError('%s failed: %s' % (method, message['error']))
                return message.get('result') or {}
            self.events.append(message)

    def wait_event(self, method, deadline):
        while True:
            for index, event in enumerate(self.events):
                if event.get('method') == method:
                    return self.events.pop(index)
            self.events.append(self._read_message(deadline))


def render(path, screenshot, width=1200, timeout=60):
    """Open ``path`` (a local HTML file); return a Page with what it did, its screenshot saved to ``screenshot``."""
    browser = Chromium(timeout)
    page = Page()
    try:
        target = browser.send('Target.createTarget', {'url': 'about:blank'})['targetId']
        session = browser.send('Target.attachToTarget', {'targetId': target, 'flatten': True})['sessionId']
        for domain in ('Page', 'Runtime', 'Log', 'Network'):
            browser.send(domain + '.enable', session=session)
        browser.send('Emulation.setDeviceMetricsOverride', {'width': width, 'height': 900, 'deviceScaleFactor': 1,
                                                            'mobile': False}, session=session)
        browser.events = []
        url = 'file://' + os.path.abspath(path)
        browser.send('Page.navigate', {'url': url}, session=session)
        browser.wait_event('Page.loadEventFired', time.monotonic() + timeout)
        # a moment for anything the page would still do after load (it should do nothing)
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            browser.send('Runtime.evaluate', {'expression': '1'}, session=session)
            time.sleep(0.2)
        metrics = browser.send('Page.getLayoutMetrics', session=session)
        content = metrics.get('cssContentSize') or metrics.get('contentSize')
        page.size = (int(content['width']), int(content['height']))
        shot = browser.send('Page.captureScreenshot', {
            'format': 'png', 'captureBeyondViewport': True,
            'clip': {'x': 0, 'y': 0, 'width': max(width, page.size[0]), 'height': page.size[1], 'scale': 1}},
            session=session)
        page.screenshot = base64.b64decode(shot['data'])
        with open(screenshot, 'wb') as handle:
            handle.write(page.screenshot)
        for event in browser.events:
            method, params = event.get('method'), event.get('params') or {}
            if method == 'Runtime.consoleAPICalled':
                text = ' '.join(str(a.get('value', a.get('description', ''))) for a in params.get('args') or [])
                page.console.append((params.get('type'), text))
            elif method == 'Runtime.exceptionThrown':
                details = params.get('exceptionDetails') or {}
                page.exceptions.append((details.get('exception') or {}).get('description') or details.get('text'))
            elif method == 'Log.entryAdded':
                entry = params.get('entry') or {}
                page.log.append((entry.get('level'), entry.get('source'), entry.get('text')))
            elif method == 'Network.requestWillBeSent':
                page.requests.append((params.get('request') or {}).get('url'))
    finally:
        browser.close()
    return page
