/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The store contract, run over every stack of stores.
 *
 * Each test is a Check loop test over s_stacks[]: it opens the stack, runs
 * one part of the contract against it (keeping a model of what every key
 * must hold), and closes it.  For stacks with a File underneath, the root is
 * a subdirectory of a private temporary directory, and on close we check
 * that the store wrote nothing beside its root.
 *
 * The client(server(...)) stacks serve a store with a Server (its own
 * thread, an ipc socket in a private temporary directory) and run the
 * contract through a Client with PD_CLIENT_SYNC (each call reports its own
 * outcome, not the next call) and a short timeout (a hang fails quickly).
 * Where the contract differs over the wire, the test says so beside the
 * expectation, citing partd/zmq.h.
 */
#include "testutil.h"
#include "zmq/zmq_internal.h" /* PD__WIRE_MAX_KEYS */

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- Stacks */

typedef struct cf_fix {
    pd_store *s;
    char *parent; /* private temp dir holding the File root, or NULL */
    char root[PATH_MAX];
    bool temp; /* the File was made by pd_file_open_temp */
    int stack;
    /* client(server(...)) stacks: s is the Client. */
    pd_server *srv;
    pd_store *served; /* the served store when borrowed (PD_BORROW) */
    char *ipcdir;     /* private temp dir of the server's ipc socket */
} cf_fix;

typedef int (*cf_open_fn)(cf_fix *f);

static int s_file_in(cf_fix *f, pd_store **out, unsigned flags) {
    f->parent = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->parent);
    snprintf(f->root, sizeof f->root, "%s/root", f->parent);
    return pd_file_open(out, f->root, PD_FILE_CREATE | flags);
}

static int s_log_in(cf_fix *f, pd_store **out) {
    f->parent = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->parent);
    snprintf(f->root, sizeof f->root, "%s/root", f->parent);
    return pd_log_open(out, f->root, PD_LOG_CREATE);
}

static int s_open_dict(cf_fix *f) { return pd_dict_open(&f->s); }

static int s_open_log(cf_fix *f) { return s_log_in(f, &f->s); }

static int s_open_file(cf_fix *f) { return s_file_in(f, &f->s, 0); }

static int s_open_file_nocache(cf_fix *f) {
    int rc = s_file_in(f, &f->s, 0);
    if (rc == 0) rc = pd_file_set_max_fds(f->s, 0);
    return rc;
}

static int s_open_file_temp(cf_fix *f) {
    f->parent = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->parent);
    f->temp = true;
    int rc = pd_file_open_temp(&f->s, f->parent, 0);
    if (rc == 0) {
        const char *p = pd_file_path(f->s);
        ck_assert_ptr_nonnull(p);
        snprintf(f->root, sizeof f->root, "%s", p);
    }
    return rc;
}

static int s_buffer(pd_store **out, pd_store *fast, pd_store *slow,
                    uint64_t memory) {
    int rc = pd_buffer_open(out, &fast, &slow, memory, 0);
    if (rc) {
        pd_close(&fast);
        pd_close(&slow);
    } else {
        ck_assert_ptr_null(fast);
        ck_assert_ptr_null(slow);
    }
    return rc;
}

static int s_open_buf_file(cf_fix *f, uint64_t memory) {
    pd_store *fast = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc) return rc;
    rc = s_file_in(f, &slow, 0);
    if (rc) {
        pd_close(&fast);
        return rc;
    }
    return s_buffer(&f->s, fast, slow, memory);
}

static int s_open_buf_file_big(cf_fix *f) {
    return s_open_buf_file(f, (uint64_t)1 << 30);
}

static int s_open_buf_file_tiny(cf_fix *f) { return s_open_buf_file(f, 64); }

static int s_open_buf_dict(cf_fix *f) {
    pd_store *fast = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc) return rc;
    rc = pd_dict_open(&slow);
    if (rc) {
        pd_close(&fast);
        return rc;
    }
    return s_buffer(&f->s, fast, slow, 256);
}

static int s_open_buf_nested(cf_fix *f) {
    pd_store *a = NULL, *b = NULL, *inner = NULL, *slow = NULL;
    int rc = pd_dict_open(&a);
    if (rc) return rc;
    rc = pd_dict_open(&b);
    if (rc) {
        pd_close(&a);
        return rc;
    }
    rc = s_buffer(&inner, a, b, 128);
    if (rc) return rc;
    rc = s_file_in(f, &slow, 0);
    if (rc) {
        pd_close(&inner);
        return rc;
    }
    return s_buffer(&f->s, inner, slow, 1024);
}

/* An Encode layer named `codec` over `inner` (taken). */
static int s_encode(pd_store **out, pd_store *inner, const char *codec) {
    int rc = pd_compress_open(out, &inner, codec, PD_LEVEL_DEFAULT, 0);
    if (rc)
        pd_close(&inner);
    else
        ck_assert_ptr_null(inner);
    return rc;
}

static int s_open_buf_log(cf_fix *f) {
    pd_store *fast = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc) return rc;
    rc = s_log_in(f, &slow);
    if (rc) {
        pd_close(&fast);
        return rc;
    }
    return s_buffer(&f->s, fast, slow, 64);
}

static int s_open_zstd_log(cf_fix *f) {
    pd_store *log = NULL;
    int rc = s_log_in(f, &log);
    return rc ? rc : s_encode(&f->s, log, "zstd");
}

static int s_open_zlib_file(cf_fix *f) {
    pd_store *file = NULL;
    int rc = s_file_in(f, &file, 0);
    return rc ? rc : s_encode(&f->s, file, "zlib");
}

static int s_open_blosc_file(cf_fix *f) {
    pd_store *file = NULL;
    int rc = s_file_in(f, &file, 0);
    return rc ? rc : s_encode(&f->s, file, "blosc");
}

static int s_open_zstd_dict(cf_fix *f) {
    pd_store *d = NULL;
    int rc = pd_dict_open(&d);
    return rc ? rc : s_encode(&f->s, d, "zstd");
}

static int s_open_snappy_buf(cf_fix *f) {
    pd_store *fast = NULL, *slow = NULL, *b = NULL;
    int rc = pd_dict_open(&fast);
    if (rc) return rc;
    rc = s_file_in(f, &slow, 0);
    if (rc) {
        pd_close(&fast);
        return rc;
    }
    rc = s_buffer(&b, fast, slow, 64);
    return rc ? rc : s_encode(&f->s, b, "snappy");
}

static int s_open_buf_lz4(cf_fix *f) {
    pd_store *fast = NULL, *file = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc) return rc;
    rc = s_file_in(f, &file, 0);
    if (rc == 0) rc = s_encode(&slow, file, "lz4");
    if (rc) {
        pd_close(&fast);
        return rc;
    }
    return s_buffer(&f->s, fast, slow, 256);
}

/* ------------------------------------------------ Fanout and Namespace */

/* A Fanout over inner[0..n) (taken). */
static int s_fanout(pd_store **out, pd_store **inner, size_t n) {
    int rc = pd_fanout_open(out, inner, n, 0);
    for (size_t i = 0; i < n; i++) {
        if (rc) pd_close(&inner[i]);
        ck_assert_ptr_null(inner[i]);
    }
    return rc;
}

static int s_open_fanout_dicts(cf_fix *f) {
    (void)f;
    pd_store *in[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3; i++) {
        int rc = pd_dict_open(&in[i]);
        if (rc) {
            for (int j = 0; j < i; j++) pd_close(&in[j]);
            return rc;
        }
    }
    return s_fanout(&f->s, in, 3);
}

/* Two Files in directories a and b of the fixture's root. */
static int s_open_fanout_files(cf_fix *f) {
    f->parent = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->parent);
    snprintf(f->root, sizeof f->root, "%s/root", f->parent);
    pd_store *in[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        char dir[PATH_MAX + 8];
        snprintf(dir, sizeof dir, "%s/%c", f->root, "ab"[i]);
        int rc = pd_file_open(&in[i], dir, PD_FILE_CREATE);
        if (rc) {
            pd_close(&in[0]);
            return rc;
        }
    }
    return s_fanout(&f->s, in, 2);
}

/* The name of the Namespace stacks (see `nsname` in s_stacks). */
#define S_NSNAME "shuffle-1"

static int s_namespace(cf_fix *f, pd_store *inner) {
    int rc = pd_namespace_open(&f->s, &inner, S_NSNAME, strlen(S_NSNAME), 0);
    if (rc)
        pd_close(&inner);
    else
        ck_assert_ptr_null(inner);
    return rc;
}

static int s_open_ns_dict(cf_fix *f) {
    pd_store *d = NULL;
    int rc = pd_dict_open(&d);
    return rc ? rc : s_namespace(f, d);
}

static int s_open_ns_file(cf_fix *f) {
    pd_store *file = NULL;
    int rc = s_file_in(f, &file, 0);
    return rc ? rc : s_namespace(f, file);
}

/* ------------------------------------------------- Client(Server(...)) */

static char *s_listdir(const char *dir, int *count);

/* Opens the store a server will serve; `reopen`: over the File root an
 * earlier open made (f->root), which must exist. */
typedef int (*cf_served_fn)(cf_fix *f, pd_store **out, bool reopen);

static int s_root_file(cf_fix *f, pd_store **out, bool reopen) {
    if (reopen) return pd_file_open(out, f->root, 0);
    return s_file_in(f, out, 0);
}

static int s_served_dict(cf_fix *f, pd_store **out, bool reopen) {
    (void)f;
    ck_assert(!reopen);
    return pd_dict_open(out);
}

