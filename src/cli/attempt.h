/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* `partd append --writer W --attempt N` (src/cli/attempt.c). */
#ifndef PARTD_CLI_ATTEMPT_H
#define PARTD_CLI_ATTEMPT_H

#include "partd/partd.h"

#include <stddef.h>
#include <stdint.h>

/* Appends val to key on s as attempt `attempt` of writer w (a flat key: its
 * bytes), committed at once (flags: PD_FSYNC goes to the commit).  Returns
 * PD_CLI_EXIT_OK, or PD_CLI_EXIT_CONFLICT (another attempt of w committed
 * first: nothing was added) or PD_CLI_EXIT_FAIL with msg saying why. */
int pd_cli_append_attempt(pd_store *s, const char *w, uint64_t attempt,
                          const pd_key *key, const pd_bytes *val,
                          unsigned flags, char *msg, size_t cap);

#endif
