# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The opt-in drop-in: with cpartd installed by pip, CPARTD_AS_PARTD=1 makes
`import partd` give cpartd in every process (a subprocess, multiprocessing's
spawned children, dask's process workers); without it partd is partd.

These need the installed .pth hook: they run in scripts/test's pip pass
(tests/python/pip.sh, CPARTD_TEST_INSTALLED=1) and are skipped against a
build tree."""
import os
import subprocess
import sys

import pytest

import cpartd
from conftest import INSTALLED, SPAWNED_CHILD, ref


def hook_installed():
    import site
    dirs = site.getsitepackages() + [site.getusersitepackages()]
    return any(os.path.isfile(os.path.join(d, 'cpartd-as-partd.pth'))
               for d in dirs)


if not hook_installed():
    if INSTALLED:
        raise AssertionError('CPARTD_TEST_INSTALLED=1 but no '
                             'cpartd-as-partd.pth in a site directory')
    pytest.skip('the drop-in hook is installed by pip only',
                allow_module_level=True)


def run(code, env_value, tmp=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'CPARTD_AS_PARTD')}
    if env_value is not None:
        env['CPARTD_AS_PARTD'] = env_value
    if tmp is not None:  # a script file: spawn re-imports __main__
        script = os.path.join(tmp, 'script.py')
        with open(script, 'w') as f:
            f.write(code)
        argv = [sys.executable, script]
    else:
        argv = [sys.executable, '-c', code]
    r = subprocess.run(argv, env=env, capture_output=True, text=True,
                       timeout=180, cwd=tmp or '/')
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


WHICH = ("import partd, sys\n"
         "print(partd.__name__, 'cpartd' in sys.modules)\n")


def test_off_by_default():
    out = run(WHICH, None)
    assert out[0] == ('partd' if ref is not None else 'cpartd')
    assert out[1] == 'False' or ref is None  # cpartd not even imported


@pytest.mark.parametrize('value', ['0', '', 'yes'])
def test_only_1_turns_it_on(value):
    if ref is None:
        pytest.skip('needs the reference partd installed')
    assert run(WHICH, value) == ['partd', 'False']


def test_on_in_a_subprocess():
    out = run(
        "import partd, partd.buffer, partd.file\n"
        "from partd import Buffer, Dict, File\n"
        "from partd.pandas import PandasBlocks\n"
        "import cpartd\n"
        "assert partd is cpartd and partd.buffer is cpartd.buffer\n"
        "assert PandasBlocks is cpartd.PandasBlocks\n"
        "b = Buffer(Dict(), File(), available_memory=10)\n"
        "b.append({'x': b'Hello', 'y': b'abc'})\n"
        "b.append({'x': b'World!', 'y': b'def'})\n"
        "print(type(b).__module__, b.slow.get('x').decode())\n", '1')
    assert out == ['cpartd.buffer', 'HelloWorld!']


def test_on_in_spawned_children(tmp_path):
    out = run(
        SPAWNED_CHILD +
        "    with ctx.Pool(2) as pool:\n"
        "        print(all(pool.map(__import__('operator').truth,\n"
        "              [__import__('partd') is __import__('cpartd')])))\n",
        '1', tmp=str(tmp_path))
    assert out == ['True', 'True']


def test_dask_process_workers(tmp_path):
    pytest.importorskip('dask.bag')
    out = run(
        "import dask.bag as db\n"
        "def which(x):\n"
        "    import partd\n"
        "    return partd.__name__\n"
        "if __name__ == '__main__':\n"
        "    b = db.from_sequence(range(4), npartitions=4).map(which)\n"
        "    print(sorted(set(b.compute(scheduler='processes'))))\n"
        "    g = db.from_sequence(range(100), npartitions=5)\n"
        "    r = g.groupby(lambda x: x % 7, shuffle='disk')\n"
        "    r = r.map(lambda kv: (kv[0], sorted(kv[1]))).compute(\n"
        "        scheduler='processes')\n"
        "    print(sorted(r) == [(k, list(range(k, 100, 7))) for k in "
        "range(7)])\n",
        '1', tmp=str(tmp_path))
    assert out == ["['cpartd']", 'True']


def test_python_m_cpartd_reports_it():
    on = run("import runpy; runpy.run_module('cpartd', run_name='__main__')",
             '1')
    text = ' '.join(on)
    assert 'cpartd %s' % cpartd.__version__ in text
    assert 'drop-in active: yes' in text
    off = ' '.join(run("import runpy; runpy.run_module('cpartd', "
                       "run_name='__main__')", None))
    assert 'drop-in active: no' in off or ref is None