static int s_served_file(cf_fix *f, pd_store **out, bool reopen) {
    return s_root_file(f, out, reopen);
}

static int s_served_buf_file64(cf_fix *f, pd_store **out, bool reopen) {
    pd_store *fast = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc) return rc;
    rc = s_root_file(f, &slow, reopen);
    if (rc) {
        pd_close(&fast);
        return rc;
    }
    return s_buffer(out, fast, slow, 64);
}

static int s_served_zlib_file(cf_fix *f, pd_store **out, bool reopen) {
    pd_store *file = NULL;
    int rc = s_root_file(f, &file, reopen);
    return rc ? rc : s_encode(out, file, "zlib");
}

/* The server's log: only errors (the server cannot go on) are shown; the
 * refusals the contract provokes (collisions) are expected. */
static void s_server_log(void *arg, int level, const char *line) {
    if (level == PD_LOG_ERROR)
        fprintf(stderr, "[%s] server: %s\n", (const char *)arg, line);
}

/* Each wait of the client: short, so that a server that hangs fails the
 * test rather than Check's timeout; longer under valgrind (8 MiB values). */
static int s_client_timeout(void) {
    return tu_under_valgrind() ? 60000 : 10000;
}

/* A server over the store `served` opens (NULL: the server's default
 * store, kept under f->ipcdir), listening on ipc in f->ipcdir, started in
 * its thread, and a client of it in f->s. */
static int s_open_remote(cf_fix *f, cf_served_fn served, bool borrow,
                         bool reopen, const char *name) {
    if (!f->ipcdir) f->ipcdir = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->ipcdir);
    pd_store *st = NULL;
    int rc = served ? served(f, &st, reopen) : 0;
    if (rc) return rc;
    char addr[PATH_MAX + 16];
    snprintf(addr, sizeof addr, "ipc://%s/srv.sock", f->ipcdir);
    const char *bind[] = {addr};
    pd_server_opts o = {0};
    o.bind = bind;
    o.nbind = 1;
    o.dir = f->ipcdir;
    o.log = s_server_log;
    o.log_arg = (void *)name;
    o.flags = borrow ? PD_BORROW : 0;
    pd_store *given = st;
    rc = pd_server_open(&f->srv, st ? &st : NULL, &o);
    if (rc) {
        pd_close(&st); /* on error the caller keeps the store */
        return rc;
    }
    if (borrow) {
        ck_assert_ptr_eq(st, given);
        f->served = st;
    } else {
        ck_assert_ptr_null(st);
    }
    rc = pd_server_start(f->srv);
    if (rc) return rc;
    pd_client_opts co = {0};
    co.timeout_ms = s_client_timeout();
    co.flags = PD_CLIENT_SYNC;
    return pd_client_open(&f->s, pd_server_address(f->srv, 0), &co);
}

/* Closes the client, then the server (which flushes the store and closes
 * it unless borrowed), then a borrowed store; checks that the server left
 * nothing in its ipc directory (libzmq removes the socket file; a default
 * store's temporary directory goes with the server). */
static void s_close_remote(cf_fix *f, const char *name) {
    int rc = pd_close(&f->s);
    ck_assert_msg(rc == 0, "[%s] client close -> %d: %s", name, rc,
                  pd_errmsg(NULL));
    ck_assert_ptr_null(f->s);
    ck_assert_int_eq(pd_close(&f->s), 0);
    rc = pd_server_close(&f->srv);
    ck_assert_msg(rc == 0, "[%s] server close -> %d: %s", name, rc,
                  pd_errmsg(NULL));
    ck_assert_ptr_null(f->srv);
    ck_assert_int_eq(pd_server_close(&f->srv), 0);
    if (f->served) {
        rc = pd_close(&f->served);
        ck_assert_msg(rc == 0, "[%s] served store close -> %d: %s", name, rc,
                      pd_errmsg(NULL));
    }
    int n;
    char *list = s_listdir(f->ipcdir, &n);
    ck_assert_msg(n == 0, "[%s] the server left in %s:\n%s", name, f->ipcdir,
                  list ? list : "(unreadable)");
    free(list);
}

/* `encoded`: the stack has an Encode layer, so pd_keys lists encoded sizes
 * (the stored frames, not the bytes a get returns), and a key that was
 * only given empty values holds frames (their encoding is not empty) and
 * is listed, as with Python partd's Encode. */
static const struct {
    const char *name;
    cf_open_fn open;
    bool encoded;
    /* client(server(served)): served NULL is the server's default store,
     * Buffer(Dict, File); `borrow`: served with PD_BORROW (the fixture
     * closes it after the server); `persists`: a File root that a new
     * server can reopen; `buffered`: the served store is a Buffer. */
    bool remote;
    cf_served_fn served;
    bool borrow, persists, buffered;
    /* A Namespace: every key gets the part nsname (partd.h), so keys at
     * PD_KEY_MAX or PD_KEY_MAX_PARTS no longer fit (PD_ERR_KEY). */
    const char *nsname;
} s_stacks[] = {
    {"dict", s_open_dict, false},
    {"file", s_open_file, false},
    {"file(max_fds=0)", s_open_file_nocache, false},
    {"file_temp", s_open_file_temp, false},
    {"buffer(dict,file,1GiB)", s_open_buf_file_big, false},
    {"buffer(dict,file,64)", s_open_buf_file_tiny, false},
    {"buffer(dict,dict,256)", s_open_buf_dict, false},
    {"buffer(buffer(dict,dict,128),file,1024)", s_open_buf_nested, false},
    {"zlib(file)", s_open_zlib_file, true},
    {"blosc(file)", s_open_blosc_file, true},
    {"zstd(dict)", s_open_zstd_dict, true},
    {"snappy(buffer(dict,file,64))", s_open_snappy_buf, true},
    {"buffer(dict,lz4(file),256)", s_open_buf_lz4, true},
    {"fanout(dict,dict,dict)", s_open_fanout_dicts, false},
    {"fanout(file,file)", s_open_fanout_files, false},
    {.name = "namespace(dict)", .open = s_open_ns_dict, .nsname = S_NSNAME},
    {.name = "namespace(file)", .open = s_open_ns_file, .nsname = S_NSNAME},
    {"log", s_open_log, false},
    {"buffer(dict,log,64)", s_open_buf_log, false},
    {"zstd(log)", s_open_zstd_log, true},
    {.name = "client(server(dict))",
     .remote = true,
     .served = s_served_dict,
     .borrow = true},
    {.name = "client(server(file))",
     .remote = true,
     .served = s_served_file,
     .persists = true},
    {.name = "client(server(buffer(dict,file,64)))",
     .remote = true,
     .served = s_served_buf_file64,
     .borrow = true,
     .persists = true,
     .buffered = true},
    {.name = "client(server(zlib(file)))",
     .encoded = true,
     .remote = true,
     .served = s_served_zlib_file,
     .persists = true},
    {.name = "client(server(default))", .remote = true, .buffered = true},
};
#define NSTACKS ((int)(sizeof s_stacks / sizeof s_stacks[0]))

static void s_open(cf_fix *f, int i) {
    memset(f, 0, sizeof *f);
    f->stack = i;
    int rc = s_stacks[i].remote
                 ? s_open_remote(f, s_stacks[i].served, s_stacks[i].borrow,
                                 false, s_stacks[i].name)
                 : s_stacks[i].open(f);
    ck_assert_msg(rc == 0 && f->s, "[%s] open -> %d: %s", s_stacks[i].name, rc,
                  pd_errmsg(NULL));
}

#define NAME(f) (s_stacks[(f)->stack].name)
#define ENCODED(f) (s_stacks[(f)->stack].encoded)
#define REMOTE(f) (s_stacks[(f)->stack].remote)
/* Bytes a Namespace stack adds to every key (0 for the others). */
#define NSBYTES(f)                                                             \
    (s_stacks[(f)->stack].nsname ? strlen(s_stacks[(f)->stack].nsname) : 0)

/* The Buffer of a stack: the store itself, or the one under its Encode
 * layer; NULL when there is none. */
static pd_store *s_buffer_of(pd_store *s) {
    pd_store *in = pd_encode_inner(s);
    if (in) s = in;
    return strcmp(pd_store_kind(s), "buffer") == 0 ? s : NULL;
}

/* Lists dir's entries (except . and ..) into a malloc'd newline-joined
 * string; *count gets the number of entries. */
static char *s_listdir(const char *dir, int *count) {
    DIR *d = opendir(dir);
    *count = -1;
    if (!d) return NULL;
    size_t cap = 256, len = 0;
    char *out = calloc(1, cap);
    struct dirent *e;
    *count = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        size_t n = strlen(e->d_name);
        while (len + n + 2 > cap) out = realloc(out, cap *= 2);
        memcpy(out + len, e->d_name, n);
        len += n;
        out[len++] = '\n';
        out[len] = 0;
        (*count)++;
    }
    closedir(d);
    return out;
}

/* Checks that the parent of a File root holds only the root. */
static void s_check_contained(cf_fix *f) {
    if (!f->parent) return;
    int n;
    char *list = s_listdir(f->parent, &n);
    const char *base = strrchr(f->root, '/');
    base = base ? base + 1 : f->root;
    char want[PATH_MAX + 2];
    snprintf(want, sizeof want, "%s\n", base);
    ck_assert_msg(n == 1 && list && strcmp(list, want) == 0,
                  "[%s] the store created files outside its root %s; "
                  "parent %s holds:\n%s",
                  NAME(f), f->root, f->parent, list ? list : "(unreadable)");
    free(list);
}

