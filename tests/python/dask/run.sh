#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# dask's own test suites against cpartd:
#   tests/python/dask/run.sh <build-dir> [pytest args...]
# Runs dask/dataframe/tests/test_shuffle.py and dask/bag/tests/test_bag.py
# from Debian's python3-dask (/usr/bin/python3), in place (nothing of dask's
# is copied into this repository), with `partd` resolved to cpartd by the
# partd_shim on PYTHONPATH (so dask's process-pool workers get it too), and
# the pytest plugin cpartd_dask_plugin.py (shuffle_method fixture, markers,
# the documented list of known failures).
#
# CPARTD_DASK_IMPL=partd runs the same suites against the reference partd
# (no shim), to tell our failures from dask's or partd's own.
# Slow tests (dask's @pytest.mark.slow) are skipped, as in dask's default
# run; pass --runslow to include them.
set -u
build=${1:?usage: run.sh <build-dir> [pytest args]}
shift
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd) || exit 1
py=${PARTD_TEST_PYTHON:-/usr/bin/python3}
if ! "$py" -c 'import dask.dataframe, dask.bag' 2>/dev/null; then
    echo "dask/run.sh: $py has no dask (apt-get install python3-dask)" >&2
    exit 1
fi
impl=${CPARTD_DASK_IMPL:-cpartd}
if [ "$impl" = cpartd ]; then
    path="$build/python/partd_shim:$build/python:$here"
else
    path="$here"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/cpartd-dask.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
# PYTHONDONTWRITEBYTECODE: pytest writes no rewritten .pyc into dask's
# installed package.
CPARTD_DASK_IMPL=$impl PYTHONPATH="$path" PYTHONDONTWRITEBYTECODE=1 \
    "$py" -m pytest -p no:cacheprovider -p cpartd_dask_plugin \
    --rootdir="$work" --basetemp="$work/tmp" -q -rs \
    --pyargs dask.dataframe.tests.test_shuffle dask.bag.tests.test_bag "$@"
