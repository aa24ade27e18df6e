/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The server's namespace leases (docs/zmq.md, "Leases"): a client leases a
 * namespace (the keys whose first part is its name: a Namespace's keys,
 * partd.h) for a time; the users of a shuffle renew it while they live,
 * and when nobody has renewed it in time the server drops the namespace,
 * so a shuffle whose processes were all killed (SIGKILL: no cleanup runs)
 * does not leave its data on the server forever.
 *
 * The table is small and linear: a few leases per running shuffle.  The
 * serving loop wakes for the next deadline (pd__handler_lease_next) and
 * expires what is due (pd__handler_leases_expire).
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct pd__lease {
    unsigned char *name;
    size_t len;
    int64_t deadline; /* pd__now_ms */
    uint32_t ms;      /* the period last asked for */
};

static size_t s_find(const pd__handler *h, const pd_bytes *name) {
    for (size_t i = 0; i < h->nleases; i++)
        if (h->leases[i].len == name->size &&
            (name->size == 0 ||
             memcmp(h->leases[i].name, name->data, name->size) == 0))
            return i;
    return SIZE_MAX;
}

static void s_remove(pd__handler *h, size_t i) {
    free(h->leases[i].name);
    h->leases[i] = h->leases[--h->nleases];
}

/* "1234" -> 1234 when it is 1 to 10 digits and at most PD__LEASE_MAX_MS. */
static bool s_ms(const pd_bytes *f, uint32_t *out) {
    if (f->size == 0 || f->size > 10) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < f->size; i++) {
        unsigned char c = ((const unsigned char *)f->data)[i];
        if (c < '0' || c > '9') return false;
        v = v * 10 + (uint64_t)(c - '0');
    }
    if (v > PD__LEASE_MAX_MS) return false;
    *out = (uint32_t)v;
    return true;
}

/* Whether a name can be a namespace's first part on the wire (as
 * pd_namespace_open requires). */
static bool s_name_ok(const pd_bytes *n) {
    const unsigned char *p = n->data;
    if (n->size > PD_KEY_MAX) return false;
    for (size_t i = 0; i + 3 <= n->size; i++)
        if (memcmp(p + i, "-|-", 3) == 0) return false;
    return !(n->size >= 2 && p[n->size - 2] == '-' && p[n->size - 1] == '|');
}

int pd__handle_lease(pd__handler *h, size_t np, const pd_bytes *pl) {
    uint32_t ms = 0;
    if (np != 2 || !s_ms(&pl[1], &ms))
        return pd__handler_refuse(
            h, PD_ERR_PROTOCOL,
            "lease: want [lease, name, milliseconds (0 to %u, decimal)]",
            (unsigned)PD__LEASE_MAX_MS);
    if (!s_name_ok(&pl[0]))
        return pd__handler_refuse(h, PD_ERR_KEY,
                                  "lease: a namespace name of %zu bytes that "
                                  "contains \"-|-\", ends in \"-|\" or is "
                                  "over %d bytes",
                                  pl[0].size, PD_KEY_MAX);
    size_t i = s_find(h, &pl[0]);
    if (ms == 0) { /* released: the keys stay */
        if (i != SIZE_MAX) s_remove(h, i);
        return pd__handler_ack(h);
    }
    if (i == SIZE_MAX) {
        if (h->nleases >= PD__LEASES_MAX)
            return pd__handler_refuse(h, PD_ERR_LIMIT,
                                      "lease: %zu namespaces leased already "
                                      "(at most %d)",
                                      h->nleases, PD__LEASES_MAX);
        if (pd__grow((void **)&h->leases, &h->leasecap, h->nleases + 1,
                     sizeof *h->leases))
            return pd__handler_refuse(h, PD_ERR_NOMEM,
                                      "lease: out of memory for the table");
        unsigned char *copy = malloc(pl[0].size ? pl[0].size : 1);
        if (!copy)
            return pd__handler_refuse(h, PD_ERR_NOMEM,
                                      "lease: out of memory for the name");
        if (pl[0].size) memcpy(copy, pl[0].data, pl[0].size);
        i = h->nleases++;
        h->leases[i] = (struct pd__lease){copy, pl[0].size, 0, 0};
    }
    h->leases[i].ms = ms;
    h->leases[i].deadline = pd__now_ms() + ms;
    return pd__handler_ack(h);
}

int64_t pd__handler_lease_next(const pd__handler *h) {
    int64_t next = -1;
    for (size_t i = 0; i < h->nleases; i++)
        if (next < 0 || h->leases[i].deadline < next)
            next = h->leases[i].deadline;
    return next;
}

/* Drops namespace `name` of the store: its keys (first part name, two
 * parts or more), as a Namespace's drop does.  The count dropped in
 * *dropped. */
static int s_drop(pd__handler *h, const struct pd__lease *l, size_t *dropped) {
    *dropped = 0;
    pd_store *st = h->store, *ns = NULL;
    int rc = pd_namespace_open(&ns, &st, l->name, l->len, PD_BORROW);
    if (rc) return rc;
    pd_keylist *kl = NULL;
    rc = pd_keys(ns, &kl, PD_NOLOCK);
    if (rc == 0) *dropped = pd_keylist_count(kl);
    pd_keylist_free(&kl);
    if (rc == 0) rc = pd_drop(ns, PD_NOLOCK);
    if (rc) snprintf(h->msg, sizeof h->msg, "%s", pd_errmsg(ns));
    pd_close(&ns);
    return rc;
}

void pd__handler_leases_expire(pd__handler *h, int64_t now,
                               pd__lease_log_fn log, void *arg) {
    for (size_t i = 0; i < h->nleases;) {
        struct pd__lease *l = &h->leases[i];
        if (l->deadline > now) {
            i++;
            continue;
        }
        char ks[PD__KEYSHORT_MAX], line[PD__MSG_MAX + 256];
        pd_key k = PD_KEY(l->name, l->len);
        pd__key_short(&k, ks);
        size_t dropped = 0;
        int rc = s_drop(h, l, &dropped);
        if (rc)
            snprintf(line, sizeof line,
                     "lease of namespace %s expired (not renewed within "
                     "%" PRIu32 " ms), but dropping it failed: %s",
                     ks, l->ms, h->msg);
        else
            snprintf(line, sizeof line,
                     "lease of namespace %s expired (not renewed within "
                     "%" PRIu32 " ms): dropped its %zu keys",
                     ks, l->ms, dropped);
        log(arg, rc ? PD_LOG_ERROR : PD_LOG_INFO, line);
        h->leases_expired++;
        s_remove(h, i);
    }
}

void pd__handler_leases_free(pd__handler *h) {
    while (h->nleases) s_remove(h, h->nleases - 1);
    free(h->leases);
    h->leases = NULL;
    h->leasecap = 0;
}
