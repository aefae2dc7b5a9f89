"""The execution environment: `ansible-builder create` on execution-environment.yml writes a build context whose
Containerfile installs this collection from the built tarball, its Python dependencies, and istioctl and helm for
the versions given as build arguments, checksum-verified, for amd64 and arm64, on a pinned base image. No image
can be built here, so the Containerfile is parsed and ee/install-tools.sh is run against stand-in downloads."""
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile

import pytest
import yaml

from conftest import REPO, clean_env

INSTALL_TOOLS = os.path.join(REPO, 'ee', 'install-tools.sh')


@pytest.fixture(scope='module')
def context(tarball, tmp_path_factory):
    """A build context written by ansible-builder from a copy of the EE files and the built tarball."""
    src = tmp_path_factory.mktemp('ee-src')
    for name in ('execution-environment.yml', 'requirements.txt', 'bindep.txt', 'ee'):
        path = os.path.join(REPO, name)
        (shutil.copytree if os.path.isdir(path) else shutil.copy)(path, src / name)
    (src / '.build' / 'ee').mkdir(parents=True)
    shutil.copy(tarball, src / '.build' / 'ee' / 'meshops-istio.tar.gz')
    out = src / 'context'
    subprocess.run(['ansible-builder', 'create', '-f', 'execution-environment.yml', '-c', str(out),
                    '--output-filename', 'Containerfile'], cwd=src, check=True, capture_output=True, text=True)
    return out


def stages(containerfile):
    """{stage name: [(instruction, arguments)]} plus the global ARGs under ''."""
    text = containerfile.read_text().replace('\\\n', ' ')
    out = {'': []}
    current = ''
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith('#'):
            continue
        instruction, _sep, rest = line.partition(' ')
        instruction = instruction.upper()
        if instruction == 'FROM':
            current = rest.split()[-1]
            out[current] = [('FROM', rest)]
        else:
            out[current].append((instruction, rest))
    return out


def global_arg(parsed, name):
    for instruction, rest in parsed['']:
        if instruction == 'ARG' and rest.startswith(name + '='):
            return rest.split('=', 1)[1].strip('"')
    raise AssertionError('no global ARG %s' % name)


def test_base_image_is_pinned(context):
    parsed = stages(context / 'Containerfile')
    image = global_arg(parsed, 'EE_BASE_IMAGE')
    assert parsed['base'][0] == ('FROM', '$EE_BASE_IMAGE AS base')
    digest = re.search(r'@sha256:[0-9a-f]{64}$', image)
    exact_tag = re.search(r':\d+\.\d+-\d+(\.\d+)?$', image)   # a UBI build tag such as 9.7-1777858048
    assert digest or exact_tag, image
    assert not image.endswith(':latest')


def test_collection_is_installed_from_the_built_tarball(context, tarball, cores, tmp_path):
    parsed = stages(context / 'Containerfile')
    galaxy = parsed['galaxy']
    assert ('COPY', '_build /build') in galaxy and ('WORKDIR', '/build') in galaxy
    installs = [rest for instruction, rest in galaxy if instruction == 'RUN' and 'ansible-galaxy collection install' in rest]
    assert len(installs) == 1 and '-r requirements.yml' in installs[0]
    assert '/usr/share/ansible/collections' in installs[0]
    # the final image gets what the galaxy stage installed
    assert ('COPY', '--from=galaxy /usr/share/ansible /usr/share/ansible') in parsed['final']
    # the requirements point at the tarball, which is byte for byte the one `make dist` built
    with open(context / '_build' / 'requirements.yml') as fh:
        requirements = yaml.safe_load(fh)
    assert requirements['collections'] == [{'name': 'collection/meshops-istio.tar.gz', 'type': 'file'}]
    with open(tarball, 'rb') as a, open(context / '_build' / 'collection' / 'meshops-istio.tar.gz', 'rb') as b:
        assert hashlib.sha256(a.read()).digest() == hashlib.sha256(b.read()).digest()
    # and ansible-galaxy installs meshops.istio from them, run where the galaxy stage runs it (/build = _build)
    venv = cores['2.19']
    subprocess.run([os.path.join(venv, 'bin', 'ansible-galaxy'), 'collection', 'install', '-r', 'requirements.yml',
                    '-p', str(tmp_path)], cwd=context / '_build', check=True, capture_output=True, text=True,
                   env=clean_env())
    assert (tmp_path / 'ansible_collections' / 'meshops' / 'istio' / 'plugins' / 'modules' / 'rollout_restart.py').exists()


