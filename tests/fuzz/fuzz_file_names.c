/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * fuzz_file_names: the File store's key -> file name mapping.
 *
 * The input is read as a sequence of keys (fz_read_key; flat and tuple keys
 * of arbitrary bytes).  For each valid key, pd_file_filename on one store
 * (opened once) must give <root>/ + a relative path with no empty, "." or
 * ".." component and no component longer than 255 bytes, and two keys that
 * differ (packed form) must never get the same name.  The first few keys are
 * then appended to, read back, listed with pd_keys and deleted; a key that
 * conflicts with another (flat 'a' vs tuple ('a', 'b')) may fail with
 * PD_ERR_KEY and a message.
 */
#include "fuzz_util.h"

#include <limits.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define S_MAX_KEYS 32 /* keys per input */
#define S_MAX_IO 4    /* of which appended / read / deleted */

static pd_store *s_store;
static const char *s_root;
static size_t s_rootlen;

static void s_close_store(void) { pd_close(&s_store); }

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (pd_file_open_temp(&s_store, NULL, 0) != 0) {
        fprintf(stderr, "pd_file_open_temp: %s\n", pd_errmsg(NULL));
        exit(1);
    }
    s_root = pd_file_path(s_store);
    s_rootlen = strlen(s_root);
    atexit(s_close_store);
    return 0;
}

typedef struct s_ent {
    fz_key k;
    char *name;
    size_t namelen;
    char *model; /* what the key should hold */
    size_t mlen;
    int ok; /* appended successfully */
} s_ent;

static void s_check_name(const pd_key *k, const char *name, size_t n) {
    FZ_CHECK(strlen(name) == n, "name of %s has an embedded NUL", fz_short(k));
    FZ_CHECK(n > s_rootlen + 1 && memcmp(name, s_root, s_rootlen) == 0 &&
                 name[s_rootlen] == '/',
             "name of %s is not under the root: %s", fz_short(k), name);
    const char *p = name + s_rootlen + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t clen = slash ? (size_t)(slash - p) : strlen(p);
        FZ_CHECK(clen > 0, "name of %s has an empty component: %s", fz_short(k),
                 name);
        FZ_CHECK(clen <= 255, "name of %s has a %zu-byte component: %s",
                 fz_short(k), clen, name);
        FZ_CHECK(!(clen == 1 && p[0] == '.') &&
                     !(clen == 2 && p[0] == '.' && p[1] == '.'),
                 "name of %s has a '.' or '..' component: %s", fz_short(k),
                 name);
        if (p == name + s_rootlen + 1)
            FZ_CHECK(!(clen == 5 && memcmp(p, ".lock", 5) == 0),
                     "name of %s is the lock file: %s", fz_short(k), name);
        FZ_CHECK(!(clen >= 2 && p[0] == '%' && p[1] == '#'),
                 "name of %s uses the temporary prefix: %s", fz_short(k), name);
        if (!slash) break;
        p = slash + 1;
    }
}