static void s_close(cf_fix *f) {
    s_check_contained(f);
    if (REMOTE(f)) {
        s_close_remote(f, NAME(f));
        tu_rmtree(f->ipcdir);
        free(f->ipcdir);
        f->ipcdir = NULL;
    }
    int rc = pd_close(&f->s);
    ck_assert_msg(rc == 0, "[%s] close -> %d: %s", NAME(f), rc,
                  pd_errmsg(NULL));
    ck_assert_ptr_null(f->s);
    /* Closing twice (the pointer is NULL now) is safe. */
    ck_assert_int_eq(pd_close(&f->s), 0);
    if (f->parent) {
        int n;
        char *list = s_listdir(f->parent, &n);
        if (f->temp)
            ck_assert_msg(n == 0, "[%s] temp dir left after close: %s", NAME(f),
                          list ? list : "?");
        else
            ck_assert_msg(n == 1, "[%s] root vanished or extra files: %s",
                          NAME(f), list ? list : "?");
        free(list);
        tu_rmtree(f->parent);
        free(f->parent);
        f->parent = NULL;
    }
}

/* ----------------------------------------------------------------- Model */

/* What each key must hold, keyed by the packed form (a 1-tuple packs as
 * the flat key, so the model treats them as one key, as the store must). */
typedef struct cf_ent {
    unsigned char *pk;
    size_t pklen;
    pd_key key; /* parts point into pk */
    pd_bytes *parts;
    char *val;
    size_t len, cap;
} cf_ent;

typedef struct cf_model {
    cf_ent *e;
    size_t n, cap;
} cf_model;

static cf_ent *s_model_find(cf_model *m, const pd_key *k, bool create) {
    size_t len = pd__key_packed_size(k);
    unsigned char *pk = malloc(len);
    pd__key_pack(k, pk);
    for (size_t i = 0; i < m->n; i++)
        if (m->e[i].pklen == len && memcmp(m->e[i].pk, pk, len) == 0) {
            free(pk);
            return &m->e[i];
        }
    if (!create) {
        free(pk);
        return NULL;
    }
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 16;
        m->e = realloc(m->e, m->cap * sizeof *m->e);
        /* pd_key.parts point into each entry's own allocation: fine. */
    }
    cf_ent *e = &m->e[m->n++];
    memset(e, 0, sizeof *e);
    e->pk = pk;
    e->pklen = len;
    e->parts = calloc(PD_KEY_MAX_PARTS, sizeof *e->parts);
    ck_assert_int_eq(pd__key_unpack(pk, len, &e->key, e->parts), 0);
    return e;
}

static void s_model_put(cf_ent *e, const void *v, size_t n, bool replace) {
    if (replace) e->len = 0;
    if (e->len + n + 1 > e->cap) {
        e->cap = (e->len + n + 1) * 2;
        e->val = realloc(e->val, e->cap);
    }
    if (n) memcpy(e->val + e->len, v, n);
    e->len += n;
}

static void s_model_free(cf_model *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].pk);
        free(m->e[i].parts);
        free(m->e[i].val);
    }
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* Appends through the store and the model. */
static void s_append(cf_fix *f, cf_model *m, size_t n, const pd_key *keys,
                     const pd_bytes *vals) {
    int rc = pd_append(f->s, n, keys, vals, 0);
    ck_assert_msg(rc == 0, "[%s] append -> %d: %s", NAME(f), rc,
                  pd_errmsg(f->s));
    for (size_t i = 0; i < n; i++)
        s_model_put(s_model_find(m, &keys[i], true), vals[i].data, vals[i].size,
                    false);
}

static void s_delete(cf_fix *f, cf_model *m, size_t n, const pd_key *keys) {
    int rc = pd_delete(f->s, n, keys, 0);
    ck_assert_msg(rc == 0, "[%s] delete -> %d: %s", NAME(f), rc,
                  pd_errmsg(f->s));
    for (size_t i = 0; i < n; i++) {
        cf_ent *e = s_model_find(m, &keys[i], false);
        if (e) e->len = 0;
    }
}

static const char *s_repr(const pd_key *k, char *buf, size_t cap) {
    if (pd_key_repr(k, buf, cap) == 0 && cap) snprintf(buf, cap, "(invalid)");
    return buf;
}

/* Gets every model key in one call (in model order, then reversed) and
 * compares; then lists the keys and compares the set with exact sizes. */
static void s_verify(cf_fix *f, cf_model *m) {
    char kb[256];
    for (int pass = 0; pass < 2; pass++) {
        size_t n = m->n;
        pd_key *keys = calloc(n + 1, sizeof *keys);
        for (size_t i = 0; i < n; i++) keys[i] = m->e[pass ? n - 1 - i : i].key;
        pd_result *r = NULL;
        int rc = pd_get(f->s, n, keys, &r, 0);
        ck_assert_msg(rc == 0, "[%s] get -> %d: %s", NAME(f), rc,
                      pd_errmsg(f->s));
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(pd_result_count(r), n);
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++) {
            cf_ent *e = &m->e[pass ? n - 1 - i : i];
            pd_bytes v = pd_result_value(r, i);
            total += v.size;
            ck_assert_msg(
                v.size == e->len &&
                    (v.size == 0 || memcmp(v.data, e->val, v.size) == 0),
                "[%s] key %s: got %zu bytes '%.*s', want %zu bytes "
                "'%.*s'",
                NAME(f), s_repr(&e->key, kb, sizeof kb), v.size,
                (int)(v.size > 200 ? 200 : v.size),
                v.data ? (const char *)v.data : "", e->len,
                (int)(e->len > 200 ? 200 : e->len), e->val ? e->val : "");
        }
        ck_assert_uint_eq(pd_result_total(r), total);
        pd_result_free(&r);
        ck_assert_ptr_null(r);
        free(keys);
    }

    /* The listing: exactly the keys with data, each once, exact sizes. */
    pd_keylist *kl = NULL;
    int rc = pd_keys(f->s, &kl, 0);
    ck_assert_msg(rc == 0, "[%s] keys -> %d: %s", NAME(f), rc, pd_errmsg(f->s));
    size_t want = 0;
    for (size_t i = 0; i < m->n; i++) want += m->e[i].len > 0;
    bool *seen = calloc(m->n + 1, 1);
    size_t got = 0;
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        ck_assert_int_eq(pd_keylist_key(kl, i, &k), 0);
        uint64_t size = pd_keylist_size(kl, i);
        cf_ent *e = s_model_find(m, &k, false);
        if (size == 0 && (!e || e->len == 0)) continue; /* empty: tolerated */
        if (ENCODED(f) && e && e->len == 0) continue;   /* empty frames */
        ck_assert_msg(e != NULL, "[%s] keys lists unknown key %s (size %llu)",
                      NAME(f), s_repr(&k, kb, sizeof kb),
                      (unsigned long long)size);
        /* A tuple must come back as a tuple, a flat key as flat. */
        ck_assert_msg((k.nparts >= 2) == (e->key.nparts >= 2),
                      "[%s] key %s listed with the wrong shape", NAME(f),
                      s_repr(&k, kb, sizeof kb));
        size_t idx = (size_t)(e - m->e);
        ck_assert_msg(!seen[idx], "[%s] keys lists %s twice", NAME(f),
                      s_repr(&k, kb, sizeof kb));
        seen[idx] = true;
        if (ENCODED(f))
            ck_assert_msg(size > 0, "[%s] keys: %s listed with size 0", NAME(f),
                          s_repr(&k, kb, sizeof kb));
        else
            ck_assert_msg(size == e->len,
                          "[%s] keys: %s has size %llu, want %zu", NAME(f),
                          s_repr(&k, kb, sizeof kb), (unsigned long long)size,
                          e->len);
        got++;
    }
    for (size_t i = 0; i < m->n; i++)
        ck_assert_msg(m->e[i].len == 0 || seen[i],
                      "[%s] keys does not list %s (%zu bytes)", NAME(f),
                      s_repr(&m->e[i].key, kb, sizeof kb), m->e[i].len);
    ck_assert_uint_eq(got, want);
    free(seen);
    pd_keylist_free(&kl);
    ck_assert_ptr_null(kl);
    pd_keylist_free(&kl); /* twice is safe */
}

static void s_expect(cf_fix *f, pd_key k, const char *want) {
    size_t len;
    char kb[256];
    char *got;
    int rc = tu_fetch1(f->s, k, &got, &len);
    ck_assert_msg(rc == 0, "[%s] get -> %d: %s", NAME(f), rc, pd_errmsg(f->s));
    ck_assert_msg(len == strlen(want) && memcmp(got, want, len) == 0,
                  "[%s] key %s: got '%s', want '%s'", NAME(f),
                  s_repr(&k, kb, sizeof kb), got, want);
    free(got);
}

#define K(s) PD_KEY_STR(s)
#define V(s) PD_BYTES((s), strlen(s))

/* ----------------------------------------------------------------- Tests */

