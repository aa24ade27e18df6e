# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""A pytest plugin that runs dask's own test suites (from Debian's
python3-dask) against cpartd, loaded by tests/python/dask/run.sh with
``-p cpartd_dask_plugin``.

It gives the suites what dask's repository-level conftest.py and setup.cfg
give them, which the Debian package does not ship:

- the ``shuffle_method`` fixture: parametrized over ``"disk"`` and
  ``"tasks"``, with ``dask.config.set(shuffle=...)`` around the test;
- the ``slow`` marker (skipped unless ``--runslow``) and dask's other markers;

and checks that ``import partd`` gives the implementation asked for
(CPARTD_DASK_IMPL: ``cpartd``, the default, through the partd_shim on
PYTHONPATH so that child processes get it too; or ``partd`` for the
reference, to compare).

Tests that fail the same way with the reference partd 1.3 are skipped with
the reason, from KNOWN_FAILURES below (the one documented list).
"""
import os

import pytest

IMPL = os.environ.get('CPARTD_DASK_IMPL', 'cpartd')

# nodeid suffix -> why it is skipped.  Every entry fails the same way with
# partd 1.3 (CPARTD_DASK_IMPL=partd tests/python/dask/run.sh shows it).
KNOWN_FAILURES = {
}


def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', help='run slow tests')


def pytest_configure(config):
    for m in ('slow: skipped unless --runslow',
              'network: needs the network',
              'gpu: needs a GPU',
              'skip_with_pyarrow_strings: dask marker'):
        config.addinivalue_line('markers', m)
    import partd
    if IMPL == 'cpartd':
        import cpartd
        assert partd is cpartd, ('partd does not resolve to cpartd: %r'
                                 % partd)
    else:
        assert 'cpartd' not in getattr(partd, '__file__', ''), partd


def pytest_report_header(config):
    import partd
    return 'partd under test: %s (%s)' % (IMPL, partd.__file__)


def pytest_collection_modifyitems(config, items):
    runslow = config.getoption('--runslow')
    for item in items:
        if 'slow' in item.keywords and not runslow:
            item.add_marker(pytest.mark.skip(reason='slow: needs --runslow'))
        for suffix, why in KNOWN_FAILURES.items():
            if item.nodeid.endswith(suffix):
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(params=['disk', 'tasks'])
def shuffle_method(request):
    import dask
    with dask.config.set(shuffle=request.param):
        yield request.param
