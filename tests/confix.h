/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The fixture shared by the conformance suites (test_conformance_*.c): the
 * store contract, run over every stack of stores.
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
#ifndef PARTD_TESTS_CONFIX_H
#define PARTD_TESTS_CONFIX_H

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
    /* fanout(client,client) stacks: the servers (over their own Dicts),
     * their ipc sockets in ipcdir; s is the Fanout (or a layer on it). */
    pd_server *fsrv[2];
} cf_fix;

typedef int (*cf_open_fn)(cf_fix *f);

static PD__UNUSED int s_file_in(cf_fix *f, pd_store **out, unsigned flags) {
    f->parent = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->parent);
    snprintf(f->root, sizeof f->root, "%s/root", f->parent);
    return pd_file_open(out, f->root, PD_FILE_CREATE | flags);
}

static PD__UNUSED int s_log_in(cf_fix *f, pd_store **out) {
    f->parent = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->parent);
    snprintf(f->root, sizeof f->root, "%s/root", f->parent);
    return pd_log_open(out, f->root, PD_LOG_CREATE);
}

static PD__UNUSED int s_open_dict(cf_fix *f) { return pd_dict_open(&f->s); }

static PD__UNUSED int s_open_log(cf_fix *f) { return s_log_in(f, &f->s); }

static PD__UNUSED int s_open_file(cf_fix *f) { return s_file_in(f, &f->s, 0); }

static PD__UNUSED int s_open_file_nocache(cf_fix *f) {
    int rc = s_file_in(f, &f->s, 0);
    if (rc == 0) rc = pd_file_set_max_fds(f->s, 0);
    return rc;
}

static PD__UNUSED int s_open_file_temp(cf_fix *f) {
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

/* After an open (result rc) that takes *inner when it succeeds: checks
 * that it did, or closes *inner when it failed.  Returns rc. */
static PD__UNUSED int s_taken(int rc, pd_store **inner) {
    if (rc)
        pd_close(inner);
    else
        ck_assert_ptr_null(*inner);
    return rc;
}

static PD__UNUSED int s_buffer(pd_store **out, pd_store *fast, pd_store *slow,
                               uint64_t memory) {
    int rc = pd_buffer_open(out, &fast, &slow, memory, 0);
    s_taken(rc, &fast);
    return s_taken(rc, &slow);
}

/* Buffer(fast, slow, memory) into *out, given the result rc of the opens
 * that gave fast and slow: on error, closes both. */
static PD__UNUSED int s_buffer_over(pd_store **out, pd_store *fast, int rc,
                                    pd_store *slow, uint64_t memory) {
    if (rc == 0) return s_buffer(out, fast, slow, memory);
    pd_close(&fast);
    pd_close(&slow);
    return rc;
}

static PD__UNUSED int s_open_buf_file(cf_fix *f, uint64_t memory) {
    pd_store *fast = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc == 0) rc = s_file_in(f, &slow, 0);
    return s_buffer_over(&f->s, fast, rc, slow, memory);
}

static PD__UNUSED int s_open_buf_file_big(cf_fix *f) {
    return s_open_buf_file(f, (uint64_t)1 << 30);
}

static PD__UNUSED int s_open_buf_file_tiny(cf_fix *f) {
    return s_open_buf_file(f, 64);
}

static PD__UNUSED int s_open_buf_dict(cf_fix *f) {
    pd_store *fast = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc == 0) rc = pd_dict_open(&slow);
    return s_buffer_over(&f->s, fast, rc, slow, 256);
}

static PD__UNUSED int s_open_buf_nested(cf_fix *f) {
    pd_store *a = NULL, *b = NULL, *inner = NULL, *slow = NULL;
    int rc = pd_dict_open(&a);
    if (rc == 0) rc = pd_dict_open(&b);
    rc = s_buffer_over(&inner, a, rc, b, 128);
    if (rc == 0) rc = s_file_in(f, &slow, 0);
    return s_buffer_over(&f->s, inner, rc, slow, 1024);
}

/* An Encode layer named `codec` over `inner` (taken). */
static PD__UNUSED int s_encode(pd_store **out, pd_store *inner,
                               const char *codec) {
    int rc = pd_compress_open(out, &inner, codec, PD_LEVEL_DEFAULT, 0);
    return s_taken(rc, &inner);
}

static PD__UNUSED int s_open_buf_log(cf_fix *f) {
    pd_store *fast = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc == 0) rc = s_log_in(f, &slow);
    return s_buffer_over(&f->s, fast, rc, slow, 64);
}

static PD__UNUSED int s_open_zstd_log(cf_fix *f) {
    pd_store *log = NULL;
    int rc = s_log_in(f, &log);
    return rc ? rc : s_encode(&f->s, log, "zstd");
}

static PD__UNUSED int s_open_zlib_file(cf_fix *f) {
    pd_store *file = NULL;
    int rc = s_file_in(f, &file, 0);
    return rc ? rc : s_encode(&f->s, file, "zlib");
}