START_TEST(append_order) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    pd_key k1 = K("k1"), k2 = K("k2");
    pd_bytes a = V("a"), b = V("b");
    s_append(&f, &m, 1, &k1, &a);
    s_append(&f, &m, 1, &k2, &b);
    s_expect(&f, k1, "a");
    /* One batch that repeats a key: values land in array order. */
    pd_key ks[] = {k1, k1, k2, k1, K("k3"), k2};
    pd_bytes vs[] = {V("c"), V("d"), V("e"), V("f"), V("g"), V("h")};
    s_append(&f, &m, 6, ks, vs);
    s_expect(&f, k1, "acdf");
    s_expect(&f, k2, "beh");
    s_expect(&f, K("k3"), "g");
    /* Many small appends across calls. */
    char buf[32];
    for (int i = 0; i < 300; i++) {
        snprintf(buf, sizeof buf, "<%d>", i);
        pd_bytes v = V(buf);
        pd_key k = i % 2 ? k1 : K("k4");
        s_append(&f, &m, 1, &k, &v);
    }
    s_verify(&f, &m);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

START_TEST(missing_and_zero) {
    cf_fix f;
    s_open(&f, _i);
    pd_key k = K("never-written");
    s_expect(&f, k, "");
    pd_result *r = (pd_result *)&f; /* must be overwritten */
    TU_OK(pd_get(f.s, 0, NULL, &r, 0), f.s);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(pd_result_count(r), 0);
    ck_assert_uint_eq(pd_result_total(r), 0);
    pd_bytes out = pd_result_value(r, 0); /* out of range */
    ck_assert_ptr_null(out.data);
    ck_assert_uint_eq(out.size, 0);
    pd_result_free(&r);
    TU_OK(pd_append(f.s, 0, NULL, NULL, 0), f.s);
    TU_OK(pd_delete(f.s, 0, NULL, 0), f.s);
    TU_OK(pd_iset(f.s, 0, NULL, NULL, 0), f.s);
    /* Empty values are fine and add nothing. */
    pd_bytes e = {NULL, 0};
    TU_OK(pd_append(f.s, 1, &k, &e, 0), f.s);
    s_expect(&f, k, "");
    pd_key kk = K("x");
    tu_append1(f.s, kk, "1", 1);
    TU_OK(pd_append(f.s, 1, &kk, &e, 0), f.s);
    s_expect(&f, kk, "1");
    /* Missing keys between present ones. */
    pd_key ks[] = {K("nope1"), kk, K("nope2"), kk};
    TU_OK(pd_get(f.s, 4, ks, &r, 0), f.s);
    ck_assert_uint_eq(pd_result_count(r), 4);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 0);
    ck_assert_uint_eq(pd_result_value(r, 2).size, 0);
    ck_assert_uint_eq(pd_result_value(r, 1).size, 1);
    ck_assert_uint_eq(pd_result_value(r, 3).size, 1);
    ck_assert_uint_eq(pd_result_total(r), 2);
    pd_result_free(&r);
    s_close(&f);
}
END_TEST

START_TEST(get_many) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    enum { N = 500 };
    char names[N][16], vals[N][32];
    pd_key keys[N];
    pd_bytes vs[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "key%04d", i);
        snprintf(vals[i], sizeof vals[i], "value-%d;", i * 7);
        keys[i] = K(names[i]);
        vs[i] = V(vals[i]);
    }
    s_append(&f, &m, N, keys, vs);
    s_append(&f, &m, N / 2, keys + N / 4, vs);
    /* One get of all keys in an arbitrary order, with repeats. */
    pd_key ask[N + 3];
    for (int i = 0; i < N; i++) ask[i] = keys[(i * 37) % N];
    ask[N] = keys[5];
    ask[N + 1] = K("missing");
    ask[N + 2] = keys[5];
    pd_result *r = NULL;
    TU_OK(pd_get(f.s, N + 3, ask, &r, 0), f.s);
    ck_assert_uint_eq(pd_result_count(r), N + 3);
    for (int i = 0; i < N + 3; i++) {
        cf_ent *e = s_model_find(&m, &ask[i], false);
        pd_bytes v = pd_result_value(r, (size_t)i);
        size_t wl = e ? e->len : 0;
        ck_assert_msg(v.size == wl && (wl == 0 || !memcmp(v.data, e->val, wl)),
                      "[%s] value %d of a %d-key get is wrong", NAME(&f), i,
                      N + 3);
    }
    pd_result_free(&r);
    s_verify(&f, &m);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

/* pd_get_into: the same values whether they fit the caller's buffer or
 * not; the buffer is never freed by the library (valgrind checks that). */
START_TEST(get_into) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    char big[6000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 23);
    pd_key keys[3] = {K("g1"), K("g2"), K("g3")};
    pd_bytes vs[3] = {PD_BYTES(big, sizeof big), V("short"), V("")};
    s_append(&f, &m, 3, keys, vs);
    s_append(&f, &m, 1, keys, vs + 1);
    size_t caps[] = {0, 16, sizeof big, sizeof big + 5 + 4096, 64 * 1024};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        char *buf = caps[c] ? malloc(caps[c]) : NULL;
        for (size_t n = 1; n <= 3; n++) {
            pd_result *r = NULL;
            TU_OK(pd_get_into(f.s, n, keys, buf, caps[c], &r, 0), f.s);
            ck_assert_uint_eq(pd_result_count(r), n);
            uint64_t total = 0;
            for (size_t i = 0; i < n; i++) {
                cf_ent *e = s_model_find(&m, &keys[i], false);
                pd_bytes v = pd_result_value(r, i);
                size_t wl = e ? e->len : 0;
                ck_assert_msg(v.size == wl &&
                                  (wl == 0 || !memcmp(v.data, e->val, wl)),
                              "[%s] get_into cap %zu: value %zu wrong",
                              NAME(&f), caps[c], i);
                total += wl;
            }
            /* In buf only if they fit, and then from its start. */
            if (pd_result_in(r, buf)) {
                ck_assert_uint_le(total, caps[c]);
                ck_assert_ptr_eq(pd_result_value(r, 0).data, buf);
            }
            if (caps[c] < total) ck_assert(!pd_result_in(r, buf));
            /* With room to spare, a store that does not decode reads there
             * (a Buffer too: it copies what it gathered into buf). */
            if (!ENCODED(&f) && caps[c] >= 64 * 1024)
                ck_assert_msg(pd_result_in(r, buf),
                              "[%s] get_into: values not in the buffer",
                              NAME(&f));
            pd_result_free(&r);
        }
        free(buf);
    }
    pd_result *r = NULL;
    ck_assert_int_eq(pd_get_into(f.s, 1, keys, NULL, 10, &r, 0), PD_ERR_MISUSE);
    ck_assert_ptr_null(r);
    ck_assert_int_eq(pd_result_in(NULL, big), 0);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

START_TEST(delete_keys) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    pd_key ks[] = {K("a"), K("b"), K("c")};
    pd_bytes vs[] = {V("AAA"), V("BBBB"), V("CCCCC")};
    s_append(&f, &m, 3, ks, vs);
    s_verify(&f, &m);
    pd_key del[] = {K("a"), K("missing"), K("c"), K("a")};
    s_delete(&f, &m, 4, del);
    s_verify(&f, &m);
    s_expect(&f, K("a"), "");
    /* Deleting a missing key is fine; appending after delete starts over. */
    s_delete(&f, &m, 1, del + 1);
    pd_bytes z = V("z");
    s_append(&f, &m, 1, ks, &z);
    s_expect(&f, K("a"), "z");
    s_verify(&f, &m);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

START_TEST(iset_idempotent) {
    cf_fix f;
    s_open(&f, _i);
    pd_key k = K("ik"), k2 = K("ik2"), k3 = K("ik3");
    pd_bytes v1 = V("v1"), v2 = V("second-value");
    TU_OK(pd_iset(f.s, 1, &k, &v1, 0), f.s);
    s_expect(&f, k, "v1");
    TU_OK(pd_iset(f.s, 1, &k, &v2, 0), f.s);
    s_expect(&f, k, "v1");
    /* iset replaces what appends put there. */
    tu_append1(f.s, k2, "appended-", 9);
    tu_append1(f.s, k2, "more", 4);
    TU_OK(pd_iset(f.s, 1, &k2, &v2, 0), f.s);
    s_expect(&f, k2, "second-value");
    /* A batch repeating a key: the first value wins, the rest are repeats. */
    pd_key ks[] = {k3, k3, k};
    pd_bytes vs[] = {V("first"), V("other"), V("ignored")};
    TU_OK(pd_iset(f.s, 3, ks, vs, 0), f.s);
    s_expect(&f, k3, "first");
    s_expect(&f, k, "v1");
    /* Appends after an iset go after it; a repeated iset still ignored. */
    tu_append1(f.s, k, "+a", 2);
    TU_OK(pd_iset(f.s, 1, &k, &v2, 0), f.s);
    s_expect(&f, k, "v1+a");
    /* Deleting does not reset the memory (only drop does). */
    TU_OK(pd_delete(f.s, 1, &k, 0), f.s);
    TU_OK(pd_iset(f.s, 1, &k, &v2, 0), f.s);
    s_expect(&f, k, "");
    /* An iset of a big value replacing a big appended one (spills). */
    char big[4000];
    memset(big, 'q', sizeof big);
    pd_key kb = K("big");
    tu_append1(f.s, kb, big, sizeof big);
    pd_bytes sv = V("small");
    TU_OK(pd_iset(f.s, 1, &kb, &sv, 0), f.s);
    s_expect(&f, kb, "small");
    s_close(&f);
}
END_TEST

