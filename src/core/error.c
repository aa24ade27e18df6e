/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * Errors: every call records its outcome per handle and as the calling
 * thread's last error; messages name the store kind, the operation, the key
 * or path, and the reason.
 */
#include "core/internal.h"

#include <string.h>

/* ---------------------------------------------------------------- Errors */

const char *pd_strerror(int code) {
    switch (code) {
    case PD_OK: return "ok";
    case PD_ERR_MISUSE: return "invalid argument or API misuse";
    case PD_ERR_NOMEM: return "out of memory";
    case PD_ERR_IO: return "system call failed";
    case PD_ERR_KEY: return "key cannot be stored";
    case PD_ERR_CORRUPT: return "stored data is corrupt";
    case PD_ERR_PROTOCOL: return "protocol error";
    case PD_ERR_TIMEOUT: return "timed out";
    case PD_ERR_UNSUPPORTED: return "operation not supported by this store";
    case PD_ERR_LIMIT: return "size or count beyond a library limit";
    case PD_ERR_CONFLICT:
        return "another attempt of this writer committed first";
    default: return "unknown error code";
    }
}

/* The calling thread's last error.  `store` says which handle it belongs to
 * (NULL: a store-creating function, or pd_close). */
typedef struct s_tlerr {
    const pd_store *store;
    int code;
    int sys;
    char msg[PD__MSG_MAX];
} s_tlerr;

static _Thread_local s_tlerr tl_err = {NULL, 0, 0, "ok"};
static _Thread_local s_tlerr tl_null = {NULL, 0, 0, "ok"};
static _Thread_local char tl_copy[PD__MSG_MAX];

static void s_set_msg(char *dst, const char *src) {
    size_t n = strlen(src);
    if (n >= PD__MSG_MAX) n = PD__MSG_MAX - 1;
    memmove(dst, src, n);
    dst[n] = '\0';
}

static void s_record(pd_store *s, int code, int sys, const char *msg) {
    tl_err.store = s;
    tl_err.code = code;
    tl_err.sys = sys;
    s_set_msg(tl_err.msg, msg);
    if (s) {
        pthread_mutex_lock(&s->err_mu);
        s->err_code = code;
        s->err_sys = sys;
        s_set_msg(s->err_msg, msg);
        pthread_mutex_unlock(&s->err_mu);
    } else {
        tl_null = tl_err;
    }
}

int pd__verr(pd_store *s, int code, int sys, const char *fmt, va_list ap) {
    char msg[PD__MSG_MAX];
    size_t len = 0;
    if (s) {
        int w = snprintf(msg, sizeof msg, "%s: ", s->ops->kind);
        len = w > 0 ? (size_t)w : 0;
    }
    if (len < sizeof msg) {
        int w = vsnprintf(msg + len, sizeof msg - len, fmt, ap);
        if (w > 0) len += (size_t)w;
    }
    if (sys != 0 && len < sizeof msg) {
        char eb[128];
        const char *es = strerror_r(sys, eb, sizeof eb);
        snprintf(msg + len, sizeof msg - len, ": %s", es);
    }
    s_record(s, code, sys, msg);
    return code;
}

int pd__err(pd_store *s, int code, int sys, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pd__verr(s, code, sys, fmt, ap);
    va_end(ap);
    return code;
}

int pd__err_inner(pd_store *s, const pd_store *inner, int code) {
    int sys = pd_errno(inner);
    int icode = pd_errcode(inner);
    char copy[PD__MSG_MAX], msg[PD__MSG_MAX];
    s_set_msg(copy, pd_errmsg(inner));
    if (icode != 0) code = icode;
    if (s)
        snprintf(msg, sizeof msg, "%s: %s", s->ops->kind, copy);
    else
        s_set_msg(msg, copy);
    s_record(s, code, sys, msg);
    return code;
}

