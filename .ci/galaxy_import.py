"""Import the built tarball the way Galaxy / Automation Hub do (galaxy-importer), strictly.

usage: galaxy_import.py --config CFG TARBALL

galaxy-importer only fails an import on errors; what it logs as warnings (ansible-lint findings, a missing
role README, a plugin ansible-doc cannot read ...) is shown to users on the collection's page. A release
has none: any warning or error fails this check. Prints galaxy-importer's log and a summary of what it found.
"""
import argparse
import logging
import os
import shutil
import sys
import tempfile

from galaxy_importer import collection, config
from galaxy_importer.exceptions import ImporterError
from galaxy_importer.main import FILENAME_REGEXP


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.problems = []

    def emit(self, record):
        line = record.getMessage()
        print(('%s: %s' % (record.levelname, line)) if record.levelno != logging.INFO else line, flush=True)
        if record.levelno >= logging.WARNING:
            self.problems.append('%s: %s' % (record.levelname, line))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--config', required=True, help='galaxy-importer.cfg with the server\'s settings')
    parser.add_argument('tarball')
    args = parser.parse_args(argv)
    args.tarball = os.path.abspath(args.tarball)

    os.environ['GALAXY_IMPORTER_CONFIG'] = os.path.abspath(args.config)
    # galaxy-importer's ansible-lint installs the collection it lints into ~/.ansible/collections, where every
    # later ansible-lint run on this machine would find it first: give the import a home of its own.
    home = tempfile.mkdtemp(prefix='galaxy-import-home-')
    os.environ['HOME'] = home
    cfg = config.Config(config_data=config.ConfigFile.load())
    cfg.ansible_local_tmp = os.path.join(home, '.ansible', 'tmp')
    logger = logging.getLogger('galaxy_importer.release_check')
    logger.setLevel(logging.INFO)
    logger.propagate = False
    recorder = Recorder()
    logger.addHandler(recorder)

    match = FILENAME_REGEXP.match(os.path.basename(args.tarball))
    if not match:
        sys.exit('%s is not named <namespace>-<name>-<version>.tar.gz' % args.tarball)
    print('== galaxy-importer with %s' % args.config, flush=True)
    try:
        with open(args.tarball, 'rb') as fh:
            data = collection.import_collection(fh, collection.CollectionFilename(*match.groups()),
                                                logger=logger, cfg=cfg)
    except ImporterError as exc:
        sys.exit('IMPORT FAILED (%s): %s' % (os.path.basename(args.config), exc))
    finally:
        shutil.rmtree(home, ignore_errors=True)

    contents = data.get('contents') or []
    print('imported %s %s: %s' % (data['metadata']['name'], data['metadata']['version'],
                                   ', '.join(sorted('%s %s' % (c['content_type'], c['name']) for c in contents))))
    if recorder.problems:
        sys.exit('IMPORT NOT CLEAN (%s): %d warning(s)/error(s):\n  %s'
                 % (os.path.basename(args.config), len(recorder.problems), '\n  '.join(recorder.problems)))
    print('import clean (%s)' % os.path.basename(args.config))


if __name__ == '__main__':
    main()