START_TEST(drop_store) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    pd_bytes parts[] = {V("t"), V("u")};
    pd_key ks[] = {K("a"), K("b"), PD_KEY_TUPLE(parts, 2)};
    pd_bytes vs[] = {V("1"), V("22"), V("333")};
    s_append(&f, &m, 3, ks, vs);
    pd_key ik = K("iset-key");
    pd_bytes iv = V("one"), iv2 = V("two");
    TU_OK(pd_iset(f.s, 1, &ik, &iv, 0), f.s);
    TU_OK(pd_drop(f.s, 0), f.s);
    s_model_free(&m);
    s_verify(&f, &m); /* empty */
    s_expect(&f, ik, "");
    /* Usable afterwards, and the iset memory is gone. */
    TU_OK(pd_iset(f.s, 1, &ik, &iv2, 0), f.s);
    s_expect(&f, ik, "two");
    s_model_put(s_model_find(&m, &ik, true), "two", 3, true);
    s_append(&f, &m, 3, ks, vs);
    s_verify(&f, &m);
    TU_OK(pd_drop(f.s, 0), f.s);
    TU_OK(pd_drop(f.s, 0), f.s); /* twice */
    s_model_free(&m);
    s_verify(&f, &m);
    s_append(&f, &m, 1, ks, vs);
    s_verify(&f, &m);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

START_TEST(keys_listing) {
    cf_fix f;
    s_open(&f, _i);
    cf_model m = {0};
    s_verify(&f, &m); /* empty store lists nothing */
    pd_bytes p1[] = {V("x"), V("y")};
    pd_bytes p2[] = {V("x"), V("z"), V("w")};
    pd_bytes p3[] = {V("solo")};     /* ('solo',) is 'solo' */
    pd_bytes p4[] = {V(""), V("e")}; /* empty first part */
    pd_bytes p5[] = {V("q"), V("")}; /* empty last part */
    pd_key ks[] = {K("plain"),          PD_KEY_TUPLE(p1, 2),
                   PD_KEY_TUPLE(p2, 3), PD_KEY_TUPLE(p3, 1),
                   K("other"),          PD_KEY_TUPLE(p4, 2),
                   PD_KEY_TUPLE(p5, 2)};
    pd_bytes vs[] = {V("1"),     V("22"),     V("333"),    V("4444"),
                     V("55555"), V("666666"), V("7777777")};
    s_append(&f, &m, 7, ks, vs);
    s_append(&f, &m, 3, ks + 2, vs);
    pd_key solo = K("solo");
    s_expect(&f, solo, "444422");
    s_verify(&f, &m);
    /* The 1-tuple is listed as the flat key. */
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(f.s, &kl, 0), f.s);
    bool found = false;
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        ck_assert_int_eq(pd_keylist_key(kl, i, &k), 0);
        if (k.nparts == 0 && k.size == 4 && !memcmp(k.data, "solo", 4))
            found = true;
        if (k.nparts == 3) {
            ck_assert_uint_eq(k.parts[2].size, 1);
            ck_assert_int_eq(((const char *)k.parts[2].data)[0], 'w');
        }
    }
    ck_assert_msg(found, "[%s] ('solo',) not listed as 'solo'", NAME(&f));
    pd_key dummy;
    ck_assert_int_eq(pd_keylist_key(kl, pd_keylist_count(kl), &dummy),
                     PD_ERR_MISUSE);
    ck_assert_uint_eq(pd_keylist_size(kl, pd_keylist_count(kl)), 0);
    pd_keylist_free(&kl);
    s_model_free(&m);
    s_close(&f);
}
END_TEST

/* Builds the hostile key set.  Storage lives in `mem` (freed by caller). */
typedef struct cf_keys {
    int phase[64]; /* tuples whose first part names a flat key: phase 1 */
    pd_key k[64];
    pd_bytes parts[64][4];
    char *mem[64];
    size_t n;
    char escape_probe[PATH_MAX]; /* a path outside the root to watch */
} cf_keys;

static void s_kflat(cf_keys *ks, const void *p, size_t len) {
    char *c = malloc(len + 1);
    if (len) memcpy(c, p, len);
    ks->mem[ks->n] = c;
    ks->k[ks->n] = PD_KEY(c, len);
    ks->n++;
}

/* A File lays a tuple out as directories, so a tuple whose first part is
 * also a flat key collides with that key's file (PD_ERR_KEY, tested in
 * prefix_collision); such tuples run in a second phase. */
static void s_ktuple(cf_keys *ks, size_t np, ...) {
    va_list ap;
    ks->phase[ks->n] = 1;
    va_start(ap, np);
    ks->mem[ks->n] = NULL;
    for (size_t i = 0; i < np; i++) {
        const char *p = va_arg(ap, const char *);
        ks->parts[ks->n][i] = V(p);
    }
    va_end(ap);
    ks->k[ks->n] = PD_KEY_TUPLE(ks->parts[ks->n], np);
    ks->n++;
}

static void s_hostile(cf_keys *ks, cf_fix *f) {
    memset(ks, 0, sizeof *ks);
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
    s_kflat(ks, all, 256);
    s_kflat(ks, all + 1, 255); /* no NUL */
    s_kflat(ks, "a\0b", 3);
    s_kflat(ks, "\0", 1);
    s_kflat(ks, "", 0);
    s_kflat(ks, "/", 1);
    s_kflat(ks, "//", 2);
    s_kflat(ks, "a/b", 3);
    s_ktuple(ks, 2, "a", "b");
    ks->phase[ks->n - 1] = 0; /* no flat 'a' */
    s_kflat(ks, ".", 1);
    s_kflat(ks, "..", 2);
    s_kflat(ks, "...", 3);
    s_kflat(ks, "../x", 4);
    s_kflat(ks, "../root", 7);
    /* "../../name" from <parent>/root is dirname(parent)/name. */
    if (f->parent) {
        const char *slash = strrchr(f->parent, '/');
        int dl = slash ? (int)(slash - f->parent) : 0;
        snprintf(ks->escape_probe, sizeof ks->escape_probe,
                 "%.*s/pd-conformance-escape-%d", dl, f->parent, (int)getpid());
    }
    s_kflat(ks, "../../", 6);
    {
        char k[PATH_MAX];
        snprintf(k, sizeof k, "../../pd-conformance-escape-%d", (int)getpid());
        s_kflat(ks, k, strlen(k));
    }
    {
        char k[PATH_MAX + 16];
        if (f->parent)
            snprintf(k, sizeof k, "%s/abs-escape", f->parent);
        else
            snprintf(k, sizeof k, "/etc/passwd-like");
        s_kflat(ks, k, strlen(k));
    }
    s_kflat(ks, ".lock", 5);
    s_ktuple(ks, 2, ".lock", "x");
    s_ktuple(ks, 2, "x", ".lock");
    ks->phase[ks->n - 1] = 0;
    s_ktuple(ks, 2, "..", "y");
    s_ktuple(ks, 3, "", "", "");
    s_ktuple(ks, 2, "%41", "/");
    s_kflat(ks, "%41", 3);
    s_kflat(ks, "A", 1);
    s_kflat(ks, "%", 1);
    s_kflat(ks, "%%", 2);
    s_kflat(ks, "%#tmp", 5);
    s_kflat(ks, "%~x", 3);
    s_kflat(ks, "x!y", 3);
    s_kflat(ks, "xy", 2);
    s_kflat(ks, "\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87", 8); /* ключ */
    s_kflat(ks, "with space", 10);
    s_kflat(ks, " ", 1);
    s_kflat(ks, "UPPER", 5);
    s_kflat(ks, "upper", 5);
    s_kflat(ks, "a\nb", 3);
    s_kflat(ks, "-rf", 3);
    {
        char k[5000];
        memset(k, 'L', sizeof k);
        s_kflat(ks, k, 255);
        s_kflat(ks, k, 256);
        s_kflat(ks, k, 5000);
        k[100] = '/';
        s_kflat(ks, k, 5000);
        memset(k, '.', sizeof k);
        s_kflat(ks, k, 300);
        memset(k, 0xff, sizeof k);
        s_kflat(ks, k, 4000);
    }
    {
        char *k = malloc(PD_KEY_MAX);
        for (size_t i = 0; i < PD_KEY_MAX; i++) k[i] = "ab%/."[i % 5];
        s_kflat(ks, k, PD_KEY_MAX - NSBYTES(f)); /* the longest that fits */
        free(k);
    }
    s_ktuple(ks, 4, "p", "q", "r", "s");
    ks->phase[ks->n - 1] = 0;
    s_ktuple(ks, 3, "\xff\x01", "..", ".");
    ks->phase[ks->n - 1] = 0;
    ck_assert_uint_le(ks->n, 64);
}

static void s_keys_free(cf_keys *ks) {
    for (size_t i = 0; i < ks->n; i++) free(ks->mem[i]);
}