/* Copies msg into out without a trailing ": strerror(sys)" (pd__err adds it
 * back) and without a leading "<kind>: " when kind is given. */
static void s_strip(char *out, size_t cap, const char *msg, int sys,
                    const char *kind) {
    if (kind) {
        size_t kl = strlen(kind);
        if (strncmp(msg, kind, kl) == 0 && msg[kl] == ':' && msg[kl + 1] == ' ')
            msg += kl + 2;
    }
    size_t len = strlen(msg);
    if (sys) {
        char eb[128];
        const char *es = strerror_r(sys, eb, sizeof eb);
        size_t el = strlen(es);
        if (len >= el + 2 && memcmp(msg + len - el, es, el) == 0 &&
            memcmp(msg + len - el - 2, ": ", 2) == 0)
            len -= el + 2;
    }
    if (len >= cap) len = cap - 1;
    memcpy(out, msg, len);
    out[len] = '\0';
}

int pd__err_wrap(pd_store *s, const pd_store *inner, int rc, const char *fmt,
                 ...) {
    int code = pd_errcode(inner);
    if (code == 0) code = rc;
    int sys = pd_errno(inner);
    char imsg[PD__MSG_MAX], ctx[PD__MSG_MAX];
    s_strip(imsg, sizeof imsg, pd_errmsg(inner), sys, NULL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    return pd__err(s, code, sys, "%s: %s", ctx, imsg);
}

void pd__err_save(const pd_store *s, pd__errsave *sv) {
    sv->code = pd_errcode(s);
    sv->sys = pd_errno(s);
    s_set_msg(sv->msg, pd_errmsg(s));
}

int pd__err_restore(pd_store *s, const pd__errsave *sv) {
    s_record(s, sv->code, sv->sys, sv->msg);
    return sv->code;
}

void pd__err_set_sys(pd_store *s, int sys) {
    if (tl_err.store == s) tl_err.sys = sys;
    if (s) {
        pthread_mutex_lock(&s->err_mu);
        s->err_sys = sys;
        pthread_mutex_unlock(&s->err_mu);
    } else {
        tl_null.sys = sys;
    }
}

void pd__err_to_thread(const pd_store *s) {
    if (!s) return;
    tl_null.store = NULL;
    tl_null.code = pd_errcode(s);
    tl_null.sys = pd_errno(s);
    s_set_msg(tl_null.msg, pd_errmsg(s));
}

void pd__err_clear(const pd_store *s) {
    tl_err.store = s;
    tl_err.code = 0;
    tl_err.sys = 0;
    strcpy(tl_err.msg, "ok");
    if (!s) tl_null = tl_err;
}

const char *pd_errmsg(const pd_store *s) {
    if (!s) return tl_null.msg;
    if (tl_err.store == s) return tl_err.msg;
    pd_store *m = (pd_store *)s;
    pthread_mutex_lock(&m->err_mu);
    s_set_msg(tl_copy, m->err_msg);
    pthread_mutex_unlock(&m->err_mu);
    return tl_copy;
}

/* One of s's error fields (err_code, err_sys), read under err_mu. */
static int s_err_read(const pd_store *s, const int *field) {
    pd_store *m = (pd_store *)s;
    pthread_mutex_lock(&m->err_mu);
    int c = *field;
    pthread_mutex_unlock(&m->err_mu);
    return c;
}

int pd_errcode(const pd_store *s) {
    if (!s) return tl_null.code;
    if (tl_err.store == s) return tl_err.code;
    return s_err_read(s, &s->err_code);
}

int pd_errno(const pd_store *s) {
    if (!s) return tl_null.sys;
    if (tl_err.store == s) return tl_err.sys;
    return s_err_read(s, &s->err_sys);
}

bool pd__err_is_current(const pd_store *s) {
    return tl_err.store == s && tl_err.code != 0;
}

void pd__err_forget(const pd_store *s) {
    if (tl_err.store == s) tl_err.store = NULL;
}
