# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
"""A `partd` that is cpartd: put this directory's parent first on
PYTHONPATH (with cpartd's directory), and `import partd` in any process
gives cpartd, with partd.X as cpartd.X.

    PYTHONPATH=<build>/python/partd_shim:<build>/python python3 ...
"""
import cpartd

cpartd.install_as_partd()