static void s_hostile_phase(cf_fix *f, cf_keys *all, int phase) {
    cf_model m = {0};
    cf_keys ks;
    memset(&ks, 0, sizeof ks);
    for (size_t i = 0; i < all->n; i++)
        if (all->phase[i] == phase) ks.k[ks.n++] = all->k[i];
    pd_bytes *vs = calloc(ks.n, sizeof *vs);
    char(*vb)[32] = calloc(ks.n, 32);
    for (size_t i = 0; i < ks.n; i++) {
        snprintf(vb[i], 32, "v%d.%zu;", phase, i);
        vs[i] = V(vb[i]);
    }
    /* All at once, then again one by one (another code path). */
    s_append(f, &m, ks.n, ks.k, vs);
    for (size_t i = 0; i < ks.n; i++) s_append(f, &m, 1, &ks.k[i], &vs[i]);
    /* Distinct keys did not merge in the model (nor may they in the store:
     * s_verify checks each value). */
    ck_assert_uint_eq(m.n, ks.n);
    s_verify(f, &m);
    /* ('A',) is 'A'. */
    size_t ia = ks.n;
    for (size_t i = 0; i < ks.n; i++)
        if (ks.k[i].nparts == 0 && ks.k[i].size == 1 &&
            ((const char *)ks.k[i].data)[0] == 'A')
            ia = i;
    if (ia < ks.n) {
        pd_bytes one[] = {V("A")};
        pd_key t1 = PD_KEY_TUPLE(one, 1);
        pd_bytes w = V("via-tuple");
        s_append(f, &m, 1, &t1, &w);
        char want[80];
        snprintf(want, sizeof want, "%s%svia-tuple", vb[ia], vb[ia]);
        s_expect(f, K("A"), want);
        ck_assert_uint_eq(m.n, ks.n);
    }
    s_verify(f, &m);
    /* iset over hostile keys. */
    TU_OK(pd_iset(f->s, ks.n, ks.k, vs, 0), f->s);
    for (size_t i = 0; i < ks.n; i++)
        s_model_put(s_model_find(&m, &ks.k[i], true), vs[i].data, vs[i].size,
                    true);
    s_verify(f, &m);
    /* Delete every other key. */
    for (size_t i = 0; i < ks.n; i += 2) s_delete(f, &m, 1, &ks.k[i]);
    s_verify(f, &m);
    s_check_contained(f);
    TU_OK(pd_drop(f->s, 0), f->s);
    s_model_free(&m);
    s_verify(f, &m);
    free(vs);
    free(vb);
}

/* Keys that touch the tuple separator of the wire.  partd/zmq.h (Keys on
 * the wire): a tuple crosses as its parts joined by "-|-" and the server
 * splits a key at every "-|-", so a key whose wire form would split into
 * other parts (a flat key containing "-|-", a part containing it, or parts
 * whose joins make a new one) cannot cross: the Client refuses it with
 * PD_ERR_KEY and a message naming it, before sending anything.  Every
 * other store takes these keys as any other bytes.  (No tuple here starts
 * with a part that is also a flat key: see prefix_collision.) */
static void s_hostile_sep(cf_fix *f) {
    pd_bytes t1[] = {V("x"), V("y-|-z")};
    pd_bytes t2[] = {V("-|-x"), V("")};
    pd_bytes t3[] = {V("q-|-r")};       /* a 1-tuple is the flat key */
    pd_bytes t4[] = {V("a-|"), V("b")}; /* "a-|-|-b" splits as a, |-b */
    pd_bytes t5[] = {V("-|"), V("|-")}; /* "-|-|-|-" splits as "", |, "" */
    pd_key bad[] = {K("a-|-b"),          K("-|-"),
                    K("-|--|-"),         PD_KEY_TUPLE(t1, 2),
                    PD_KEY_TUPLE(t2, 2), PD_KEY_TUPLE(t3, 1),
                    PD_KEY_TUPLE(t4, 2), PD_KEY_TUPLE(t5, 2)};
    /* These touch the separator but split back into their parts, as
     * Python's bytes.split does (leftmost first), so they cross. */
    pd_bytes g1[] = {V("a-"), V("|-b")};
    pd_bytes g2[] = {V("x-"), V("-y")};
    pd_bytes g3[] = {V("a"), V("|-b")};
    pd_bytes g4[] = {V("a|"), V("-b")};
    pd_bytes g5[] = {V(""), V("-")};
    pd_bytes g6[] = {V("-"), V("|")};
    pd_key good[] = {PD_KEY_TUPLE(g1, 2),
                     PD_KEY_TUPLE(g2, 2),
                     PD_KEY_TUPLE(g3, 2),
                     PD_KEY_TUPLE(g4, 2),
                     PD_KEY_TUPLE(g5, 2),
                     PD_KEY_TUPLE(g6, 2),
                     K("--|"),
                     K("|-"),
                     K("-||-")};
    enum {
        NBAD = sizeof bad / sizeof bad[0],
        NGOOD = sizeof good / sizeof good[0]
    };
    pd_bytes vs[NBAD > NGOOD ? NBAD : NGOOD];
    char vb[NBAD > NGOOD ? NBAD : NGOOD][16];
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        snprintf(vb[i], sizeof vb[i], "s%zu;", i);
        vs[i] = V(vb[i]);
    }
    cf_model m = {0};
    s_append(f, &m, NGOOD, good, vs);
    s_verify(f, &m);
    if (!REMOTE(f)) {
        s_append(f, &m, NBAD, bad, vs);
        s_verify(f, &m);
    } else {
        char kb[256];
        pd_result *r = NULL;
        for (size_t i = 0; i < NBAD; i++) {
            s_repr(&bad[i], kb, sizeof kb);
            int rc[4] = {pd_append(f->s, 1, &bad[i], &vs[i], 0),
                         pd_get(f->s, 1, &bad[i], &r, 0),
                         pd_delete(f->s, 1, &bad[i], 0),
                         pd_iset(f->s, 1, &bad[i], &vs[i], 0)};
            const char *op[4] = {"append", "get", "delete", "iset"};
            for (int j = 0; j < 4; j++)
                ck_assert_msg(rc[j] == PD_ERR_KEY, "[%s] %s %s -> %d, want %d",
                              NAME(f), op[j], kb, rc[j], PD_ERR_KEY);
            ck_assert_ptr_null(r);
            const char *msg = pd_errmsg(f->s);
            ck_assert_msg(strstr(msg, kb) && strstr(msg, "-|-"),
                          "[%s] message does not name %s and the "
                          "separator: %s",
                          NAME(f), kb, msg);
        }
        /* In a batch after good keys: nothing of it is sent. */
        pd_bytes np[] = {V("new")};
        pd_key batch[] = {PD_KEY_TUPLE(np, 1), good[0], bad[NBAD - 1]};
        int rc = pd_append(f->s, 3, batch, vs, 0);
        ck_assert_int_eq(rc, PD_ERR_KEY);
        s_expect(f, batch[0], "");
        /* The client is still in step with the server. */
        s_verify(f, &m);
    }
    TU_OK(pd_drop(f->s, 0), f->s);
    s_model_free(&m);
    s_verify(f, &m);
}

START_TEST(hostile_keys) {
    cf_fix f;
    s_open(&f, _i);
    cf_keys ks;
    s_hostile(&ks, &f);
    bool probe_existed =
        !*ks.escape_probe || access(ks.escape_probe, F_OK) == 0;
    s_hostile_phase(&f, &ks, 0);
    s_hostile_phase(&f, &ks, 1);
    s_hostile_sep(&f);
    if (!probe_existed)
        ck_assert_msg(access(ks.escape_probe, F_OK) != 0,
                      "[%s] a key escaped the store: %s exists", NAME(&f),
                      ks.escape_probe);
    s_keys_free(&ks);
    s_close(&f);
}
END_TEST

START_TEST(large_value) {
    cf_fix f;
    s_open(&f, _i);
    size_t n = 8u << 20;
    unsigned char *big = malloc(n);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big[i] = (unsigned char)x;
    }
    pd_key ks[] = {K("big"), K("small"), K("big")};
    pd_bytes vs[] = {{big, n - 1000}, V("s"), {big + n - 1000, 1000}};
    TU_OK(pd_append(f.s, 3, ks, vs, 0), f.s);
    pd_result *r = NULL;
    TU_OK(pd_get(f.s, 2, ks, &r, 0), f.s);
    pd_bytes v = pd_result_value(r, 0);
    ck_assert_uint_eq(v.size, n);
    ck_assert_msg(memcmp(v.data, big, n) == 0, "[%s] 8 MiB value differs",
                  NAME(&f));
    ck_assert_uint_eq(pd_result_value(r, 1).size, 1);
    pd_result_free(&r);
    /* Append once more after it (after a possible spill). */
    tu_append1(f.s, ks[0], "tail", 4);
    TU_OK(pd_get(f.s, 1, ks, &r, 0), f.s);
    v = pd_result_value(r, 0);
    ck_assert_uint_eq(v.size, n + 4);
    ck_assert(memcmp(v.data, big, n) == 0);
    ck_assert(memcmp((const char *)v.data + n, "tail", 4) == 0);
    pd_result_free(&r);
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(f.s, &kl, 0), f.s);
    for (size_t i = 0; i < pd_keylist_count(kl); i++) {
        pd_key k;
        pd_keylist_key(kl, i, &k);
        if (k.nparts == 0 && k.size == 3 && !memcmp(k.data, "big", 3)) {
            /* Random bytes: an Encode layer stores a little more. */
            if (ENCODED(&f))
                ck_assert_uint_ge(pd_keylist_size(kl, i), n + 4);
            else
                ck_assert_uint_eq(pd_keylist_size(kl, i), n + 4);
        }
    }
    pd_keylist_free(&kl);
    free(big);
    s_close(&f);
}
END_TEST

