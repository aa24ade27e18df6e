# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""install_as_partd() in this process, and the partd_shim for children."""
import os
import subprocess
import sys

from conftest import SPAWNED_CHILD, build_python_dir


def shim_dir(py):
    """The build's partd_shim, or the source tree's (an installed cpartd:
    the shim is not installed)."""
    built = os.path.join(py, 'partd_shim')
    if os.path.isdir(built):
        return built
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(here)), 'bindings',
                        'partd_shim')


def run(code, shim=False, tmp=None):
    env = dict(os.environ)
    env.pop('CPARTD_AS_PARTD', None)  # the drop-in stays off here
    py = build_python_dir()
    env['PYTHONPATH'] = (shim_dir(py) + ':' + py) if shim else py
    if tmp is not None:          # a script file (multiprocessing's spawn
        script = os.path.join(tmp, 'script.py')   # re-imports __main__)
        with open(script, 'w') as f:
            f.write(code)
        argv = [sys.executable, script]
    else:
        argv = [sys.executable, '-c', code]
    r = subprocess.run(argv, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_install_as_partd():
    out = run(
        "import partd as before\n"          # the reference, loaded first
        "import cpartd\n"
        "m = cpartd.install_as_partd()\n"
        "import partd, partd.file, partd.core, partd.buffer, partd.dict\n"
        "import partd.utils, partd.encode, partd.compressed\n"
        "import partd.pickle, partd.numpy, partd.pandas\n"
        "from partd.file import File, cleanup_files\n"
        "from partd.core import token, Interface\n"
        "from partd.buffer import keys_to_flush\n"
        "from partd.utils import frame, framesplit, tmpfile\n"
        "assert m is cpartd and partd is cpartd\n"
        "assert partd.file is cpartd.file and File is cpartd.File\n"
        "assert partd.numpy is cpartd.numpy, partd.numpy\n"
        "assert partd.numpy.__name__ == 'cpartd.numpy'\n"
        "assert partd.numpy.__spec__.name == 'cpartd.numpy'\n"
        "assert partd.pandas.PandasBlocks is cpartd.PandasBlocks\n"
        "import partd.zmq\n"
        "from partd import Client, Server\n"
        "assert partd.zmq is cpartd.zmq and Server is cpartd.zmq.Server\n"
        "assert Client is cpartd.zmq.Client\n"
        "assert before is not partd\n"
        "import sys\n"
        "assert all(m.__name__.startswith('cpartd') for n, m in "
        "sys.modules.items() if n.startswith('partd.'))\n"
        "p = partd.PandasBlocks(partd.Buffer(partd.Dict(), partd.File()))\n"
        "assert isinstance(p, partd.Encode)\n"
        "assert isinstance(p.partd.slow, partd.File)\n"
        "cpartd.install_as_partd()\n"          # idempotent
        "print('ok')\n")
    assert out.strip() == 'ok'


def test_shim_for_child_processes():
    out = run(
        "import partd, partd.file\n"
        "import cpartd\n"
        "assert partd is cpartd, partd\n"
        "assert partd.file.File is cpartd.File\n"
        "p = partd.File()\n"
        "p.append({'x': b'1'})\n"
        "print(p.get('x').decode())\n", shim=True)
    assert out.strip() == '1'


def test_shim_grandchild_multiprocessing(tmp_path):
    # multiprocessing children (spawn) inherit PYTHONPATH, so they get the
    # shim too.
    out = run(SPAWNED_CHILD, shim=True, tmp=str(tmp_path))
    assert out.strip() == 'True'


def test_import_is_fast_and_lazy():
    out = run(
        "import sys, cpartd\n"
        "print('pandas' in sys.modules)\n"
        "cpartd.PandasBlocks\n"
        "print('pandas' in sys.modules)\n")
    assert out.split() == ['False', 'True']
