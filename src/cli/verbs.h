/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* The store verbs of `partd` (src/cli/verbs.c). */
#ifndef PARTD_CLI_VERBS_H
#define PARTD_CLI_VERBS_H

#include "opts.h"

/* append, get, keys, delete, drop, repair, stats. */
#define PD_CLI_NSTORE_VERBS 7
extern const pd_cli_verb *const pd_cli_store_verbs[PD_CLI_NSTORE_VERBS];

/* Every option of the store verbs, for `partd --help`. */
extern const pd_cli_opt *const pd_cli_store_opts;
extern const size_t pd_cli_nstore_opts;

/* What their help says after the options: keys, exit status. */
extern const char pd_cli_store_tail[];

#endif