static PD__UNUSED int s_open_blosc_file(cf_fix *f) {
    pd_store *file = NULL;
    int rc = s_file_in(f, &file, 0);
    return rc ? rc : s_encode(&f->s, file, "blosc");
}

static PD__UNUSED int s_open_zstd_dict(cf_fix *f) {
    pd_store *d = NULL;
    int rc = pd_dict_open(&d);
    return rc ? rc : s_encode(&f->s, d, "zstd");
}

static PD__UNUSED int s_open_snappy_buf(cf_fix *f) {
    pd_store *fast = NULL, *slow = NULL, *b = NULL;
    int rc = pd_dict_open(&fast);
    if (rc == 0) rc = s_file_in(f, &slow, 0);
    rc = s_buffer_over(&b, fast, rc, slow, 64);
    return rc ? rc : s_encode(&f->s, b, "snappy");
}

static PD__UNUSED int s_open_buf_lz4(cf_fix *f) {
    pd_store *fast = NULL, *file = NULL, *slow = NULL;
    int rc = pd_dict_open(&fast);
    if (rc == 0) rc = s_file_in(f, &file, 0);
    if (rc == 0) rc = s_encode(&slow, file, "lz4");
    return s_buffer_over(&f->s, fast, rc, slow, 256);
}

/* ------------------------------------------------- Client(Server(...)) */

static PD__UNUSED char *s_listdir(const char *dir, int *count);

/* Checks that the server or servers (`who`) left nothing in f's ipc
 * directory. */
static PD__UNUSED void s_ipcdir_empty(const cf_fix *f, const char *name,
                                      const char *who) {
    int n;
    char *list = s_listdir(f->ipcdir, &n);
    ck_assert_msg(n == 0, "[%s] %s left in %s:\n%s", name, who, f->ipcdir,
                  list ? list : "(unreadable)");
    free(list);
}

/* Removes f's ipc directory. */
static PD__UNUSED void s_ipcdir_remove(cf_fix *f) {
    tu_rmtree(f->ipcdir);
    free(f->ipcdir);
    f->ipcdir = NULL;
}

/* Opens the store a server will serve; `reopen`: over the File root an
 * earlier open made (f->root), which must exist. */
typedef int (*cf_served_fn)(cf_fix *f, pd_store **out, bool reopen);

static PD__UNUSED int s_root_file(cf_fix *f, pd_store **out, bool reopen) {
    if (reopen) return pd_file_open(out, f->root, 0);
    return s_file_in(f, out, 0);
}

static PD__UNUSED int s_served_dict(cf_fix *f, pd_store **out, bool reopen) {
    (void)f;
    ck_assert(!reopen);
    return pd_dict_open(out);
}

static PD__UNUSED int s_served_file(cf_fix *f, pd_store **out, bool reopen) {
    return s_root_file(f, out, reopen);
}

