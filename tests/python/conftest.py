# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd's tests.  Run with tests/python/run.sh <build-dir>, which puts
<build>/python on PYTHONPATH; Debian's /usr/bin/python3 has partd 1.3."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# bindings/cpartd is the source tree without the extension: never import it.
sys.path[:] = [p for p in sys.path
               if os.path.abspath(p or '.') != os.path.join(
                   os.path.dirname(os.path.dirname(HERE)), 'bindings')]

import cpartd  # noqa: E402

try:
    import partd as ref
    if getattr(ref, '__file__', '') and 'cpartd' in ref.__file__:
        ref = None
except ImportError:  # pragma: no cover
    ref = None


@pytest.fixture
def needs_ref():
    if ref is None:
        pytest.skip('the reference partd is not installed')
    return ref


@pytest.fixture
def root(tmp_path):
    """A directory for one store (not yet created)."""
    return str(tmp_path / 'store')


def build_python_dir():
    return os.path.dirname(os.path.dirname(os.path.abspath(cpartd.__file__)))


# scripts/test's pip pass (tests/python/pip.sh) runs this suite against a
# cpartd that pip installed into a virtual environment and sets this: the
# tests of the installed package's metadata and drop-in must run there.
INSTALLED = os.environ.get('CPARTD_TEST_INSTALLED') == '1'


def repo_root():
    return os.path.dirname(os.path.dirname(HERE))


def conflicting_commits(p, q):
    """Attempts 1 (through store p) and 2 (through q) of writer 'w' append
    to key k; 1 commits first, so 2's commit raises AttemptConflict, which
    is returned."""
    a1 = p.attempt('w', 1)
    a2 = q.attempt('w', 2)
    a1.append({'k': b'one;'})
    a2.append({'k': b'two;'})
    a1.commit()
    with pytest.raises(cpartd.AttemptConflict) as ei:
        a2.commit()
    return ei.value
