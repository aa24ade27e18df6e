/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the Dict suites (tests/test_dict_*.c): opening a
 * Dict, and malloc returning NULL under the sanitizers (the NOMEM tests).
 */
#ifndef PARTD_TESTS_DICTFIX_H
#define PARTD_TESTS_DICTFIX_H

#include "testutil.h"
#include "dict/arena.h"
#include "dict/dict.h"
#include "core/ktab.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

/* The NOMEM tests ask malloc for 2^62 bytes; under AddressSanitizer that
 * must return NULL instead of aborting. */
__attribute__((visibility("default"), used)) const char *
__asan_default_options(void);
const char *__asan_default_options(void) {
    return "allocator_may_return_null=1";
}

__attribute__((visibility("default"), used)) const char *
__tsan_default_options(void);
const char *__tsan_default_options(void) {
    return "allocator_may_return_null=1";
}

static PD__UNUSED pd_store *s_open(void) {
    pd_store *d = NULL;
    ck_assert_int_eq(pd_dict_open(&d), 0);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(pd_store_kind(d), "dict");
    return d;
}

#endif
