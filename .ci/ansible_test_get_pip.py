"""Offline stand-in for ansible-test's pip bootstrap script (get-pip.py).

ansible-test bootstraps pip into each sanity virtual environment by downloading get-pip.py from a host
that is not reachable from our build machines. This script does the same job with what is at hand: the
interpreter's bundled pip (ensurepip), then the pinned pip/setuptools/wheel versions from the package
index. It accepts get-pip's command line (pip install options plus --no-setuptools/--no-wheel).
"""
import subprocess
import sys


def main(argv):
    args = [a for a in argv if a not in ('--no-setuptools', '--no-wheel')]
    subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade', '--default-pip'])
    subprocess.check_call([sys.executable, '-m', 'pip', 'install', '--disable-pip-version-check', '-q'] + args)


if __name__ == '__main__':
    main(sys.argv[1:])
