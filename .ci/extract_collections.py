"""Extract collections bundled in the `ansible` package's wheel into an ansible_collections tree.

usage: extract_collections.py WHEEL DEST NAMESPACE.NAME...

The `ansible` package on PyPI ships several hundred collections; the release checks need two of them
(awx.awx, kubernetes.core) and no Galaxy server is reachable from the build machines.
"""
import os
import sys
import zipfile


def main(wheel, dest, names):
    prefixes = ['ansible_collections/%s/' % name.replace('.', '/') for name in names]
    found = set()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            prefix = next((p for p in prefixes if member.filename.startswith(p)), None)
            if prefix is None or member.is_dir():
                continue
            found.add(prefix)
            target = os.path.join(dest, member.filename)
            if not os.path.realpath(target).startswith(os.path.realpath(dest) + os.sep):
                raise SystemExit('refusing to extract outside %s: %s' % (dest, member.filename))
            archive.extract(member, dest)
    missing = [n for n, p in zip(names, prefixes) if p not in found]
    if missing:
        raise SystemExit('%s does not contain %s' % (wheel, ', '.join(missing)))


if __name__ == '__main__':
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
