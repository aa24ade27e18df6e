#!/bin/bash
# Runs cpartd's Python tests against a build tree:
#   tests/python/run.sh <build-dir> [pytest args...]
# Uses Debian's /usr/bin/python3 (partd, numpy, pandas, pytest).  Exit code
# is pytest's, except that "no tests ran" (5) is a failure (1).
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
cd "$here" || exit 1
PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}" PYTHONDONTWRITEBYTECODE=1 \
    "$py" -m pytest -p no:cacheprovider -q "$here" "$@"
rc=$?
if [ $rc -eq 5 ]; then
    echo "run.sh: no tests ran" >&2
    exit 1
fi
exit $rc