static PD__UNUSED int s_served_buf_file64(cf_fix *f, pd_store **out,
                                          bool reopen) {
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

static PD__UNUSED int s_served_zlib_file(cf_fix *f, pd_store **out,
                                         bool reopen) {
    pd_store *file = NULL;
    int rc = s_root_file(f, &file, reopen);
    return rc ? rc : s_encode(out, file, "zlib");
}

/* The server's log: only errors (the server cannot go on) are shown; the
 * refusals the contract provokes (collisions) are expected. */
static PD__UNUSED void s_server_log(void *arg, int level, const char *line) {
    if (level == PD_LOG_ERROR)
        fprintf(stderr, "[%s] server: %s\n", (const char *)arg, line);
}

/* Each wait of the client: short, so that a server that hangs fails the
 * test rather than Check's timeout; longer under valgrind (8 MiB values). */
static PD__UNUSED int s_client_timeout(void) {
    return tu_under_valgrind() ? 60000 : 10000;
}

/* A server over the store `served` opens (NULL: the server's default
 * store, kept under f->ipcdir), listening on ipc in f->ipcdir, started in
 * its thread, and a client of it in f->s. */
static PD__UNUSED int s_open_remote(cf_fix *f, cf_served_fn served, bool borrow,
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
static PD__UNUSED void s_close_remote(cf_fix *f, const char *name) {
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
    s_ipcdir_empty(f, name, "the server");
}

/* Fanout and Namespace stacks, over local stores and over Clients. */
#include "confix_fanout.h"

/* `encoded`: the stack has an Encode layer, so pd_keys lists encoded sizes
 * (the stored frames, not the bytes a get returns), and a key that was
 * only given empty values holds frames (their encoding is not empty) and
 * is listed, as with Python partd's Encode. */
static const struct {
    const char *name;
    cf_open_fn open;
    bool encoded;
    /* client(server(served)): served NULL is the server's default store,
     * Buffer(Dict, Log); `borrow`: served with PD_BORROW (the fixture
     * closes it after the server); `persists`: a File root that a new
     * server can reopen; `buffered`: the served store is a Buffer. */
    bool remote;
    cf_served_fn served;
    bool borrow, persists, buffered;
    /* A Namespace: every key gets the part nsname (partd.h), so keys at
     * PD_KEY_MAX or PD_KEY_MAX_PARTS no longer fit (PD_ERR_KEY). */
    const char *nsname;
    /* Keys cross a Client's wire (a client stack, or a Fanout of Clients):
     * what the wire refuses is refused, before anything of the batch is
     * applied (partd/zmq.h, partd.h "Fanout"). */
    bool wire;
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
    {.name = "fanout(client,client)",
     .open = s_open_fanout_clients,
     .wire = true},
    {.name = "namespace(fanout(client,client))",
     .open = s_open_ns_fanout_clients,
     .nsname = S_NSNAME,
     .wire = true},
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

static PD__UNUSED void s_open(cf_fix *f, int i) {
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
#define WIRE(f) (REMOTE(f) || s_stacks[(f)->stack].wire)
/* Bytes a Namespace stack adds to every key (0 for the others). */
#define NSBYTES(f)                                                             \
    (s_stacks[(f)->stack].nsname ? strlen(s_stacks[(f)->stack].nsname) : 0)

/* The Buffer of a stack: the store itself, or the one under its Encode
 * layer; NULL when there is none. */
static PD__UNUSED pd_store *s_buffer_of(pd_store *s) {
    pd_store *in = pd_encode_inner(s);
    if (in) s = in;
    return strcmp(pd_store_kind(s), "buffer") == 0 ? s : NULL;
}

/* Lists dir's entries (except . and ..) into a malloc'd newline-joined
 * string; *count gets the number of entries. */
static PD__UNUSED char *s_listdir(const char *dir, int *count) {
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
static PD__UNUSED void s_check_contained(cf_fix *f) {
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

static PD__UNUSED void s_close(cf_fix *f) {
    s_check_contained(f);
    if (f->fsrv[0]) s_close_fanout_clients(f, NAME(f));
    if (REMOTE(f)) {
        s_close_remote(f, NAME(f));
        s_ipcdir_remove(f);
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

static PD__UNUSED cf_ent *s_model_find(cf_model *m, const pd_key *k,
                                       bool create) {
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

/* Asserts that v is what the model holds for key k (empty when absent);
 * the failure message names the value by fmt.  Returns the model's length. */
static PD__UNUSED PD__PRINTF(5, 6) size_t
    s_model_expect(cf_fix *f, cf_model *m, const pd_key *k, pd_bytes v,
                   const char *fmt, ...) {
    cf_ent *e = s_model_find(m, k, false);
    size_t wl = e ? e->len : 0;
    if (v.size == wl && (wl == 0 || !memcmp(v.data, e->val, wl))) return wl;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    ck_abort_msg("[%s] %s is wrong: %zu bytes, want %zu", NAME(f), what, v.size,
                 wl);
    return wl;
}

static PD__UNUSED void s_model_put(cf_ent *e, const void *v, size_t n,
                                   bool replace) {
    if (replace) e->len = 0;
    if (e->len + n + 1 > e->cap) {
        e->cap = (e->len + n + 1) * 2;
        e->val = realloc(e->val, e->cap);
    }
    if (n) memcpy(e->val + e->len, v, n);
    e->len += n;
}

static PD__UNUSED void s_model_free(cf_model *m) {
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].pk);
        free(m->e[i].parts);
        free(m->e[i].val);
    }
    free(m->e);
    memset(m, 0, sizeof *m);
}

/* Appends through the store and the model. */
static PD__UNUSED void s_append(cf_fix *f, cf_model *m, size_t n,
                                const pd_key *keys, const pd_bytes *vals) {
    int rc = pd_append(f->s, n, keys, vals, 0);
    ck_assert_msg(rc == 0, "[%s] append -> %d: %s", NAME(f), rc,
                  pd_errmsg(f->s));
    for (size_t i = 0; i < n; i++)
        s_model_put(s_model_find(m, &keys[i], true), vals[i].data, vals[i].size,
                    false);
}

static PD__UNUSED void s_delete(cf_fix *f, cf_model *m, size_t n,
                                const pd_key *keys) {
    int rc = pd_delete(f->s, n, keys, 0);
    ck_assert_msg(rc == 0, "[%s] delete -> %d: %s", NAME(f), rc,
                  pd_errmsg(f->s));
    for (size_t i = 0; i < n; i++) {
        cf_ent *e = s_model_find(m, &keys[i], false);
        if (e) e->len = 0;
    }
}

static PD__UNUSED const char *s_repr(const pd_key *k, char *buf, size_t cap) {
    if (pd_key_repr(k, buf, cap) == 0 && cap) snprintf(buf, cap, "(invalid)");
    return buf;
}

/* Gets every model key in one call (in model order, then reversed) and
 * compares; then lists the keys and compares the set with exact sizes. */
static PD__UNUSED void s_verify(cf_fix *f, cf_model *m) {
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

static PD__UNUSED void s_expect(cf_fix *f, pd_key k, const char *want) {
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

#endif
