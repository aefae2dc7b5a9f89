"""Secrets (issue 5): the bearer token, client key and kubeconfig contents never show up in Ansible's
output, results or log file, even at -vvv, whether auth comes as a kubeconfig path, a kubeconfig dict or
host + api_key -- on success and on failure -- and no copy of them is left behind in temporary files.

The kubeconfig used here carries, besides kubesim's token, a client certificate and key (generated for
the test; the simulated server does not ask for client certificates, so they ride along harmlessly) so
that key material is checked too.
"""

import base64
import datetime
import os
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import reliability_support as rs  # noqa: E402


def _client_cert_and_key():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshops-secrets-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _secret_strings(sim, key_pem):
    """Strings that must never appear anywhere: the token, the key (base64 as in the kubeconfig, and
    the PEM body lines), and the kubeconfig's base64 key data."""
    out = {sim.token}
    key_b64 = base64.b64encode(key_pem).decode()
    out.add(key_b64[:40])
    out.add(key_b64[-40:])
    for line in key_pem.decode().splitlines():
        if line and not line.startswith("-----") and len(line) >= 16:
            out.add(line)
    return out


def _leaks(text, secrets):
    return sorted(s[:8] + "..." for s in secrets if s and s in text)


def _scan_dir(path, secrets):
    found = []
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            try:
                with open(p, "rb") as fh:
                    data = fh.read().decode(errors="replace")
            except OSError:
                continue
            if _leaks(data, secrets):
                found.append(p)
    return found


def test_no_credentials_in_output_results_or_logs_at_vvv(tmp_path):
    sim = rs.Sim(tmp_path, scenario="blog")
    try:
        assert sim.token and len(sim.token) >= 16, "kubesim's kubeconfig must carry a bearer token"
        cert_pem, key_pem = _client_cert_and_key()
        cfg = rs.deep_copy(sim.kubeconfig_data)
        for u in cfg["users"]:
            u["user"]["client-certificate-data"] = base64.b64encode(cert_pem).decode()
            u["user"]["client-key-data"] = base64.b64encode(key_pem).decode()
        kc_path = tmp_path / "kubeconfig-with-key.yaml"
        kc_path.write_text(yaml.safe_dump(cfg))
        ca_path = tmp_path / "ca.pem"
        ca_path.write_bytes(base64.b64decode(sim.ca_data))
        secrets = _secret_strings(sim, key_pem)
        assert _leaks("x%sy" % sim.token, secrets) and _leaks(base64.b64encode(key_pem).decode(), secrets)

        scratch = tmp_path / "scratch"
        scratch.mkdir()
        log_path = tmp_path / "ansible.log"
        env = {"ANSIBLE_LOG_PATH": str(log_path), "TMPDIR": str(scratch),
               "ANSIBLE_LOCAL_TEMP": str(scratch / "local"), "ANSIBLE_REMOTE_TEMP": str(scratch / "remote"),
               "ANSIBLE_KEEP_REMOTE_FILES": "0"}
        outputs = []

        def check(label, text):
            leaked = _leaks(text, secrets)
            assert not leaked, "%s: credentials in output: %s" % (label, leaked)
            outputs.append(text)

        # 1. the playbook, kubeconfig as a path: install (istioctl gets the kubeconfig), move the tag, restart
        res = rs.run_playbook(tmp_path, "install,tag,gateways", rs.upgrade_vars(sim, kubeconfig=str(kc_path)),
                              verbosity=3, env=env)
        assert res.rc == 0, res
        check("playbook (kubeconfig path)", res.output)

        # 2. the playbook with the kubeconfig given as a dict (its contents in a variable), failing: cleanup
        #    refuses while foo, bar and baz still run 1.14.6
        res = rs.run_playbook(tmp_path, "cleanup", rs.upgrade_vars(sim, kubeconfig=cfg), verbosity=3, env=env)
        assert res.rc != 0 and "in use" in res.output, res
        check("playbook failure (kubeconfig dict)", res.output)

        # 3. modules with host + api_key (success and 404 failure), and with a kubeconfig dict
        auth = {"host": sim.server, "api_key": sim.token, "ca_cert": str(ca_path)}
        result, raw = rs.run_module(tmp_path, "istio_revision_info", auth, verbosity=3, env=env)
        assert raw.rc == 0 and result and not result.get("failed"), raw
        check("istio_revision_info (api_key)", raw.output)
        result, raw = rs.run_module(tmp_path, "istio_revision_tag", dict(auth, tag="default", revision="9-9-9"),
                                    verbosity=3, env=env)
        assert raw.rc != 0, raw
        check("istio_revision_tag failure (api_key)", raw.output)
        result, raw = rs.run_module(tmp_path, "istio_revision_info", {"kubeconfig": cfg}, verbosity=3, env=env)
        assert raw.rc == 0 and result and not result.get("failed"), raw
        check("istio_revision_info (kubeconfig dict)", raw.output)
        result, raw = rs.run_module(tmp_path, "istio_revision",
                                    {"kubeconfig": cfg, "revision": rs.OLD_REV, "state": "absent",
                                     "istioctl_path": rs.ISTIOCTL}, verbosity=3, env=env,
                                    istioctl_version=rs.OLD_VERSION)
        assert raw.rc != 0, raw  # refused: still in use
        check("istio_revision absent failure (kubeconfig dict)", raw.output)
        # the K8S_AUTH_* environment fallbacks (as an AWX credential would set them)
        result, raw = rs.run_module(tmp_path, "istio_revision_info", {"namespace": "istio-system"}, verbosity=3, env=dict(
            env, K8S_AUTH_HOST=sim.server, K8S_AUTH_API_KEY=sim.token, K8S_AUTH_SSL_CA_CERT=str(ca_path)))
        assert raw.rc == 0 and result and not result.get("failed"), raw
        check("istio_revision_info (K8S_AUTH_* environment)", raw.output)
        # a wrong token is refused and not echoed either
        wrong = "wrong-" + sim.token[::-1]
        result, raw = rs.run_module(tmp_path, "istio_revision_info", dict(auth, api_key=wrong), verbosity=3, env=env)
        assert raw.rc != 0, raw
        assert wrong not in raw.output
        check("istio_revision_info 401 (api_key)", raw.output)

        # the log file has everything that was displayed, and nothing secret either
        log = log_path.read_text()
        assert "istio_revision_info" in log and "TASK" in log, "ANSIBLE_LOG_PATH was not written"
        check("ANSIBLE_LOG_PATH", log)
        # the tests really looked at verbose output (module invocations with their masked arguments)
        assert any("VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in o or "********" in o for o in outputs)
        # no credential left behind in temporary files (e.g. a kubeconfig written for istioctl)
        # (kubeconfigs written for istioctl, and the stand-in istioctl's own copies of the client key)
        assert _scan_dir(str(scratch), secrets) == []
    finally:
        sim.stop()