static void s_errcheck(const char *op, const pd_key *k, int rc) {
    const char *msg = pd_errmsg(s_store);
    FZ_CHECK(msg && msg[0] && strcmp(msg, "ok") != 0,
             "%s %s failed (%d) with no message", op, fz_short(k), rc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static s_ent ents[S_MAX_KEYS];
    size_t n = 0;
    fz_reader r = {data, size};
    while (r.n && n < S_MAX_KEYS) {
        s_ent *e = &ents[n];
        memset(e, 0, sizeof *e);
        fz_read_key(&r, &e->k, PD_KEY_MAX);
        char why[64];
        if (pd__key_check(&e->k.key, why)) {
            char b[8];
            FZ_CHECK(pd_file_filename(s_store, &e->k.key, b, sizeof b) == 0,
                     "filename of an invalid key is not 0");
            continue;
        }
        size_t len = pd_file_filename(s_store, &e->k.key, NULL, 0);
        FZ_CHECK(len > 0, "no file name for valid key %s", fz_short(&e->k.key));
        e->name = malloc(len + 1);
        FZ_CHECK(e->name, "out of memory");
        FZ_CHECK(pd_file_filename(s_store, &e->k.key, e->name, len + 1) == len,
                 "filename length differs between measure and write");
        e->namelen = len;
        s_check_name(&e->k.key, e->name, len);
        /* a truncated buffer is a NUL-terminated prefix */
        char small[16];
        FZ_CHECK(pd_file_filename(s_store, &e->k.key, small, sizeof small) ==
                         len &&
                     strlen(small) == sizeof small - 1 &&
                     memcmp(small, e->name, sizeof small - 1) == 0,
                 "truncated file name is not a prefix");
        for (size_t j = 0; j < n; j++) {
            if (ents[j].namelen == len &&
                memcmp(ents[j].name, e->name, len) == 0)
                FZ_CHECK(fz_same_key(&ents[j].k.key, &e->k.key),
                         "keys %s and %s share the file name %s",
                         fz_short(&ents[j].k.key), fz_short(&e->k.key),
                         e->name);
        }
        n++;
    }

    /* Append / get / keys / delete on the first few keys. */
    size_t nio = n < S_MAX_IO ? n : S_MAX_IO;
    for (size_t i = 0; i < nio; i++) {
        s_ent *e = &ents[i];
        /* the value: the name's last bytes, never empty */
        const char *v = e->name + (e->namelen > 8 ? e->namelen - 8 : 0);
        size_t vlen = strlen(v);
        pd_bytes val = PD_BYTES(v, vlen);
        int rc = pd_append(s_store, 1, &e->k.key, &val, 0);
        s_ent *same = NULL;
        for (size_t j = 0; j < i && !same; j++)
            if (ents[j].ok && fz_same_key(&ents[j].k.key, &e->k.key))
                same = &ents[j];
        if (rc != 0) {
            FZ_CHECK(rc == PD_ERR_KEY, "append %s failed with %d: %s",
                     fz_short(&e->k.key), rc, pd_errmsg(s_store));
            FZ_CHECK(!same, "append to existing key %s failed: %s",
                     fz_short(&e->k.key), pd_errmsg(s_store));
            s_errcheck("append", &e->k.key, rc);
            continue;
        }
        s_ent *m = same ? same : e;
        m->model = realloc(m->model, m->mlen + vlen);
        FZ_CHECK(m->model, "out of memory");
        memcpy(m->model + m->mlen, v, vlen);
        m->mlen += vlen;
        if (!same) e->ok = 1;
    }
    size_t nkeys = 0;
    for (size_t i = 0; i < nio; i++) {
        s_ent *e = &ents[i];
        pd_result *res = NULL;
        int rc = pd_get(s_store, 1, &e->k.key, &res, 0);
        FZ_CHECK(rc == 0, "get %s failed: %s", fz_short(&e->k.key),
                 pd_errmsg(s_store));
        pd_bytes got = pd_result_value(res, 0);
        if (e->ok) {
            nkeys++;
            FZ_CHECK(got.size == e->mlen &&
                         memcmp(got.data, e->model, e->mlen) == 0,
                     "get %s: %zu bytes, expected %zu", fz_short(&e->k.key),
                     got.size, e->mlen);
        }
        pd_result_free(&res);
    }
    pd_keylist *kl = NULL;
    int rc = pd_keys(s_store, &kl, 0);
    FZ_CHECK(rc == 0, "keys failed: %s", pd_errmsg(s_store));
    FZ_CHECK(pd_keylist_count(kl) == nkeys, "keys lists %zu keys, expected %zu",
             pd_keylist_count(kl), nkeys);
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        FZ_CHECK(pd_keylist_key(kl, i, &k) == 0, "keylist_key failed");
        s_ent *m = NULL;
        for (size_t j = 0; j < nio && !m; j++)
            if (ents[j].ok && fz_same_key(&ents[j].k.key, &k)) m = &ents[j];
        FZ_CHECK(m, "keys lists %s, which was never appended", fz_short(&k));
        FZ_CHECK(pd_keylist_size(kl, i) == m->mlen,
                 "keys gives %s size %llu, expected %zu", fz_short(&k),
                 (unsigned long long)pd_keylist_size(kl, i), m->mlen);
    }
    pd_keylist_free(&kl);
    for (size_t i = 0; i < nio; i++) {
        if (!ents[i].ok) continue;
        rc = pd_delete(s_store, 1, &ents[i].k.key, 0);
        FZ_CHECK(rc == 0, "delete %s failed: %s", fz_short(&ents[i].k.key),
                 pd_errmsg(s_store));
        pd_result *res = NULL;
        FZ_CHECK(pd_get(s_store, 1, &ents[i].k.key, &res, 0) == 0 &&
                     pd_result_value(res, 0).size == 0,
                 "deleted key %s still reads data", fz_short(&ents[i].k.key));
        pd_result_free(&res);
    }
    FZ_CHECK(pd_keys(s_store, &kl, 0) == 0 && pd_keylist_count(kl) == 0,
             "keys after deleting everything is not empty");
    pd_keylist_free(&kl);
    FZ_CHECK(pd_drop(s_store, 0) == 0, "drop failed: %s", pd_errmsg(s_store));
    for (size_t i = 0; i < n; i++) {
        free(ents[i].name);
        free(ents[i].model);
    }
    return 0;
}
