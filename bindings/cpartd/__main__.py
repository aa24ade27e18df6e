# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""python3 -m cpartd: cpartd's and libpartd's versions, where cpartd is,
and whether `partd` is cpartd in this process (the drop-in)."""
import os
import sys


def _pth_file():
    """The drop-in's .pth file in a site directory, or None."""
    import site
    dirs = list(getattr(site, 'getsitepackages', lambda: [])())
    if getattr(site, 'ENABLE_USER_SITE', False):
        dirs.append(site.getusersitepackages())
    for d in dirs:
        path = os.path.join(d, 'cpartd-as-partd.pth')
        if os.path.isfile(path):
            return path
    return None


def main(argv=None):
    import cpartd
    lines = [
        'cpartd %s (partd API %s)' % (cpartd.__version__,
                                      cpartd.PARTD_API_VERSION),
        'libpartd %s' % cpartd.libpartd_version,
        'location %s' % os.path.dirname(cpartd.__file__),
    ]
    pth = _pth_file()
    try:
        import _cpartd_dropin
    except ImportError:
        _cpartd_dropin = None
    if pth is None or _cpartd_dropin is None:
        hook = 'not installed (pip install cpartd installs it)'
    else:
        hook = '%s, %s (%s=%s)' % (
            pth, 'on' if _cpartd_dropin.enabled() else 'off',
            _cpartd_dropin.ENV, os.environ.get(_cpartd_dropin.ENV, ''))
    try:
        import partd
        partd_is = ('cpartd' if partd is cpartd
                    else 'partd %s' % getattr(partd, '__version__', '?'))
    except ImportError:
        partd_is = 'not importable'
    lines += ['drop-in hook %s' % hook,
              'import partd gives %s' % partd_is,
              'drop-in active: %s' % ('yes' if partd_is == 'cpartd'
                                      else 'no')]
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
