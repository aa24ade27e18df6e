/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * The conformance fixture's Fanout and Namespace stacks (included by
 * confix.h, before its table of stacks): over Dicts, over Files in two
 * directories, a Namespace over a Dict or a File, and a Fanout of two
 * Clients of two servers (each over its own Dict, on ipc sockets in a
 * private directory), bare or under a Namespace.
 */
#ifndef PARTD_TESTS_CONFIX_FANOUT_H
#define PARTD_TESTS_CONFIX_FANOUT_H

/* A Fanout over inner[0..n) (taken). */
static PD__UNUSED int s_fanout(pd_store **out, pd_store **inner, size_t n) {
    int rc = pd_fanout_open(out, inner, n, 0);
    for (size_t i = 0; i < n; i++) {
        if (rc) pd_close(&inner[i]);
        ck_assert_ptr_null(inner[i]);
    }
    return rc;
}

static PD__UNUSED int s_open_fanout_dicts(cf_fix *f) {
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
static PD__UNUSED int s_open_fanout_files(cf_fix *f) {
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

static PD__UNUSED int s_namespace(cf_fix *f, pd_store *inner) {
    int rc = pd_namespace_open(&f->s, &inner, S_NSNAME, strlen(S_NSNAME), 0);
    if (rc)
        pd_close(&inner);
    else
        ck_assert_ptr_null(inner);
    return rc;
}

static PD__UNUSED int s_open_ns_dict(cf_fix *f) {
    pd_store *d = NULL;
    int rc = pd_dict_open(&d);
    return rc ? rc : s_namespace(f, d);
}

static PD__UNUSED int s_open_ns_file(cf_fix *f) {
    pd_store *file = NULL;
    int rc = s_file_in(f, &file, 0);
    return rc ? rc : s_namespace(f, file);
}

/* A Fanout of two Clients (PD_CLIENT_SYNC, the fixture's short timeout) of
 * two servers over Dicts of their own, in f->fsrv, listening on ipc in
 * f->ipcdir. */
static PD__UNUSED int s_fanout_clients(cf_fix *f, pd_store **out) {
    f->ipcdir = tu_mkdtemp();
    ck_assert_ptr_nonnull(f->ipcdir);
    pd_store *in[2] = {NULL, NULL};
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++) {
        pd_store *d = NULL;
        rc = pd_dict_open(&d);
        if (rc) break;
        char addr[PATH_MAX + 16];
        snprintf(addr, sizeof addr, "ipc://%s/srv%d.sock", f->ipcdir, i);
        const char *bind[] = {addr};
        pd_server_opts o = {0};
        o.bind = bind;
        o.nbind = 1;
        o.log = s_server_log;
        o.log_arg = (void *)"fanout(client,client)";
        rc = pd_server_open(&f->fsrv[i], &d, &o);
        if (rc) {
            pd_close(&d);
            break;
        }
        rc = pd_server_start(f->fsrv[i]);
        pd_client_opts co = {0};
        co.timeout_ms = s_client_timeout();
        co.flags = PD_CLIENT_SYNC;
        if (rc == 0)
            rc = pd_client_open(&in[i], pd_server_address(f->fsrv[i], 0), &co);
    }
    if (rc) {
        for (int i = 0; i < 2; i++) pd_close(&in[i]);
        return rc;
    }
    return s_fanout(out, in, 2);
}

static PD__UNUSED int s_open_fanout_clients(cf_fix *f) {
    return s_fanout_clients(f, &f->s);
}

static PD__UNUSED int s_open_ns_fanout_clients(cf_fix *f) {
    pd_store *fan = NULL;
    int rc = s_fanout_clients(f, &fan);
    return rc ? rc : s_namespace(f, fan);
}

/* Closes the store (the Fanout closes its Clients), then the servers;
 * checks that they left nothing in their ipc directory. */
static PD__UNUSED void s_close_fanout_clients(cf_fix *f, const char *name) {
    int rc = pd_close(&f->s);
    ck_assert_msg(rc == 0, "[%s] close -> %d: %s", name, rc, pd_errmsg(NULL));
    for (int i = 0; i < 2; i++) {
        rc = pd_server_close(&f->fsrv[i]);
        ck_assert_msg(rc == 0, "[%s] server %d close -> %d: %s", name, i, rc,
                      pd_errmsg(NULL));
    }
    s_ipcdir_empty(f, name, "the servers");
    s_ipcdir_remove(f);
}

#endif /* PARTD_TESTS_CONFIX_FANOUT_H */
