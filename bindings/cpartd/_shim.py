# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""install_as_partd(): make `import partd` and `import partd.X` give cpartd.

In this process: sys.modules['partd'] becomes the cpartd package, every
loaded submodule cpartd.X is registered as partd.X, and a finder at the
front of sys.meta_path serves later `import partd.X` from cpartd.X (the same
module object, so classes are identical under both names).

Child processes: with cpartd installed by pip, set CPARTD_AS_PARTD=1 (the
drop-in, _cpartd_dropin.py: every process imports cpartd as partd); with a
build tree, put <build>/python/partd_shim before the real partd on
PYTHONPATH; its `partd` package calls install_as_partd() when imported.
"""
import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ['install_as_partd', 'SUBMODULES']

SUBMODULES = ('core', 'file', 'dict', 'buffer', 'utils', 'encode',
              'compressed', 'pickle', 'python', 'numpy', 'pandas', 'zmq',
              'fanout')


class _Alias(importlib.abc.Loader):
    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module):
        # importlib set __spec__ to partd.X's; cpartd.X keeps its own.
        module.__spec__ = self.spec


class _PartdFinder(importlib.abc.MetaPathFinder):
    """Serves partd.X as cpartd.X."""

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith('partd.'):
            return None
        sub = fullname[len('partd.'):]
        if sub.split('.')[0] not in SUBMODULES:
            return None
        real = 'cpartd.' + sub
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(real))


_finder = _PartdFinder()


def install_as_partd():
    """Make `partd` (and every partd.X) resolve to cpartd in this process.
    Idempotent.  Returns the cpartd module."""
    import cpartd
    old = sys.modules.get('partd')
    if old is not None and old is not cpartd:
        # Forget the reference's modules so none of them is used by mistake.
        for name in list(sys.modules):
            if name == 'partd' or name.startswith('partd.'):
                del sys.modules[name]
    sys.modules['partd'] = cpartd
    for name in SUBMODULES:
        mod = sys.modules.get('cpartd.' + name)
        if mod is not None:
            sys.modules['partd.' + name] = mod
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
    return cpartd
