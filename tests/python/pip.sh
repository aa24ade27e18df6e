#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# cpartd as a pip user gets it, in a fresh virtual environment:
#   tests/python/pip.sh <build-dir> [pytest args...]
# 1. /usr/bin/python3 -m venv --system-site-packages (Debian's numpy,
#    pandas, partd, dask, pytest, setuptools and wheel stay visible);
# 2. pip install --no-build-isolation --no-index ./bindings, offline, with
#    libpartd from <build-dir> (CPARTD_LIBPARTD_BUILD), and pip wheel the
#    same way (the wheel must build too);
# 3. tests/python/test_*.py against the installed package (not the build
#    tree), with CPARTD_TEST_INSTALLED=1: the metadata and the drop-in
#    (CPARTD_AS_PARTD=1 in subprocesses, spawned children, dask's process
#    workers) are tested there;
# 4. pip uninstall cpartd: nothing of it may be left, and partd is partd
#    again even with CPARTD_AS_PARTD=1.
# Ends with "pip: N passed, N failed" (pytest's counts plus one per step);
# exit 0 only if all passed.
set -u
build=${1:?usage: pip.sh <build-dir> [pytest args]}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$(cd "$build" && pwd) || exit 1
py=${PARTD_TEST_PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS
passed=0 failed=0

ok() { passed=$((passed + 1)); echo "pip.sh: ok: $*"; }
bad() { failed=$((failed + 1)); echo "pip.sh: FAILED: $*" >&2; }
finish() {
    echo "pip: $passed passed, $failed failed (in $((SECONDS - t0)) s)"
    [ "$failed" -eq 0 ]
    exit
}

venv=$tmp/venv
if ! "$py" -m venv --system-site-packages "$venv"; then
    bad "python3 -m venv (python3-venv installed?)"
    finish
fi
vpy=$venv/bin/python
pipx=("$vpy" -m pip --disable-pip-version-check --no-input)
export PIP_NO_INDEX=1 PIP_CONFIG_FILE=/dev/null
export CPARTD_LIBPARTD_BUILD=$build
unset PYTHONPATH CPARTD_AS_PARTD

# A copy of bindings/ beside a link to the tree's src, include and
# CMakeLists.txt: pip builds in the source directory, and the checkout stays
# clean (no build/ or egg-info left in bindings/).
src=$tmp/src
mkdir -p "$src"
cp -r "$root/bindings" "$src/bindings"
rm -rf "$src/bindings/build" "$src/bindings"/*.egg-info
for f in src include CMakeLists.txt; do ln -s "$root/$f" "$src/$f"; done

if "${pipx[@]}" install --no-build-isolation "$src/bindings" \
        >"$tmp/install.log" 2>&1; then
    ok "pip install --no-build-isolation ./bindings"
else
    tail -n 40 "$tmp/install.log" >&2
    bad "pip install ./bindings"
    finish
fi
rm -rf "$src/bindings/build"
if "${pipx[@]}" wheel --no-build-isolation --no-deps -w "$tmp/wheels" \
        "$src/bindings" >"$tmp/wheel.log" 2>&1 &&
    ls "$tmp/wheels"/cpartd-*.whl >/dev/null 2>&1; then
    ok "pip wheel: $(basename "$tmp"/wheels/cpartd-*.whl)"
else
    tail -n 40 "$tmp/wheel.log" >&2
    bad "pip wheel ./bindings"
fi

site=$("$vpy" -c 'import sysconfig; print(sysconfig.get_path("platlib"))')
where=$(cd / && "$vpy" -c 'import cpartd; print(cpartd.__file__)')
if [[ "$where" == "$site/cpartd/__init__.py" ]]; then
    ok "import cpartd gives the installed package"
else
    bad "import cpartd gives $where, not $site/cpartd"
fi

# cpartd's suites against the installed package (conftest keeps bindings/
# off the path; nothing puts the build tree on it).
log=$tmp/pytest.log
( cd "$here" && CPARTD_TEST_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
    "$vpy" -m pytest -p no:cacheprovider -q "$here" "$@" ) 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
line=$(grep -E ' in [0-9.]+s' "$log" | tail -n 1)
np=0 nf=0
[[ "$line" =~ ([0-9]+)\ passed ]] && np=${BASH_REMATCH[1]}
[[ "$line" =~ ([0-9]+)\ failed ]] && nf=${BASH_REMATCH[1]}
[[ "$line" =~ ([0-9]+)\ errors? ]] && nf=$((nf + BASH_REMATCH[1]))
passed=$((passed + np))
failed=$((failed + nf))
if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then
    bad "pytest exited $rc"
fi

# Uninstall: pip knows every file, and leaves nothing.
if "${pipx[@]}" uninstall -y cpartd >"$tmp/uninstall.log" 2>&1; then
    ok "pip uninstall cpartd"
else
    cat "$tmp/uninstall.log" >&2
    bad "pip uninstall cpartd"
fi
left=$(cd "$site" && ls -d cpartd cpartd-* _cpartd_dropin* \
    cpartd-as-partd.pth 2>/dev/null)
if [ -z "$left" ]; then
    ok "nothing of cpartd left in $site"
else
    bad "left in $site after uninstall: $left"
fi
if (cd / && "$vpy" -c 'import cpartd' 2>/dev/null); then
    bad "import cpartd still works after uninstall"
else
    ok "import cpartd fails after uninstall"
fi
which=$(cd / && CPARTD_AS_PARTD=1 "$vpy" -c \
    'import partd; print(partd.__name__)' 2>&1)
if [[ "$which" == partd ]]; then
    ok "after uninstall, CPARTD_AS_PARTD=1 python: import partd is partd"
else
    bad "after uninstall, import partd gives: $which"
fi
finish
