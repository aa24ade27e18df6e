/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The Client's writer attempts (docs/zmq.md, "Attempts"): each attempt
 * call is one request carrying the writer's wire form and the 8-byte
 * attempt number.  begin, commit and abort wait for their reply; appends
 * are pipelined like plain appends, and a commit first reads the replies
 * of every request in flight, so it is sent only when all of the attempt's
 * appends were acknowledged.
 *
 * An attempt is lost, and says so, when the server does not know it any
 * more (restarted, or aborted it idle), when one of its appends failed,
 * or when the connection it began on was reset (a request of it may or
 * may not have been applied): nothing of it is committed, and the caller
 * must run the writer again as a new attempt.
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A client attempt: what the requests carry, and its state. */
typedef struct pd__cattempt {
    pd__client *c;
    pd__buf w;                  /* the writer's wire form */
    unsigned char a8[8], t8[8]; /* the attempt number; the server's token */
    uint64_t gen;               /* the connection it began on */
    int lost;                   /* the error that lost it, or 0 */
    char name[128];             /* "writer 'w' attempt 3", for messages */
} pd__cattempt;

static const char s_rerun[] =
    "nothing of it was committed: run the writer again as a new attempt";

static void s_free(pd__cattempt *a) {
    pd__buf_free(&a->w);
    free(a);
}

/* The frames every attempt request but the begin starts with. */
static void s_head(pd__cattempt *a, pd_bytes head[3]) {
    head[0] = (pd_bytes){a->w.len ? a->w.p : (void *)"", a->w.len};
    head[1] = (pd_bytes){a->a8, 8};
    head[2] = (pd_bytes){a->t8, 8};
}

/* Marks the attempt lost after an error on the handle (message already
 * recorded): adds what the caller must do, once. */
static int s_lose(pd__cattempt *a, int rc) {
    if (rc == PD_ERR_CONFLICT) return rc;
    pd__client *c = a->c;
    if (!a->lost) {
        a->lost = rc;
        pd__errsave sv;
        pd__err_save(&c->base, &sv);
        size_t l = strlen(sv.msg);
        snprintf(sv.msg + l, sizeof sv.msg - l, "; %s is lost: %s", a->name,
                 s_rerun);
        pd__err_restore(&c->base, &sv);
    }
    return rc;
}

/* Refuses a call on an attempt that cannot go on. */
static int s_usable(pd__cattempt *a, const char *op) {
    pd__client *c = a->c;
    int rc = pd__client_ready(c);
    if (rc) return s_lose(a, rc);
    if (a->lost)
        return pd__err(&c->base, a->lost, 0,
                       "%s: %s at the server at %s is lost (an earlier call "
                       "failed): %s",
                       op, a->name, c->address, s_rerun);
    if (c->gen != a->gen) {
        a->lost = PD_ERR_IO;
        return pd__err(&c->base, PD_ERR_IO, 0,
                       "%s: %s at the server at %s is lost: the connection "
                       "was reset since it began (a timeout or a broken "
                       "reply), so requests of it may be missing: %s",
                       op, a->name, c->address, s_rerun);
    }
    return 0;
}

/* Sends [cmd, writer, attempt, token, tail] and reads every reply due. */
static int s_request(pd__cattempt *a, const char *op, const char *cmd,
                     const char *tail) {
    pd__client *c = a->c;
    pd_bytes head[4];
    s_head(a, head);
    size_t nh = 3;
    if (tail) head[nh++] = (pd_bytes){tail, strlen(tail)};
    char what[192];
    snprintf(what, sizeof what, "%s of %s", cmd, a->name);
    int rc = pd__client_send_head(c, op, cmd, head, nh, what, NULL, NULL, 0);
    if (rc) return rc;
    return pd__client_settle(c, op, true);
}

/* Reads the begin's reply: [token] then [ack], or an error reply. */
static int s_begin_reply(pd__cattempt *a, const char *what) {
    pd__client *c = a->c;
    const char *op = "attempt_begin";
    bool done = false;
    int rc = pd__client_reply(c, op, what, &done);
    if (rc || done) return rc;
    if (c->nmsgs != 1 || c->frames[0].size != 8) {
        pd__err(&c->base, PD_ERR_PROTOCOL, 0,
                "%s: the server at %s answered %s with %zu frames, not an "
                "8-byte token; connection reset",
                op, c->address, what, c->nmsgs);
        return pd__client_broken(c, PD_ERR_PROTOCOL);
    }
    memcpy(a->t8, c->frames[0].data, 8);
    pd__client_drop_msgs(c);
    return pd__client_settle(c, op, true);
}

