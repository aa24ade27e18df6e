# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""Builds cpartd with setuptools: `pip install --no-build-isolation ./bindings`
(or `pip wheel --no-build-isolation --no-deps ./bindings`).  See README.md,
"pip".

The extension (ext/*.c) uses libpartd's private headers, so it is built from
this source tree (../src, ../include) and links libpartd's static archive,
found in this order:
  1. CPARTD_LIBPARTD_BUILD=DIR: a CMake build directory of this tree
     (DIR/libpartd.a; the codec libraries from DIR/partd.pc.in);
  2. ../build/libpartd.a: the in-tree build next to bindings/;
  3. pkg-config partd: an installed libpartd (its libdir's libpartd.a and
     its Libs.private), which must be this tree's version.
The version is the project's: project(partd VERSION ...) in ../CMakeLists.txt.
"""
import os
import re
import shlex
import subprocess
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PTH = 'cpartd-as-partd.pth'
# The codec and transport libraries libpartd links (partd.pc's Libs.private).
DEFAULT_LIBS = '-lzmq -lsnappy -lblosc -llz4 -lzstd -lz -lbz2 -pthread'


def fail(msg):
    sys.exit('cpartd setup: ' + msg)


def project_version():
    path = os.path.join(ROOT, 'CMakeLists.txt')
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        fail('cannot read the project version from %s: %s (build cpartd '
             'from the libpartd source tree)' % (path, e.strerror))
    m = re.search(r'project\(\s*partd\s+VERSION\s+([0-9][0-9.]*)', text)
    if not m:
        fail('no project(partd VERSION x.y.z) in %s' % path)
    return m.group(1)


def pkg_config(*args):
    try:
        out = subprocess.run(['pkg-config', *args], check=True, text=True,
                             capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.strip()


def libs_private(pc_text):
    m = re.search(r'^Libs\.private:(.*)$', pc_text or '', re.M)
    return m.group(1).strip() if m else DEFAULT_LIBS


def find_libpartd(version):
    """(path of libpartd.a, linker flags of its dependencies, where, the
    directory holding the generated partd/version.h)."""
    build = os.environ.get('CPARTD_LIBPARTD_BUILD')
    if build:
        archive = os.path.join(build, 'libpartd.a')
        if not os.path.isfile(archive):
            fail('CPARTD_LIBPARTD_BUILD=%s: no libpartd.a there (build it '
                 'with cmake --build %s)' % (build, build))
        return (archive, _build_libs(build), 'CPARTD_LIBPARTD_BUILD=' + build,
                os.path.join(build, 'include'))
    build = os.path.join(ROOT, 'build')
    archive = os.path.join(build, 'libpartd.a')
    if os.path.isfile(archive):
        return (archive, _build_libs(build), 'the in-tree build ' + build,
                os.path.join(build, 'include'))
    have = pkg_config('--modversion', 'partd')
    if have is None:
        fail('libpartd not found: set CPARTD_LIBPARTD_BUILD to a CMake build '
             'directory, build the tree into %s, or install libpartd where '
             'pkg-config finds partd.pc' % build)
    if have != version:
        fail('pkg-config partd is libpartd %s, this tree is %s: its private '
             'headers would not match' % (have, version))
    libdir = pkg_config('--variable=libdir', 'partd')
    archive = os.path.join(libdir or '', 'libpartd.a')
    if not os.path.isfile(archive):
        fail('pkg-config partd: no static library %s (cpartd links '
             'libpartd.a, which has the internals it uses)' % archive)
    flags = [t for t in shlex.split(pkg_config('--static', '--libs', 'partd')
                                    or '')
             if t not in ('-lpartd',) and not t.startswith('-L' + libdir)]
    return (archive, ' '.join(flags), 'pkg-config partd (%s)' % libdir,
            pkg_config('--variable=includedir', 'partd') or '')


def _build_libs(build):
    try:
        with open(os.path.join(build, 'partd.pc.in')) as f:
            return libs_private(f.read())
    except OSError:
        return DEFAULT_LIBS


def dep_cflags():
    out = pkg_config('--cflags', 'zlib', 'snappy', 'blosc', 'liblz4',
                     'libzstd', 'libzmq')
    return shlex.split(out) if out else []


class BuildPy(build_py):
    """Also writes cpartd/_version.py and puts the drop-in's .pth file at
    the top of the install (site-packages)."""

    def run(self):
        super().run()
        if self.dry_run:
            return
        path = os.path.join(self.build_lib, 'cpartd', '_version.py')
        with open(path, 'w') as f:
            f.write('# written by setup.py from the project version\n'
                    'version = %r\n' % VERSION)
        self.copy_file(os.path.join(HERE, PTH),
                       os.path.join(self.build_lib, PTH))

    def get_outputs(self, include_bytecode=1):
        return super().get_outputs(include_bytecode) + [
            os.path.join(self.build_lib, PTH),
            os.path.join(self.build_lib, 'cpartd', '_version.py')]


VERSION = project_version()
if not os.path.isdir(os.path.join(ROOT, 'src', 'core')):
    fail('%s/src is missing: cpartd builds from the libpartd source tree'
         % ROOT)
ARCHIVE, LIBS, WHERE, GEN_INCLUDE = find_libpartd(VERSION)
if not os.path.isfile(os.path.join(GEN_INCLUDE, 'partd', 'version.h')):
    fail('%s: no partd/version.h there (it is generated by the CMake build '
         'of this tree)' % (GEN_INCLUDE or 'pkg-config partd includedir'))
print('cpartd setup: version %s, libpartd from %s' % (VERSION, WHERE))
lib_flags = shlex.split(LIBS)

ext = Extension(
    'cpartd._cpartd',
    sources=sorted(os.path.relpath(p, HERE)
                   for p in glob(os.path.join(HERE, 'ext', '*.c'))),
    include_dirs=[os.path.join(ROOT, 'src'), GEN_INCLUDE,
                  os.path.join(ROOT, 'include')],
    define_macros=[('PARTD_STATIC', None), ('_GNU_SOURCE', None)],
    extra_compile_args=['-std=c11', '-fvisibility=hidden',
                        '-Wno-missing-field-initializers'] + dep_cflags(),
    extra_objects=[ARCHIVE],
    # rebuilt when libpartd or a header changes, not only its own sources
    depends=[ARCHIVE] + sorted(
        glob(os.path.join(ROOT, 'src', '**', '*.h'), recursive=True) +
        glob(os.path.join(ROOT, 'include', 'partd', '*.h')) +
        [os.path.join(GEN_INCLUDE, 'partd', 'version.h')] +
        glob(os.path.join(HERE, 'ext', '*.h'))),
    extra_link_args=[t for t in lib_flags if not t.startswith('-l')],
    libraries=[t[2:] for t in lib_flags if t.startswith('-l')] + ['m'],
)

setup(version=VERSION, ext_modules=[ext], cmdclass={'build_py': BuildPy})
