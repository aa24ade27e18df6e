# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The opt-in drop-in: with CPARTD_AS_PARTD=1 in the environment, `import
partd` (and `import partd.X`) gives cpartd in every Python process that has
cpartd installed, dask's worker processes included, without code changes.

pip installs cpartd-as-partd.pth next to this module; Python's `site` runs
its one line at startup, which calls install() only when the variable is
"1" (off by default: the cost is one environment look-up).  install() puts
a finder first on sys.meta_path; cpartd itself is imported only when
something imports partd.  Children inherit the variable, so multiprocessing
(fork or spawn), concurrent.futures and distributed workers get cpartd too.
"""
import os
import sys

ENV = 'CPARTD_AS_PARTD'


def enabled(environ=os.environ):
    return environ.get(ENV, '') == '1'


class _PartdFinder:
    """Serves `partd` as cpartd (cpartd.install_as_partd() then serves
    every partd.X)."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != 'partd':
            return None
        import importlib.util
        return importlib.util.spec_from_loader('partd', _Loader())

    @classmethod
    def invalidate_caches(cls):
        pass


class _Loader:
    def create_module(self, spec):
        import cpartd
        self.spec = cpartd.__spec__
        return cpartd

    def exec_module(self, module):
        module.__spec__ = self.spec  # cpartd keeps its own spec
        module.install_as_partd()


def install():
    """Make the next `import partd` give cpartd (idempotent)."""
    if _PartdFinder not in sys.meta_path:
        sys.meta_path.insert(0, _PartdFinder)


def active():
    """Whether `partd` is (or will be, once imported) cpartd here."""
    mod = sys.modules.get('partd')
    if mod is not None:
        return getattr(mod, '__name__', None) == 'cpartd'
    return _PartdFinder in sys.meta_path
