/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* `partd append --writer W --attempt N`: one value as one writer attempt,
 * begun, appended and committed at once (partd.h, "Attempts"). */
#include "attempt.h"
#include "exit.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

int pd_cli_append_attempt(pd_store *s, const char *w, uint64_t attempt,
                          const pd_key *key, const pd_bytes *val,
                          unsigned flags, char *msg, size_t cap) {
    pd_key writer = PD_KEY(w, strlen(w));
    pd_attempt *a = NULL;
    int rc = pd_attempt_begin(s, &writer, attempt, &a, 0);
    if (rc == 0 && (rc = pd_attempt_append(a, 1, key, val, 0)) != 0) {
        snprintf(msg, cap, "writer '%s' attempt %" PRIu64 ": %s", w, attempt,
                 pd_errmsg(s));
        pd_attempt_abort(&a);
        return PD_CLI_EXIT_FAIL;
    }
    if (rc == 0) rc = pd_attempt_commit(&a, flags);
    if (rc == 0) return PD_CLI_EXIT_OK;
    snprintf(msg, cap, "writer '%s' attempt %" PRIu64 ": %s%s", w, attempt,
             pd_errmsg(s), rc == PD_ERR_CONFLICT ? " (nothing was added)" : "");
    return rc == PD_ERR_CONFLICT ? PD_CLI_EXIT_CONFLICT : PD_CLI_EXIT_FAIL;
}
