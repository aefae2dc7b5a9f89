# -*- coding: utf-8 -*-
# Copyright: meshops.istio contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    """The modules' attributes, described once: meshops.istio.attributes gives what each attribute means,
    meshops.istio.attributes.info_module the support of a module that only reads (a module's own
    ``attributes`` entries override single keys, for example ``details``)."""

    DOCUMENTATION = r'''
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
'''

    INFO_MODULE = r'''
attributes:
  check_mode:
    support: full
    details: The module only reads; it behaves the same in check mode.
  diff_mode:
    support: none
    details: Nothing changes, so there is nothing to diff.
'''
