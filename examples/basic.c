/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * libpartd in one page: a Buffer keeps appends in memory (a Dict) and spills
 * the largest keys to disk (a File store) once it holds more than a limit.
 * Built and run by CTest as example_basic; exits non-zero if anything is not
 * as expected.
 */
#include <partd/partd.h>

#include <stdio.h>
#include <string.h>

/* Reports a failed call with the store's message (NULL: a pd_*_open). */
static int fail(const char *what, const pd_store *store) {
    fprintf(stderr, "%s: %s\n", what, pd_errmsg(store));
    return 1;
}

int main(void) {
    pd_store *fast = NULL, *slow = NULL, *buf = NULL;
    pd_result *res = NULL;
    pd_keylist *list = NULL;
    int bad = 1;

    /* A File store in a new temporary directory, removed on close, under a
     * Buffer that holds at most 16 bytes in the Dict.  The Buffer takes
     * ownership of both (and sets fast and slow to NULL). */
    if (pd_dict_open(&fast) != 0) return fail("dict", NULL);
    if (pd_file_open_temp(&slow, NULL, 0) != 0) {
        bad = fail("file", NULL);
        goto out;
    }
    if (pd_buffer_open(&buf, &fast, &slow, 16, 0) != 0) {
        bad = fail("buffer", NULL);
        goto out;
    }

    /* One batch: three keys, one a tuple ('x', 'y') as in Python partd.
     * A key may repeat; its values are appended in order. */
    pd_bytes xy[2] = {PD_BYTES("x", 1), PD_BYTES("y", 1)};
    pd_key keys[4] = {PD_KEY("alice", 5), PD_KEY("bob", 3), PD_KEY_TUPLE(xy, 2),
                      PD_KEY("alice", 5)};
    pd_bytes vals[4] = {PD_BYTES("Hello, ", 7), PD_BYTES("0123456789", 10),
                        PD_BYTES("tuple", 5), PD_BYTES("world", 5)};
    if (pd_append(buf, 4, keys, vals, 0) != 0) {
        bad = fail("append", buf);
        goto out;
    }
    /* The next append first spills the largest keys to the File store. */
    if (pd_append(buf, 1, &keys[1], &vals[1], 0) != 0) {
        bad = fail("append", buf);
        goto out;
    }

    /* Get three keys back in one call; values come in append order. */
    if (pd_get(buf, 3, keys, &res, 0) != 0) {
        bad = fail("get", buf);
        goto out;
    }
    const char *want[3] = {"Hello, world", "01234567890123456789", "tuple"};
    for (size_t i = 0; i < 3; i++) {
        pd_bytes v = pd_result_value(res, i);
        if (v.size != strlen(want[i]) || memcmp(v.data, want[i], v.size)) {
            fprintf(stderr, "get: value %zu is not '%s'\n", i, want[i]);
            goto out;
        }
        printf("value %zu: %.*s\n", i, (int)v.size, (const char *)v.data);
    }

    /* List the keys with their sizes. */
    if (pd_keys(buf, &list, 0) != 0) {
        bad = fail("keys", buf);
        goto out;
    }
    for (size_t i = 0; i < pd_keylist_count(list); i++) {
        pd_key k;
        char name[64];
        pd_keylist_key(list, i, &k);
        pd_key_repr(&k, name, sizeof name);
        printf("key %s: %llu bytes\n", name,
               (unsigned long long)pd_keylist_size(list, i));
    }
    if (pd_keylist_count(list) != 3) goto out;
    printf("in memory: %llu bytes\n",
           (unsigned long long)pd_buffer_memory_usage(buf));

    /* Errors are negative codes with a message naming what went wrong. */
    pd_store *missing = NULL;
    int rc = pd_file_open(&missing, "/nonexistent/store", 0);
    printf("expected error %d (%s): %s\n", rc, pd_strerror(rc),
           pd_errmsg(NULL));
    if (rc != PD_ERR_IO || missing != NULL) goto out;

    bad = 0;
out:
    pd_result_free(&res);
    pd_keylist_free(&list);
    /* Closing the Buffer flushes it into the File store, then closes both
     * (which removes the temporary directory). */
    if (pd_close(&buf) != 0) bad = fail("close", NULL);
    pd_close(&fast);
    pd_close(&slow);
    return bad;
}
