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

TU_ALLOCATOR_MAY_RETURN_NULL()

#endif
