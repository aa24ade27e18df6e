/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * CURVE: the key helpers of the public API (pd_curve_*), the z85 check both
 * ends use on keys they are given, and the server's ZAP handler, which
 * admits only the CURVE clients on its allow-list.
 */
#include "zmq/zmq_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool pd__z85_ok(const char *key) {
    uint8_t raw[32];
    return key && strlen(key) == PD_CURVE_KEY_LEN &&
           zmq_z85_decode(raw, key) != NULL;
}

int pd_curve_check(const char *key) {
    if (pd__z85_ok(key)) return 0;
    return pd__err(NULL, PD_ERR_MISUSE, 0,
                   "curve: %s is not 40 z85 characters encoding 32 bytes",
                   key ? "the key" : "NULL");
}

int pd_curve_keypair(char public_key[41], char secret_key[41]) {
    if (!public_key || !secret_key)
        return pd__err(NULL, PD_ERR_MISUSE, 0, "curve: keypair: NULL");
    if (!zmq_has("curve"))
        return pd__err(NULL, PD_ERR_UNSUPPORTED, 0,
                       "curve: keypair: libzmq was built without CURVE");
    if (zmq_curve_keypair(public_key, secret_key) != 0)
        return pd__err(NULL, PD_ERR_IO, zmq_errno(),
                       "curve: zmq_curve_keypair");
    pd__err_clear(NULL);
    return 0;
}

int pd_curve_public(char public_key[41], const char *secret_key) {
    if (!public_key || !pd__z85_ok(secret_key))
        return pd__err(NULL, PD_ERR_MISUSE, 0,
                       "curve: public: the secret key is not 40 z85 "
                       "characters");
    if (!zmq_has("curve"))
        return pd__err(NULL, PD_ERR_UNSUPPORTED, 0,
                       "curve: public: libzmq was built without CURVE");
    if (zmq_curve_public(public_key, secret_key) != 0)
        return pd__err(NULL, PD_ERR_IO, zmq_errno(), "curve: zmq_curve_public");
    pd__err_clear(NULL);
    return 0;
}

/* ------------------------------------------------------------ ZAP */

int pd__zap_open(pd_server *srv, size_t n, const char *const *keys) {
    srv->allow = calloc(n, sizeof *srv->allow);
    srv->nallow = n;
    if (!srv->allow) return pd__err(NULL, PD_ERR_NOMEM, ENOMEM, "server: open");
    for (size_t i = 0; i < n; i++) zmq_z85_decode(srv->allow[i], keys[i]);
    if (!(srv->zap = zmq_socket(srv->ctx, ZMQ_REP)) ||
        pd__sockopt_int(srv->zap, ZMQ_LINGER, 0) ||
        zmq_bind(srv->zap, "inproc://zeromq.zap.01") != 0)
        return pd__err(NULL, PD_ERR_IO, zmq_errno(),
                       "server: open: the CURVE allow-list's ZAP handler");
    return 0;
}

/* Answers one ZAP request (libzmq asking whether a CURVE client may in):
 * [version, id, domain, address, routing id, mechanism, client key] ->
 * [version, id, status, text, user id, metadata].  200 only for a CURVE
 * client whose key is on the allow-list. */
#define S_ZAP_FRAMES 8
void pd__zap_answer(pd_server *srv) {
    zmq_msg_t f[S_ZAP_FRAMES];
    size_t n = 0;
    bool more = true;
    while (more) {
        zmq_msg_t *m = n < S_ZAP_FRAMES ? &f[n] : &srv->scratch;
        if (n < S_ZAP_FRAMES) zmq_msg_init(m);
        if (zmq_msg_recv(m, srv->zap, ZMQ_DONTWAIT) < 0) {
            if (n < S_ZAP_FRAMES) zmq_msg_close(m);
            break; /* nothing (more) to read */
        }
        more = zmq_msg_more(m);
        if (n < S_ZAP_FRAMES) n++;
    }
    if (n == 0) return;
    const char *status = "400", *text = "not allowed";
    char peer[64] = "?", key[41] = "?";
    if (n >= 7 && zmq_msg_size(&f[0]) == 3 &&
        memcmp(zmq_msg_data(&f[0]), "1.0", 3) == 0 &&
        zmq_msg_size(&f[5]) == 5 &&
        memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&f[6]) == 32) {
        int al = (int)(zmq_msg_size(&f[3]) < 63 ? zmq_msg_size(&f[3]) : 63);
        snprintf(peer, sizeof peer, "%.*s", al,
                 (const char *)zmq_msg_data(&f[3]));
        zmq_z85_encode(key, zmq_msg_data(&f[6]), 32);
        for (size_t i = 0; i < srv->nallow; i++)
            if (memcmp(srv->allow[i], zmq_msg_data(&f[6]), 32) == 0) {
                status = "200";
                text = "OK";
                break;
            }
    } else {
        text = "not a CURVE request";
    }
    if (status[0] == '2')
        pd__server_log(srv, PD_LOG_DEBUG, "CURVE client %s from %s allowed",
                       key, peer);
    else
        pd__server_log(
            srv, PD_LOG_WARN,
            "refused a CURVE client from %s: its public key %s is not on "
            "the allow-list",
            peer, key);
    /* A REP socket answers every request: echo the id (empty if absent). */
    const void *id = n >= 2 ? zmq_msg_data(&f[1]) : "";
    size_t idlen = n >= 2 ? zmq_msg_size(&f[1]) : 0;
    if (zmq_send(srv->zap, "1.0", 3, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(srv->zap, id, idlen, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(srv->zap, status, 3, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(srv->zap, text, strlen(text), ZMQ_SNDMORE | ZMQ_DONTWAIT) <
            0 ||
        zmq_send(srv->zap, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(srv->zap, "", 0, ZMQ_DONTWAIT) < 0)
        pd__server_log(srv, PD_LOG_ERROR, "ZAP reply: %s",
                       zmq_strerror(zmq_errno()));
    for (size_t i = 0; i < n; i++) zmq_msg_close(&f[i]);
}