int pd__client_att_begin(pd_store *s, const pd_key *writer, uint64_t attempt,
                         void **impl, unsigned flags) {
    (void)flags;
    pd__client *c = (pd__client *)s;
    *impl = NULL;
    int rc = pd__client_ours(c, "attempt_begin", "writer attempts");
    if (rc) return rc;
    pd__cattempt *a = calloc(1, sizeof *a);
    if (!a) return pd__err(&c->base, PD_ERR_NOMEM, ENOMEM, "attempt_begin");
    a->c = c;
    pd__wire_put_u64(a->a8, attempt);
    char why[64];
    char ks[PD__KEYSHORT_MAX];
    rc = pd__wire_key_put(&a->w, writer, NULL, NULL, why);
    if (rc) {
        s_free(a);
        return pd__err(&c->base, rc, rc == PD_ERR_NOMEM ? ENOMEM : 0,
                       "attempt_begin: writer %s cannot cross the wire: %s",
                       pd__key_short(writer, ks), why);
    }
    snprintf(a->name, sizeof a->name, "writer %s attempt %llu",
             pd__key_short(writer, ks), (unsigned long long)attempt);
    a->gen = c->gen;
    pd_bytes head[2] = {{a->w.len ? a->w.p : (void *)"", a->w.len}, {a->a8, 8}};
    char what[192];
    snprintf(what, sizeof what, "attempt_begin of %s", a->name);
    rc = pd__client_send_head(c, "attempt_begin", "attempt_begin", head, 2,
                              what, NULL, NULL, 0);
    if (!rc) rc = s_begin_reply(a, what);
    if (rc) {
        s_free(a);
        return rc;
    }
    *impl = a;
    return 0;
}

int pd__client_att_append(pd_store *s, void *impl, size_t n, const pd_key *keys,
                          const pd_bytes *vals, unsigned flags) {
    (void)s;
    pd__cattempt *a = impl;
    pd__client *c = a->c;
    if (flags & PD_FSYNC)
        return pd__err(&c->base, PD_ERR_UNSUPPORTED, 0,
                       "attempt_append: PD_FSYNC on an append of %s: the "
                       "server syncs at the commit (pass PD_FSYNC to "
                       "pd_attempt_commit)",
                       a->name);
    int rc = s_usable(a, "attempt_append");
    if (rc) return rc;
    rc = pd__client_prepare(c, "attempt_append", n, keys, vals, true);
    if (rc) return s_lose(a, rc);
    if (c->gen != a->gen) return s_usable(a, "attempt_append");
    pd_bytes head[3];
    s_head(a, head);
    char what[192];
    char ks[PD__KEYSHORT_MAX];
    snprintf(what, sizeof what, "attempt_append of %zu key%s (%s%s) to %s", n,
             n == 1 ? "" : "s", n ? pd__key_short(&keys[0], ks) : "",
             n > 1 ? ", ..." : "", a->name);
    rc = pd__client_send_head(c, "attempt_append", "attempt_append", head, 3,
                              what, keys, vals, n);
    if (rc) return s_lose(a, rc);
    rc = pd__client_maybe_sync(c, "attempt_append");
    return rc ? s_lose(a, rc) : 0;
}

/* Best effort: tells the server to drop the attempt (the caller's error
 * stays the one reported). */
static void s_abort_quietly(pd__cattempt *a) {
    pd__client *c = a->c;
    pd__errsave sv;
    pd__err_save(&c->base, &sv);
    if (pd__client_ready(c) == 0 && c->ours == 1 && c->gen == a->gen &&
        pd__client_settle(c, "attempt_abort", false) == 0 && c->gen == a->gen)
        (void)s_request(a, "attempt_abort", "attempt_abort", NULL);
    pd__err_restore(&c->base, &sv);
}

/* Commits; frees the attempt whatever the outcome. */
int pd__client_att_commit(pd_store *s, void *impl, unsigned flags) {
    (void)s;
    pd__cattempt *a = impl;
    pd__client *c = a->c;
    int rc = s_usable(a, "attempt_commit");
    /* Every request in flight, the attempt's appends among them, must
     * have been acknowledged before the commit is sent. */
    if (!rc) {
        rc = pd__client_settle(c, "attempt_commit", false);
        if (rc) rc = s_lose(a, rc);
    }
    if (!rc && c->gen != a->gen) rc = s_usable(a, "attempt_commit");
    if (rc) {
        s_abort_quietly(a);
        s_free(a);
        return rc;
    }
    rc = s_request(a, "attempt_commit", "attempt_commit",
                   (flags & PD_FSYNC) ? "fsync" : NULL);
    if (rc == PD_ERR_TIMEOUT) {
        pd__errsave sv;
        pd__err_save(&c->base, &sv);
        size_t l = strlen(sv.msg);
        snprintf(sv.msg + l, sizeof sv.msg - l,
                 "; %s may or may not have been committed: run the writer "
                 "again as a new attempt (if it was, that one's commit gets "
                 "PD_ERR_CONFLICT)",
                 a->name);
        pd__err_restore(&c->base, &sv);
    } else if (rc) {
        rc = s_lose(a, rc);
    }
    s_free(a);
    return rc;
}

/* Aborts and frees.  In a forked child (the parent's attempt), or when
 * the connection is gone or was reset since the begin, only frees.  The
 * replies still due are read first: an earlier request's failure is
 * reported, as by any call. */
int pd__client_att_abort(pd_store *s, void *impl) {
    (void)s;
    pd__cattempt *a = impl;
    pd__client *c = a->c;
    int rc = 0, rc2 = 0;
    if (c->pid == pd__getpid() && c->sock && c->gen == a->gen) {
        rc = pd__client_settle(c, "attempt_abort", false);
        if (c->sock && c->ours == 1 && c->gen == a->gen)
            rc2 = s_request(a, "attempt_abort", "attempt_abort", NULL);
    }
    s_free(a);
    return rc ? rc : rc2;
}
