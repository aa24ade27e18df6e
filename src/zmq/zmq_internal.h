/*
 * Private declarations of the ZeroMQ Server and Client (src/wire.c,
 * src/server.c, src/client.c): the wire forms of keys and replies, and the
 * server's request handler, which takes a request's frames and a store and
 * is also the fuzz target's entry point (tests/fuzz/fuzz_server.c).
 */
#ifndef PARTD_ZMQ_INTERNAL_H
#define PARTD_ZMQ_INTERNAL_H

#include "core/internal.h"

/* The tuple separator of Python partd's wire keys. */
#define PD__WIRE_SEP "-|-"
#define PD__WIRE_SEP_LEN 3

/* Most keys in one request: a request has at most 2 * PD__WIRE_MAX_KEYS + 1
 * frames (append: command, then key and value per key).  Bounds what the
 * server allocates per request beside the frames' bytes. */
#define PD__WIRE_MAX_KEYS ((size_t)1 << 19)
#define PD__WIRE_MAX_FRAMES (2 * PD__WIRE_MAX_KEYS + 1)

/* ------------------------------------------------------------ Buffers */

/* A growable byte buffer. */
typedef struct pd__wbuf {
    unsigned char *p;
    size_t len, cap;
} pd__wbuf;

/* Makes room for `extra` more bytes.  0 or PD_ERR_NOMEM. */
int pd__wbuf_reserve(pd__wbuf *b, size_t extra);
void pd__wbuf_free(pd__wbuf *b);

/* ------------------------------------------------------------ Keys */

/*
 * Appends key's wire form to b (a flat key: its bytes; a tuple: its parts
 * joined by "-|-").  *off and *len (may be NULL) get where it landed.
 * Returns 0, PD_ERR_KEY when the form would not decode back to the same key
 * (it contains "-|-" where the server would split it differently), with the
 * reason in why (64 bytes), or PD_ERR_NOMEM.  On error b->len is unchanged.
 */
int pd__wire_key_put(pd__wbuf *b, const pd_key *key, size_t *off, size_t *len,
                     char why[64]);

/* True when a flat key's bytes contain the separator. */
int pd__wire_has_sep(const void *data, size_t n);

/* Decoded keys of one request: keys[i] points into the frames and parts[]. */
typedef struct pd__wkeys {
    pd_key *keys;
    size_t keycap;
    pd_bytes *parts;
    size_t partcap;
} pd__wkeys;

/*
 * Decodes n wire keys, frames[0], frames[stride], ... (the server's
 * deserialize_key: a key containing "-|-" is the tuple of the pieces between
 * separators, else flat) into w->keys[0..n).  The keys point into the
 * frames.  Returns 0, PD_ERR_LIMIT when a key has more than
 * PD_KEY_MAX_PARTS parts (*bad = its index), PD_ERR_NOMEM.
 */
int pd__wire_keys_decode(pd__wkeys *w, size_t n, const pd_bytes *frames,
                         size_t stride, size_t *bad);
void pd__wkeys_free(pd__wkeys *w);

/* ------------------------------------------------------------ Replies */

/* The final reply to a request: [ack], or [error, CODE, MESSAGE]. */
#define PD__WIRE_ACK "ack"
#define PD__WIRE_ERROR "error"

/*
 * Classifies a message received where a final reply is due.  Returns 0 for
 * [ack]; 1 for a well-formed error reply, with *code (a negative PD_ERR_*
 * value; codes this library does not know become PD_ERR_PROTOCOL) and *msg
 * (pointing into the frames) set; -1 for anything else.
 */
int pd__wire_final(size_t n, const pd_bytes *frames, int *code, pd_bytes *msg);

/* Writes code as the ASCII decimal of an error reply; returns its length
 * (buf holds at least 12 bytes). */
size_t pd__wire_code(int code, char buf[12]);

/* Little-endian u64, for the keys reply. */
void pd__wire_put_u64(unsigned char out[8], uint64_t v);
uint64_t pd__wire_get_u64(const unsigned char in[8]);

/* ------------------------------------------------------------ Handler */

/* Sends one reply message of n frames to the peer that sent the request.
 * Returns 0, or nonzero when the reply could not be queued (the caller's
 * own business: logged, never fatal). */
typedef int (*pd__emit_fn)(void *arg, size_t n, const pd_bytes *frames);

/* The server's request handler: state and scratch reused across requests. */
typedef struct pd__handler {
    pd_store *store; /* locked by the serving thread: calls use PD_NOLOCK */
    unsigned flags;  /* PD_SERVER_NO_CLOSE */
    pd__emit_fn emit;
    void *emit_arg;

    /* Outcome of the last request: code 0 or its error, and a message
     * naming the command and why ("" when fine). */
    int code;
    int malformed; /* the request could not be parsed (not a store error) */
    char msg[PD__MSG_MAX];

    /* scratch */
    pd__wkeys wk;
    pd_bytes *vals;
    size_t valcap;
    pd_bytes *out;
    size_t outcap;
    unsigned char *nums; /* 8-byte sizes of a keys reply */
    size_t numcap;
} pd__handler;

/* Results of pd__handle besides the error codes. */
#define PD__HANDLE_OK 0
#define PD__HANDLE_CLOSE 1 /* `close` acknowledged: stop serving */

/*
 * Handles one request: frames[0] is the command, the rest its payload
 * (without the peer's routing id).  Runs it on h->store and emits the
 * replies (see WIRE PROTOCOL in partd/zmq.h): every request gets exactly
 * one final reply.  Returns PD__HANDLE_OK, PD__HANDLE_CLOSE, or the
 * negative code of a request that failed or was refused (h->msg says why;
 * h->malformed tells a refusal from a store error).  Never aborts on any
 * input.  n may be 0 (an empty request: refused).
 */
int pd__handle(pd__handler *h, size_t n, const pd_bytes *frames);

/* Frees the handler's scratch (not the store). */
void pd__handler_fini(pd__handler *h);

/* A command's printable name for messages: its bytes, escaped and cut. */
const char *pd__wire_cmd_name(const pd_bytes *cmd, char buf[48]);

#endif /* PARTD_ZMQ_INTERNAL_H */
