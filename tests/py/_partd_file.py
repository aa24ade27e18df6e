# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""The reference's partd.File class, shared by the helper scripts here."""
import sys


def file_class():
    """partd.File without running partd/__init__.py, which imports pandas
    and numpy (0.5 s per process).  The class is the reference's own."""
    try:
        import importlib.util
        import types
        spec = importlib.util.find_spec('partd')
        pkg = types.ModuleType('partd')
        pkg.__path__ = list(spec.submodule_search_locations)
        sys.modules['partd'] = pkg
        from partd.file import File
        return File
    except Exception:
        sys.modules.pop('partd', None)
        import partd
        return partd.File


File = file_class()