START_TEST(lock_unlock) {
    cf_fix f;
    s_open(&f, _i);
    pd_key k = K("lk");
    pd_bytes v = V("x");
    TU_OK(pd_lock(f.s), f.s);
    TU_OK(pd_lock(f.s), f.s);
    if (REMOTE(&f)) {
        /* partd/zmq.h: pd_lock on a client only serialises this handle's
         * calls; the served store is not locked, so another client of the
         * same server is not held up (its write lands before ours). */
        pd_client_opts co = {0};
        co.timeout_ms = s_client_timeout();
        co.flags = PD_CLIENT_SYNC;
        pd_store *other = NULL;
        TU_OK(pd_client_open(&other, pd_server_address(f.srv, 0), &co), NULL);
        pd_bytes o = V("o");
        TU_OK(pd_append(other, 1, &k, &o, 0), other);
        TU_OK(pd_close(&other), NULL);
        s_expect(&f, k, "o");
        TU_OK(pd_delete(f.s, 1, &k, 0), f.s);
    }
    TU_OK(pd_append(f.s, 1, &k, &v, PD_NOLOCK), f.s);
    TU_OK(pd_append(f.s, 1, &k, &v, 0), f.s);
    pd_result *r = NULL;
    TU_OK(pd_get(f.s, 1, &k, &r, PD_NOLOCK), f.s);
    ck_assert_uint_eq(pd_result_value(r, 0).size, 2);
    pd_result_free(&r);
    TU_OK(pd_get(f.s, 1, &k, &r, 0), f.s);
    pd_result_free(&r);
    TU_OK(pd_iset(f.s, 1, &k, &v, PD_NOLOCK), f.s);
    pd_keylist *kl = NULL;
    TU_OK(pd_keys(f.s, &kl, PD_NOLOCK), f.s);
    pd_keylist_free(&kl);
    TU_OK(pd_delete(f.s, 1, &k, PD_NOLOCK), f.s);
    TU_OK(pd_drop(f.s, PD_NOLOCK), f.s);
    TU_OK(pd_unlock(f.s), f.s);
    TU_OK(pd_unlock(f.s), f.s);
    int rc = pd_unlock(f.s);
    ck_assert_int_eq(rc, PD_ERR_MISUSE);
    ck_assert_int_eq(pd_errcode(f.s), PD_ERR_MISUSE);
    ck_assert_msg(strstr(pd_errmsg(f.s), "unlock") != NULL, "[%s] message: %s",
                  NAME(&f), pd_errmsg(f.s));
    /* Usable afterwards, and errors are cleared by the next success. */
    TU_OK(pd_append(f.s, 1, &k, &v, 0), f.s);
    ck_assert_str_eq(pd_errmsg(f.s), "ok");
    ck_assert_int_eq(pd_errcode(f.s), 0);
    s_expect(&f, k, "x");
    s_close(&f);
}
END_TEST

#define MISUSE(expr, code, op)                                                 \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        ck_assert_msg(rc_ == (code), "[%s] %s -> %d, want %d (%s)", NAME(&f),  \
                      #expr, rc_, (code), pd_errmsg(f.s));                     \
        ck_assert_int_eq(pd_errcode(f.s), (code));                             \
        const char *m_ = pd_errmsg(f.s);                                       \
        ck_assert_msg(m_ &&*m_ &&strcmp(m_, "ok") && strstr(m_, op),           \
                      "[%s] %s: message '%s' does not name '%s'", NAME(&f),    \
                      #expr, m_ ? m_ : "(null)", op);                          \
    } while (0)

