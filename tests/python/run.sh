#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# cpartd's Python tests against a build tree, then dask's suites against it:
#   tests/python/run.sh <build-dir> [pytest args...]
# 1. tests/python/test_*.py (cpartd alone, and beside the reference partd);
# 2. dask/run.sh: dask's test_shuffle.py and test_bag.py with partd resolved
#    to cpartd (skip with CPARTD_SKIP_DASK=1).
# Uses Debian's /usr/bin/python3 (partd, numpy, pandas, dask, pytest).  The
# pytest args go to the first run (CPARTD_DASK_ARGS to the second, default
# -x).  Ends with one line adding up both runs'
# counts ("==== N passed, N failed, ... in S s ===="); the exit code is 0
# only if both passed, and "no tests ran" is a failure.
set -u
build=${1:?usage: run.sh <build-dir> [pytest args]}
shift
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$build" && pwd) || exit 1
if [ ! -d "$build/python/cpartd" ]; then
    echo "run.sh: $build/python/cpartd missing: build with PARTD_BUILD_PYTHON=ON" >&2
    exit 1
fi
py=${PARTD_TEST_PYTHON:-/usr/bin/python3}
log=$(mktemp) || exit 1
trap 'rm -f "$log"' EXIT
t0=$SECONDS

( cd "$here" &&
  PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
    "$py" -m pytest -p no:cacheprovider -q "$here" "$@" ) 2>&1 | tee "$log"
rc1=${PIPESTATUS[0]}
summary1=$(grep -E ' in [0-9.]+s' "$log" | tail -n 1)

rc2=0 summary2=""
if [ "${CPARTD_SKIP_DASK:-}" != 1 ]; then
    echo
    echo "---- dask's suites with partd = cpartd (tests/python/dask/run.sh)"
    # shellcheck disable=SC2086
    bash "$here/dask/run.sh" "$build" ${CPARTD_DASK_ARGS:--x} 2>&1 | tee "$log"
    rc2=${PIPESTATUS[0]}
    summary2=$(grep -E ' in [0-9.]+s' "$log" | tail -n 1)
fi

count() { # count WORD SUMMARY: the number before WORD, or 0
    [[ "$2" =~ ([0-9]+)\ $1 ]] && echo "${BASH_REMATCH[1]}" || echo 0
}
total() {
    echo $(($(count "$1" "$summary1") + $(count "$1" "$summary2")))
}
np=$(total passed) nf=$(total failed) ne=$(total error) ns=$(total skipped)
nx=$(total xfailed)
for rc in $rc1 $rc2; do
    if [ "$rc" -eq 5 ]; then
        echo "run.sh: a pytest run collected no tests" >&2
        nf=$((nf + 1))
    elif [ "$rc" -ne 0 ] && [ $((nf + ne)) -eq 0 ]; then
        echo "run.sh: pytest exited $rc" >&2
        nf=$((nf + 1))
    fi
done
echo "==== $np passed, $nf failed, $ne errors, $ns skipped, $nx xfailed" \
    "(cpartd: ${summary1:-none}; dask: ${summary2:-not run}) in $((SECONDS - t0))s ===="
[ $((nf + ne)) -eq 0 ]
