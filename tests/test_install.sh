#!/bin/bash
# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# tests/test_install.sh SRC BUILD
# Installs the BUILD tree into a temporary prefix and builds programs against
# the installed copy only, the ways a downstream project would:
#   1. cc + pkg-config (shared), and pkg-config --static (libpartd.a linked
#      statically, its codec and zmq libraries as the system has them);
#   2. CMake find_package(partd) with partd::partd and partd::partd_static;
#   3. the public header compiles as C11 -pedantic and as C++.
# Also checks that README.md's C example is examples/basic.c verbatim.
set -euo pipefail

if (($# != 2)); then
    echo "usage: $0 SRC BUILD" >&2
    exit 2
fi
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
cc=${CC:-cc}
cxx=${CXX:-c++}
# A sanitized build's library needs the sanitizer runtimes in the programs.
san=()
if grep -q '^PARTD_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
    san=("-fsanitize=address,undefined")
fi

fail() {
    echo "test_install: FAIL: $*" >&2
    exit 1
}
ok() { echo "test_install: ok: $*"; }

if [[ -n "${PARTD_TEST_FAIL_SELFTEST:-}" ]]; then
    fail "PARTD_TEST_FAIL_SELFTEST is set: failing on purpose"
fi

# --- README.md embeds examples/basic.c between these two marker lines.
begin='<!-- BEGIN examples/basic.c -->'
end='<!-- END examples/basic.c -->'
readme_block=$(awk -v b="$begin" -v e="$end" '
    $0 == e { inside = 0 }
    inside && !/^```/ { print }
    $0 == b { inside = 1 }' "$src/README.md")
# (The example's SPDX licence lines, scripts/spdx, are not shown in README.)
example=$(grep -v 'SPDX-' "$src/examples/basic.c")
if [[ "$readme_block" != "$example" ]]; then
    diff <(echo "$readme_block") <(echo "$example") >&2 || true
    fail "README.md's example differs from examples/basic.c (diff above)"
fi
ok "README.md example == examples/basic.c"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/partd-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
    { cat "$tmp/install.log" >&2; fail "cmake --install"; }
[[ -x "$prefix/bin/partd" ]] || fail "bin/partd not installed"
[[ -f "$prefix/include/partd/partd.h" ]] || fail "partd.h not installed"
[[ -f "$prefix/include/partd/version.h" ]] || fail "partd/version.h not installed"
[[ -f "$prefix/share/man/man1/partd.1" ]] || fail "man page partd.1 not installed"
[[ -f "$prefix/share/bash-completion/completions/partd" ]] ||
    fail "bash completion not installed"

# The library directory is GNUInstallDirs' (lib or lib/<multiarch>): find it
# through the installed .pc file.
pc=$(find "$prefix" -name partd.pc -path '*/pkgconfig/*' | head -n 1)
[[ -n "$pc" ]] || fail "no pkgconfig/partd.pc under $prefix"
libdir=$(dirname "$(dirname "$pc")")
for f in libpartd.so libpartd.a cmake/partd/partdConfig.cmake; do
    [[ -e "$libdir/$f" ]] || fail "$libdir/$f not installed"
done
pkgc() { PKG_CONFIG_PATH=$(dirname "$pc") pkg-config "$@" partd; }
[[ "$(pkgc --variable=libdir)" -ef "$libdir" ]] ||
    fail "partd.pc libdir $(pkgc --variable=libdir) is not $libdir"
ok "installed into $prefix (libdir ${libdir#"$prefix"/})"

# The SONAME carries major.minor while the version is 0.x (CMakeLists.txt),
# and the CMake package accepts the same minor version only.
version=$(pkgc --modversion)
IFS=. read -r vmajor vminor _ <<<"$version"
soname=libpartd.so.$vmajor
((vmajor == 0)) && soname=$soname.$vminor
readelf -d "$libdir/libpartd.so" | grep -q "SONAME.*\[$soname\]" ||
    fail "libpartd.so's SONAME is not $soname"
grep -q "PARTD_VERSION_STRING \"$version\"" "$prefix/include/partd/version.h" ||
    fail "partd/version.h does not say $version (partd.pc does)"
ok "SONAME $soname, version.h and partd.pc say $version"

# needs_so BINARY: true if BINARY has libpartd.so in its NEEDED entries.
needs_so() { readelf -d "$1" | grep -q 'NEEDED.*libpartd\.so'; }

# --- 1. pkg-config
main=$src/tests/consumer/main.c
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
"$cc" "${san[@]}" -std=c11 -pedantic -Wall -Wextra -Werror \
    -o "$tmp/pc_shared" "$main" \
    $(pkgc --cflags --libs) || fail "build with pkg-config --cflags --libs"
needs_so "$tmp/pc_shared" || fail "pc_shared does not link libpartd.so"
LD_LIBRARY_PATH=$libdir "$tmp/pc_shared" || fail "pc_shared run"
resolved=$(LD_LIBRARY_PATH=$libdir ldd "$tmp/pc_shared" |
    awk '/libpartd/ {print $3}')
[[ "$resolved" -ef "$libdir/$soname" ]] ||
    fail "pc_shared loads libpartd from '$resolved', not $libdir"
ok "pkg-config, shared"

# shellcheck disable=SC2046
"$cc" "${san[@]}" -std=c11 -Wall -Werror -o "$tmp/pc_static" "$main" \
    $(pkgc --static --cflags) \
    $(pkgc --static --libs-only-L) -Wl,-Bstatic -lpartd -Wl,-Bdynamic \
    $(pkgc --static --libs | sed 's/\(^\| \)-lpartd\( \|$\)/ /') ||
    fail "build with pkg-config --static"
needs_so "$tmp/pc_static" && fail "pc_static still needs libpartd.so"
"$tmp/pc_static" || fail "pc_static run"
ok "pkg-config --static"

# --- 2. CMake find_package(partd)
cmake -S "$src/tests/consumer" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_C_FLAGS="${san[*]}" \
    >"$tmp/cm.log" 2>&1 ||
    { cat "$tmp/cm.log" >&2; fail "configure tests/consumer"; }
found=$(sed -n 's/^partd_DIR:PATH=//p' "$tmp/cm/CMakeCache.txt")
[[ "$found" -ef "$libdir/cmake/partd" ]] ||
    fail "find_package found partd in '$found', not $libdir/cmake/partd"
cmake --build "$tmp/cm" >>"$tmp/cm.log" 2>&1 ||
    { cat "$tmp/cm.log" >&2; fail "build tests/consumer"; }
needs_so "$tmp/cm/consumer" || fail "partd::partd is not the shared library"
"$tmp/cm/consumer" || fail "consumer (partd::partd) run"
needs_so "$tmp/cm/consumer_static" &&
    fail "partd::partd_static needs libpartd.so"
"$tmp/cm/consumer_static" || fail "consumer_static (partd::partd_static) run"
ok "find_package(partd): partd::partd, partd::partd_static"

# --- 3. The header on its own, as C11 -pedantic and as C++.
# shellcheck disable=SC2046
echo '#include <partd/partd.h>' |
    "$cc" -std=c11 -pedantic -Wall -Wextra -Werror -fsyntax-only -x c - \
        $(pkgc --cflags) || fail "partd.h alone as C11"
# shellcheck disable=SC2046
if command -v "$cxx" >/dev/null 2>&1; then
    echo '#include <partd/partd.h>' |
        "$cxx" -Wall -Wextra -Werror -fsyntax-only -x c++ - $(pkgc --cflags) ||
        fail "partd.h as C++"
fi
ok "partd.h compiles alone as C11 and C++"
echo "test_install: all ok"