#define MISUSE_NULL(expr, op)                                                  \
    do {                                                                       \
        int rc_ = (expr);                                                      \
        ck_assert_int_eq(rc_, PD_ERR_MISUSE);                                  \
        const char *m_ = pd_errmsg(NULL);                                      \
        ck_assert_msg(m_ &&strstr(m_, op), "%s: message '%s'", #expr, m_);     \
    } while (0)

START_TEST(misuse) {
    cf_fix f;
    s_open(&f, _i);
    pd_key k = K("m");
    pd_bytes v = V("v");
    pd_result *r = NULL;
    pd_keylist *kl = NULL;
    tu_append1(f.s, k, "keep", 4);

    /* NULL store. */
    MISUSE_NULL(pd_append(NULL, 1, &k, &v, 0), "append");
    MISUSE_NULL(pd_get(NULL, 1, &k, &r, 0), "get");
    ck_assert_ptr_null(r);
    MISUSE_NULL(pd_delete(NULL, 1, &k, 0), "delete");
    MISUSE_NULL(pd_iset(NULL, 1, &k, &v, 0), "iset");
    MISUSE_NULL(pd_drop(NULL, 0), "drop");
    MISUSE_NULL(pd_keys(NULL, &kl, 0), "keys");
    MISUSE_NULL(pd_lock(NULL), "lock");
    MISUSE_NULL(pd_unlock(NULL), "unlock");
    ck_assert_int_eq(pd_close(NULL), 0);
    ck_assert_str_eq(pd_store_kind(NULL), "(null)");

    /* NULL arrays with n > 0. */
    MISUSE(pd_append(f.s, 1, NULL, &v, 0), PD_ERR_MISUSE, "append");
    MISUSE(pd_append(f.s, 1, &k, NULL, 0), PD_ERR_MISUSE, "append");
    MISUSE(pd_get(f.s, 2, NULL, &r, 0), PD_ERR_MISUSE, "get");
    ck_assert_ptr_null(r);
    MISUSE(pd_get(f.s, 1, &k, NULL, 0), PD_ERR_MISUSE, "get");
    MISUSE(pd_delete(f.s, 1, NULL, 0), PD_ERR_MISUSE, "delete");
    MISUSE(pd_iset(f.s, 1, NULL, &v, 0), PD_ERR_MISUSE, "iset");
    MISUSE(pd_iset(f.s, 1, &k, NULL, 0), PD_ERR_MISUSE, "iset");
    MISUSE(pd_keys(f.s, NULL, 0), PD_ERR_MISUSE, "keys");
    pd_bytes badv = {NULL, 5};
    MISUSE(pd_append(f.s, 1, &k, &badv, 0), PD_ERR_MISUSE, "append");
    pd_key badk = PD_KEY(NULL, 3);
    MISUSE(pd_append(f.s, 1, &badk, &v, 0), PD_ERR_MISUSE, "append");
    pd_key badt = PD_KEY_TUPLE(NULL, 2);
    MISUSE(pd_get(f.s, 1, &badt, &r, 0), PD_ERR_MISUSE, "get");
    pd_bytes badparts[] = {V("a"), {NULL, 2}};
    pd_key badt2 = PD_KEY_TUPLE(badparts, 2);
    MISUSE(pd_delete(f.s, 1, &badt2, 0), PD_ERR_MISUSE, "delete");

    /* Unknown flag bits. */
    unsigned bad = 0x80u;
    MISUSE(pd_append(f.s, 1, &k, &v, bad), PD_ERR_MISUSE, "append");
    MISUSE(pd_get(f.s, 1, &k, &r, bad), PD_ERR_MISUSE, "get");
    MISUSE(pd_get(f.s, 1, &k, &r, PD_FSYNC), PD_ERR_MISUSE, "get");
    MISUSE(pd_delete(f.s, 1, &k, bad), PD_ERR_MISUSE, "delete");
    MISUSE(pd_iset(f.s, 1, &k, &v, bad), PD_ERR_MISUSE, "iset");
    MISUSE(pd_drop(f.s, bad), PD_ERR_MISUSE, "drop");
    MISUSE(pd_keys(f.s, &kl, bad), PD_ERR_MISUSE, "keys");
    MISUSE(pd_append(f.s, 0, NULL, NULL, 0x8000000u), PD_ERR_MISUSE, "append");

    /* Keys past the limits. */
    char *huge = calloc(1, PD_KEY_MAX + 1);
    pd_key hk = PD_KEY(huge, PD_KEY_MAX + 1);
    MISUSE(pd_append(f.s, 1, &hk, &v, 0), PD_ERR_LIMIT, "append");
    MISUSE(pd_get(f.s, 1, &hk, &r, 0), PD_ERR_LIMIT, "get");
    MISUSE(pd_delete(f.s, 1, &hk, 0), PD_ERR_LIMIT, "delete");
    MISUSE(pd_iset(f.s, 1, &hk, &v, 0), PD_ERR_LIMIT, "iset");
    pd_bytes hp[] = {{huge, PD_KEY_MAX / 2 + 1}, {huge, PD_KEY_MAX / 2}};
    pd_key hk2 = PD_KEY_TUPLE(hp, 2);
    MISUSE(pd_append(f.s, 1, &hk2, &v, 0), PD_ERR_LIMIT, "append");
    pd_bytes many[PD_KEY_MAX_PARTS + 1];
    for (int i = 0; i <= PD_KEY_MAX_PARTS; i++) many[i] = V("p");
    pd_key mk = PD_KEY_TUPLE(many, PD_KEY_MAX_PARTS + 1);
    MISUSE(pd_append(f.s, 1, &mk, &v, 0), PD_ERR_LIMIT, "append");
    MISUSE(pd_get(f.s, 1, &mk, &r, 0), PD_ERR_LIMIT, "get");
    /* A bad key late in a batch: nothing of the batch is applied. */
    pd_key mixed[] = {k, hk};
    pd_bytes mv[] = {v, v};
    MISUSE(pd_append(f.s, 2, mixed, mv, 0), PD_ERR_LIMIT, "append");
    s_expect(&f, k, "keep");
    /* At the limits exactly: fine (over the wire too, where the joined
     * form of a tuple is longer than PD_KEY_MAX). */
    pd_key mk64 = PD_KEY_TUPLE(many, PD_KEY_MAX_PARTS);
    memset(huge, 'h', PD_KEY_MAX);
    pd_bytes halves[] = {{huge, PD_KEY_MAX / 2}, {huge, PD_KEY_MAX / 2}};
    pd_key hk2max = PD_KEY_TUPLE(halves, 2);
    if (NSBYTES(&f)) {
        /* partd.h (Namespace): the name is one more part and its bytes;
         * keys at the limits are refused naming the key, one part or the
         * name's bytes less fit. */
        MISUSE(pd_append(f.s, 1, &mk64, &v, 0), PD_ERR_KEY, "('p', 'p'");
        MISUSE(pd_append(f.s, 1, &hk2max, &v, 0), PD_ERR_KEY, "('hhh");
        mk64.nparts--;
        halves[1].size -= NSBYTES(&f);
    }
    TU_OK(pd_append(f.s, 1, &mk64, &v, 0), f.s);
    s_expect(&f, mk64, "v");
    TU_OK(pd_append(f.s, 1, &hk2max, &v, 0), f.s);
    s_expect(&f, hk2max, "v");
    free(huge);
    if (REMOTE(&f)) {
        /* Over the wire only: a request carries at most PD__WIRE_MAX_KEYS
         * keys (zmq_internal.h; partd/zmq.h does not say so), and the
         * Client refuses a larger batch with PD_ERR_LIMIT before sending
         * it.  Local stores take any n; nothing is applied. */
        size_t nk = PD__WIRE_MAX_KEYS + 1;
        pd_key *lots = malloc(nk * sizeof *lots);
        pd_bytes *lv = malloc(nk * sizeof *lv);
        ck_assert(lots && lv);
        for (size_t i = 0; i < nk; i++) {
            lots[i] = k;
            lv[i] = v;
        }
        MISUSE(pd_get(f.s, nk, lots, &r, 0), PD_ERR_LIMIT, "get");
        ck_assert_ptr_null(r);
        MISUSE(pd_append(f.s, nk, lots, lv, 0), PD_ERR_LIMIT, "append");
        MISUSE(pd_delete(f.s, nk, lots, 0), PD_ERR_LIMIT, "delete");
        /* (pd_iset would send this batch as the one key it repeats.) */
        free(lots);
        free(lv);
    }

    /* Unlock without lock. */
    MISUSE(pd_unlock(f.s), PD_ERR_MISUSE, "unlock");
    /* After all that the store still works and the data is intact. */
    s_expect(&f, k, "keep");
    tu_append1(f.s, k, "!", 1);
    s_expect(&f, k, "keep!");
    ck_assert_str_eq(pd_errmsg(f.s), "ok");
    s_close(&f);
}
END_TEST

START_TEST(close_twice) {
    cf_fix f;
    s_open(&f, _i);
    tu_append1(f.s, K("c"), "data", 4);
    const char *kind = pd_store_kind(f.s);
    ck_assert(kind && *kind);
    if (REMOTE(&f)) ck_assert_str_eq(kind, "client");
    if (f.served) {
        /* A borrowed store outlives the client and the server (which
         * flushed it and released its lock): usable from this thread, with
         * what the client wrote. */
        pd_store *served = f.served;
        f.served = NULL; /* s_close_remote must leave it open */
        s_close_remote(&f, NAME(&f));
        tu_expect_str(served, K("c"), "data");
        tu_append1(served, K("c"), "!", 1);
        tu_expect_str(served, K("c"), "data!");
        TU_OK(pd_close(&served), NULL);
    }
    /* Checks nulling and a second close (of the client and the server,
     * for client stacks; closing them again, when closed above, is safe). */
    s_close(&f);
    pd_store *s = NULL;
    ck_assert_int_eq(pd_close(&s), 0);
    ck_assert_int_eq(pd_close(NULL), 0);
}
END_TEST

/* Data survives close and reopen for File-only stacks (non-temp), and for
 * client(server(...)) stacks over a File root: the client and the server
 * are closed (the server flushes its store), and a new server over the
 * same directory serves a new client. */
START_TEST(reopen_persists) {
    cf_fix f;
    s_open(&f, _i);
    bool remote = REMOTE(&f) && s_stacks[_i].persists;
    bool log = strcmp(pd_store_kind(f.s), "log") == 0;
    if (!remote && (!f.parent || f.temp ||
                    (strcmp(pd_store_kind(f.s), "file") != 0 && !log))) {
        s_close(&f);
        return;
    }
    pd_bytes tp[] = {V("t"), V("\x01/..")};
    pd_key ks[] = {K("p"), PD_KEY_TUPLE(tp, 2), PD_KEY("\0", 1)};
    pd_bytes vs[] = {V("1"), V("2"), V("3")};
    TU_OK(pd_append(f.s, 3, ks, vs, 0), f.s);
    if (remote) {
        s_close_remote(&f, NAME(&f));
        int rc = s_open_remote(&f, s_stacks[_i].served, s_stacks[_i].borrow,
                               true, NAME(&f));
        ck_assert_msg(rc == 0, "[%s] reopen -> %d: %s", NAME(&f), rc,
                      pd_errmsg(NULL));
        /* Appends after the reopen go after the old data. */
        tu_append1(f.s, ks[0], "+", 1);
        s_expect(&f, ks[0], "1+");
    } else {
        TU_OK(pd_close(&f.s), NULL);
        if (log)
            TU_OK(pd_log_open(&f.s, f.root, 0), NULL);
        else
            TU_OK(pd_file_open(&f.s, f.root, 0), NULL);
        s_expect(&f, ks[0], "1");
    }
    s_expect(&f, ks[1], "2");
    s_expect(&f, ks[2], "3");
    s_close(&f);
}
END_TEST

/* Key k, the second of two colliding keys, was just appended `want`, with
 * result rc: either refused with PD_ERR_KEY and a message naming the key
 * (repr), k then being empty, or done, k then holding want. */
static void s_collided(cf_fix *f, int rc, pd_key k, const char *repr,
                       const char *want) {
    if (rc != 0) {
        ck_assert_msg(rc == PD_ERR_KEY, "[%s] collision -> %d: %s", NAME(f), rc,
                      pd_errmsg(f->s));
        ck_assert_msg(strstr(pd_errmsg(f->s), repr) != NULL,
                      "[%s] message does not name the key: %s", NAME(f),
                      pd_errmsg(f->s));
        s_expect(f, k, "");
    } else {
        s_expect(f, k, want);
    }
}

/* A Buffer spilling everything: refused or done, flat ("1") and tup ("2")
 * readable either way. */
static void s_flush_collided(cf_fix *f, pd_key flat, pd_key tup) {
    int rc = pd_buffer_flush(s_buffer_of(f->s), 0, NULL, 0);
    ck_assert_msg(rc == 0 || rc == PD_ERR_KEY, "[%s] flush -> %d: %s", NAME(f),
                  rc, pd_errmsg(f->s));
    s_expect(f, flat, "1");
    s_expect(f, tup, "2");
}

/* A flat key and a tuple that starts with it ('p' and ('p', 'q')): a Dict
 * holds both; a File lays the tuple out as directory p/, which the file p
 * occupies, and may refuse with PD_ERR_KEY naming the key.  Either way the
 * data already there is intact and nothing crashes; a Buffer keeps what it
 * cannot spill in its fast store. */
START_TEST(prefix_collision) {
    cf_fix f;
    s_open(&f, _i);
    pd_bytes tp[] = {V("p"), V("q")};
    pd_key flat = K("p"), tup = PD_KEY_TUPLE(tp, 2);
    pd_bytes one = V("1"), two = V("2");
    TU_OK(pd_append(f.s, 1, &flat, &one, 0), f.s);
    int rc = pd_append(f.s, 1, &tup, &two, 0);
    s_collided(&f, rc, tup, "('p', 'q')", "2");
    s_expect(&f, flat, "1");
    /* Over the wire the Buffer is the server's: no command flushes it (and
     * the server thread owns it while it serves), but the server flushes
     * it when it closes, so the colliding key must go all the same. */
    bool remote_buffer = REMOTE(&f) && s_stacks[_i].buffered;
    bool buffer = s_buffer_of(f.s) != NULL || remote_buffer;
    if (buffer) {
        if (!remote_buffer) s_flush_collided(&f, flat, tup);
        /* Make the store closable: remove the tuple. */
        TU_OK(pd_delete(f.s, 1, &tup, 0), f.s);
    }
    /* The other order: the tuple first, then the flat key. */
    TU_OK(pd_drop(f.s, 0), f.s);
    TU_OK(pd_append(f.s, 1, &tup, &two, 0), f.s);
    rc = pd_append(f.s, 1, &flat, &one, 0);
    s_collided(&f, rc, flat, "'p'", "1");
    s_expect(&f, tup, "2");
    if (buffer) {
        if (!remote_buffer) s_flush_collided(&f, flat, tup);
        TU_OK(pd_delete(f.s, 1, &flat, 0), f.s);
    }
    s_close(&f);
}
END_TEST

int main(void) {
    const tu_case cases[] = {
        {"append_order", append_order},
        {"missing_and_zero", missing_and_zero},
        {"get_many", get_many},
        {"get_into", get_into},
        {"delete_keys", delete_keys},
        {"iset_idempotent", iset_idempotent},
        {"drop_store", drop_store},
        {"keys_listing", keys_listing},
        {"hostile_keys", hostile_keys},
        {"large_value", large_value},
        {"lock_unlock", lock_unlock},
        {"misuse", misuse},
        {"close_twice", close_twice},
        {"reopen_persists", reopen_persists},
        {"prefix_collision", prefix_collision},
    };
    return tu_run_cases("test_conformance", cases,
                        sizeof cases / sizeof cases[0], 60, NSTACKS);
}