def test_python_dependencies_are_installed(context):
    parsed = stages(context / 'Containerfile')
    with open(context / '_build' / 'requirements.txt') as fh:
        packages = {re.split(r'[<>=~! ;]', line.strip())[0].lower() for line in fh if line.strip() and line[0] != '#'}
    assert {'kubernetes', 'jmespath'} <= packages
    builder = parsed['builder']
    assert ('COPY', '_build/requirements.txt requirements.txt') in builder
    introspect = [rest for instruction, rest in builder if instruction == 'RUN' and 'introspect' in rest]
    assert introspect and '--user-pip=requirements.txt' in introspect[0]
    assert ('RUN', '/output/scripts/assemble') in builder
    final = parsed['final']
    assert ('COPY', '--from=builder /output/ /output/') in final
    assert any(i == 'RUN' and '/output/scripts/install-from-bindep' in r for i, r in final)
    assert 'ansible-core==' in global_arg(parsed, 'ANSIBLE_INSTALL_REFS')


def test_istioctl_and_helm_from_build_arguments_checksummed_per_arch(context):
    final = stages(context / 'Containerfile')['final']
    args = [rest for instruction, rest in final if instruction == 'ARG']
    assert {'TARGETARCH', 'ISTIO_VERSIONS', 'HELM_VERSION'} <= set(args)
    copies = [rest for instruction, rest in final if instruction == 'COPY' and 'install-tools.sh' in rest]
    assert copies == ['_build/tools/install-tools.sh /usr/local/libexec/meshops-istio/install-tools.sh']
    runs = [rest for instruction, rest in final if instruction == 'RUN' and 'install-tools.sh' in rest]
    assert len(runs) == 1
    for name in ('TARGETARCH', 'ISTIO_VERSIONS', 'HELM_VERSION'):
        assert '%s="$%s"' % (name, name) in runs[0]
    # the script in the context is the repository's
    with open(context / '_build' / 'tools' / 'install-tools.sh') as a, open(INSTALL_TOOLS) as b:
        assert a.read() == b.read()
    # the tools are installed after the collection and its dependencies, before the image's user switch
    order = [i for i, (instruction, rest) in enumerate(final) if 'install-tools.sh' in rest or rest == '1000']
    assert order == sorted(order)


# ---- ee/install-tools.sh against stand-in downloads ---------------------------------------------------------

def targz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w:gz') as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def releases(tmp_path):
    """A fake download site (served by a stand-in curl) with istio and helm releases for both arches."""
    site = tmp_path / 'site'
    for arch in ('amd64', 'arm64'):
        for version in ('1.28.3', '1.29.6'):
            data = targz({'istioctl': ('#!/bin/sh\necho istioctl %s %s\n' % (version, arch)).encode()})
            name = 'istioctl-%s-linux-%s.tar.gz' % (version, arch)
            path = site / 'istio' / version / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            (site / 'istio' / version / (name + '.sha256')).write_text(
                '%s  %s\n' % (hashlib.sha256(data).hexdigest(), name))     # istio's format: "<sha>  <file>"
        data = targz({'linux-%s/helm' % arch: ('#!/bin/sh\necho helm %s\n' % arch).encode(), 'linux-%s/LICENSE' % arch: b'x'})
        name = 'helm-v3.19.0-linux-%s.tar.gz' % arch
        (site / 'helm').mkdir(parents=True, exist_ok=True)
        (site / 'helm' / name).write_bytes(data)
        (site / 'helm' / (name + '.sha256')).write_text(hashlib.sha256(data).hexdigest())   # helm's: "<sha>"
    bin_dir = tmp_path / 'fakebin'
    bin_dir.mkdir()
    log = tmp_path / 'curl.log'
    # stand-in curl: maps https://<host>/<path> to the site, logs each URL, fails (22) like curl -f on a 404
    (bin_dir / 'curl').write_text('''#!/bin/bash
out=""; url=""
while [ $# -gt 0 ]; do case "$1" in -o) out=$2; shift 2;; --retry) shift 2;; -*) shift;; *) url=$1; shift;; esac; done
echo "$url" >> %(log)s
case "$url" in
  https://github.com/istio/istio/releases/download/*) path=%(site)s/istio/${url#https://github.com/istio/istio/releases/download/};;
  https://get.helm.sh/*) path=%(site)s/helm/${url#https://get.helm.sh/};;
  *) exit 6;;
esac
[ -f "$path" ] || exit 22
cp "$path" "$out"
''' % {'log': shlex.quote(str(log)), 'site': shlex.quote(str(site))})
    (bin_dir / 'curl').chmod(0o755)
    return {'site': site, 'bin': bin_dir, 'log': log, 'root': tmp_path}


