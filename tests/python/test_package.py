# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""cpartd as a package: its version (the project's), the partd API level it
follows, `python3 -m cpartd`, the typing files; installed by pip, its
metadata (checked in scripts/test's pip pass, CPARTD_TEST_INSTALLED=1)."""
import ast
import os
import re
import subprocess
import sys

import pytest

import cpartd
from conftest import INSTALLED, repo_root


def project_version():
    with open(os.path.join(repo_root(), 'CMakeLists.txt')) as f:
        return re.search(r'project\(\s*partd\s+VERSION\s+([0-9.]+)',
                         f.read()).group(1)


def test_version_is_the_projects():
    assert cpartd.__version__ == project_version()
    assert cpartd.libpartd_version == project_version()
    # a public version (PEP 440, no local part): package indexes take it
    assert re.fullmatch(r'[0-9]+(\.[0-9]+)*', cpartd.__version__)
    assert cpartd.PARTD_API_VERSION == '1.4'


def test_python_m_cpartd():
    env = {k: v for k, v in os.environ.items() if k != 'CPARTD_AS_PARTD'}
    r = subprocess.run([sys.executable, '-m', 'cpartd'], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert 'cpartd %s (partd API 1.4)' % cpartd.__version__ in out
    assert 'libpartd %s' % cpartd.libpartd_version in out
    assert 'drop-in active: no' in out


def test_typing_files():
    pkg = os.path.dirname(cpartd.__file__)
    assert os.path.isfile(os.path.join(pkg, 'py.typed'))
    with open(os.path.join(pkg, '_cpartd.pyi')) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets)
    public = {n for n in dir(cpartd._cpartd) if not n.startswith('__')}
    assert public <= names, public - names
    # and every method of the store types
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for cls in ('Store', 'Dict', 'File', 'Buffer', 'Client', 'Server'):
        have = {f.name for f in classes[cls].body
                if isinstance(f, ast.FunctionDef)}
        real = {m for m in vars(getattr(cpartd._cpartd, cls))
                if not m.startswith('__')}
        assert real <= have, (cls, real - have)


def test_installed_metadata():
    if not INSTALLED:
        pytest.skip('cpartd not installed by pip (scripts/test checks it)')
    from importlib import metadata
    assert metadata.version('cpartd') == cpartd.__version__
    md = metadata.metadata('cpartd')
    assert md['Name'] == 'cpartd'
    assert md['License'] == 'BSD-3-Clause'
    assert md['Requires-Python'] == '>=3.10'
    assert set(md.get_all('Provides-Extra')) == {'numpy', 'pandas'}
    files = {str(f) for f in metadata.files('cpartd')}
    for f in ('cpartd/__init__.py', 'cpartd/py.typed', 'cpartd/_cpartd.pyi',
              'cpartd/_version.py', 'cpartd-as-partd.pth',
              '_cpartd_dropin.py'):
        assert f in files, f
    assert any(f.startswith('cpartd/_cpartd.') and f.endswith('.so')
               for f in files)
    dist = metadata.distribution('cpartd')
    assert dist.read_text('INSTALLER').strip() == 'pip'
