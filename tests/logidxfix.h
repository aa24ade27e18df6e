/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/* A bare Log index (a handle with no directory: one segment slot, no
 * descriptors) for the suites that apply records to it directly
 * (test_log_apply.c, test_log_extents.c). */
#ifndef PARTD_TESTS_LOGIDXFIX_H
#define PARTD_TESTS_LOGIDXFIX_H

#include "log/log.h"
#include "logfix.h"

static PD__UNUSED lg_store *s_index_new(void) {
    lg_store *l = calloc(1, sizeof *l);
    ck_assert_ptr_nonnull(l);
    l->sh = calloc(1, sizeof *l->sh);
    ck_assert_ptr_nonnull(l->sh);
    l->segs = calloc(1, sizeof *l->segs);
    ck_assert_ptr_nonnull(l->segs);
    l->segs[0].fd = -1;
    l->nsegs = l->capsegs = 1;
    l->wseg = UINT32_MAX;
    return l;
}

static PD__UNUSED void s_index_free(lg_store *l) {
    lg_index_reset(l);
    free(l->segs);
    free(l->sh);
    free(l->hint);
    free(l->hnext);
    free(l);
}

#endif /* PARTD_TESTS_LOGIDXFIX_H */