def install_tools(releases, **env):
    root = releases['root']
    environment = clean_env(PATH='%s:%s' % (releases['bin'], os.environ['PATH']),
                            ISTIO_ROOT=str(root / 'opt' / 'istio'), BIN_DIR=str(root / 'usr-local-bin'))
    (root / 'usr-local-bin').mkdir(exist_ok=True)
    environment.update(env)
    return subprocess.run(['bash', INSTALL_TOOLS], env=environment, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.mark.parametrize('arch', ['amd64', 'arm64'])
def test_install_tools_installs_each_version_for_the_target_arch(releases, arch):
    proc = install_tools(releases, TARGETARCH=arch, ISTIO_VERSIONS='1.28.3 1.29.6', HELM_VERSION='v3.19.0')
    assert proc.returncode == 0, proc.stderr
    root = releases['root']
    for version in ('1.28.3', '1.29.6'):
        istioctl = root / 'opt' / 'istio' / version / 'bin' / 'istioctl'
        ran = subprocess.run([str(istioctl)], capture_output=True, text=True, check=True)
        assert ran.stdout == 'istioctl %s %s\n' % (version, arch)
    helm = root / 'usr-local-bin' / 'helm'
    assert subprocess.run([str(helm)], capture_output=True, text=True, check=True).stdout == 'helm %s\n' % arch
    urls = releases['log'].read_text().split()
    assert urls == [
        'https://github.com/istio/istio/releases/download/1.28.3/istioctl-1.28.3-linux-%s.tar.gz' % arch,
        'https://github.com/istio/istio/releases/download/1.28.3/istioctl-1.28.3-linux-%s.tar.gz.sha256' % arch,
        'https://github.com/istio/istio/releases/download/1.29.6/istioctl-1.29.6-linux-%s.tar.gz' % arch,
        'https://github.com/istio/istio/releases/download/1.29.6/istioctl-1.29.6-linux-%s.tar.gz.sha256' % arch,
        'https://get.helm.sh/helm-v3.19.0-linux-%s.tar.gz' % arch,
        'https://get.helm.sh/helm-v3.19.0-linux-%s.tar.gz.sha256' % arch,
    ]


def test_install_tools_fails_on_a_checksum_mismatch(releases):
    name = 'istioctl-1.29.6-linux-amd64.tar.gz'
    archive = releases['site'] / 'istio' / '1.29.6' / name
    archive.write_bytes(archive.read_bytes() + b'tampered')
    proc = install_tools(releases, TARGETARCH='amd64', ISTIO_VERSIONS='1.29.6', HELM_VERSION='3.19.0')
    assert proc.returncode != 0
    assert 'checksum mismatch' in proc.stderr and name in proc.stderr
    assert not (releases['root'] / 'opt' / 'istio' / '1.29.6' / 'bin' / 'istioctl').exists()


def test_install_tools_fails_without_a_checksum(releases):
    (releases['site'] / 'helm' / 'helm-v3.19.0-linux-arm64.tar.gz.sha256').write_text('<html>not found</html>')
    proc = install_tools(releases, TARGETARCH='arm64', ISTIO_VERSIONS='1.29.6', HELM_VERSION='3.19.0')
    assert proc.returncode != 0 and 'no sha256' in proc.stderr
    assert not (releases['root'] / 'usr-local-bin' / 'helm').exists()
    (releases['site'] / 'helm' / 'helm-v3.19.0-linux-arm64.tar.gz.sha256').unlink()
    proc = install_tools(releases, TARGETARCH='arm64', ISTIO_VERSIONS='1.29.6', HELM_VERSION='3.19.0')
    assert proc.returncode != 0 and 'download failed' in proc.stderr


@pytest.mark.parametrize('env, message', [
    ({'TARGETARCH': 's390x', 'ISTIO_VERSIONS': '1.29.6', 'HELM_VERSION': '3.19.0'}, "unsupported architecture 's390x'"),
    ({'TARGETARCH': 'amd64', 'ISTIO_VERSIONS': '', 'HELM_VERSION': '3.19.0'}, 'build with --build-arg ISTIO_VERSIONS'),
    ({'TARGETARCH': 'amd64', 'ISTIO_VERSIONS': '1.29.6', 'HELM_VERSION': ''}, 'build with --build-arg HELM_VERSION'),
    ({'TARGETARCH': 'amd64', 'ISTIO_VERSIONS': '1-29-6', 'HELM_VERSION': '3.19.0'}, "'1-29-6' is not like 1.29.6"),
])
def test_install_tools_refuses_bad_build_arguments(releases, env, message):
    proc = install_tools(releases, **env)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
    assert not releases['log'].exists()   # nothing downloaded
