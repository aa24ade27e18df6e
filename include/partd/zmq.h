/* SPDX-License-Identifier: BSD-3-Clause */
/* SPDX-FileCopyrightText: the libpartd authors */
/*
 * libpartd: the ZeroMQ Server and Client.  Included by partd/partd.h; do not
 * include it on its own.
 *
 * OVERVIEW
 * ========
 * A Server (pd_server_open) serves one store to many processes over ZeroMQ;
 * a Client (pd_client_open) is a pd_store whose calls run on a Server.  Both
 * speak the wire protocol of Python partd's `partd.zmq` (1.x), so a Python
 * `partd.Client` works against our Server and our Client works against a
 * Python `partd.Server`.
 *
 *   pd_server *srv = NULL;
 *   pd_server_open(&srv, NULL, NULL);          // Buffer(Dict, Log) over ipc
 *   pd_server_start(srv);                      // serve in a thread
 *   ... give pd_server_address(srv, 0) to the workers ...
 *   pd_store *c = NULL;
 *   pd_client_open(&c, pd_server_address(srv, 0), NULL);
 *   pd_append(c, n, keys, vals, 0);            // as on any store
 *   pd_close(&c);
 *   pd_server_close(&srv);
 *
 * The wire protocol, security (ipc by default, CURVE for tcp), limits and
 * memory, threads/signals/fork and the `stats` command are described in
 * docs/zmq.md.
 */
#ifndef PARTD_ZMQ_H
#define PARTD_ZMQ_H

#ifndef PARTD_PARTD_H
#error "include <partd/partd.h>, not <partd/zmq.h>"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Default largest message (sum of its frames) a server or client accepts:
 *  1 GiB. */
#define PD_ZMQ_MAX_MESSAGE_DEFAULT ((uint64_t)1 << 30)
/** Default memory limit of the server's default Buffer (as the reference's
 *  available_memory=1e9). */
#define PD_SERVER_MEMORY_DEFAULT ((uint64_t)1000000000)
/** Default client timeout for each wait, in milliseconds. */
#define PD_CLIENT_TIMEOUT_DEFAULT 60000
/** The routing id of our server's socket (docs/zmq.md, "Wire protocol"). */
#define PD_SERVER_IDENTITY "libpartd/1"

/* ---------------------------------------------------------------- Keys */

/** Length of a z85 CURVE key, without the NUL. */
#define PD_CURVE_KEY_LEN 40

/**
 * Makes a new CURVE keypair: public and secret each get 40 z85 characters
 * and a NUL (41 bytes).  Errors: PD_ERR_MISUSE (NULL), PD_ERR_UNSUPPORTED
 * (libzmq built without CURVE); via pd_errmsg(NULL).
 */
PD_API int pd_curve_keypair(char public_key[41], char secret_key[41]);

/**
 * Derives the public key from a z85 secret key (41 bytes out, with the NUL).
 * Errors: PD_ERR_MISUSE (not 40 z85 characters), PD_ERR_UNSUPPORTED.
 */
PD_API int pd_curve_public(char public_key[41], const char *secret_key);

/**
 * Checks that `key` is a CURVE key as the options take it: 40 z85
 * characters encoding 32 bytes.  0, or PD_ERR_MISUSE (via pd_errmsg(NULL)).
 */
PD_API int pd_curve_check(const char *key);

/* ---------------------------------------------------------------- Server */

typedef struct pd_server pd_server;

/* Log levels for pd_log_fn. */
#define PD_LOG_ERROR 0 /* the server cannot go on */
#define PD_LOG_WARN 1  /* a refused message, a dropped reply, ... */
#define PD_LOG_INFO 2  /* listening, stopping */
#define PD_LOG_DEBUG 3 /* every request */

/** A log sink: one line (no newline) at `level`.  Called from the thread
 *  that serves.  Must not call back into the server. */
typedef void (*pd_log_fn)(void *arg, int level, const char *line);

/* Flags for pd_server_opts.flags. */
/* PD_BORROW (partd.h): the caller keeps the store; the server does not close
 * it (pd_server_close still flushes it and releases its lock). */
#define PD_SERVER_NO_CLOSE 0x1u /* refuse the `close` command (error reply) */

/** Options for pd_server_open.  Zero-initialise, then set what you need:
 *  every zero member means its default. */
typedef struct pd_server_opts {
    /** Addresses to listen on, e.g. "tcp://127.0.0.1:0" (port 0: a free
     *  port), "ipc:///run/me/partd.sock"; nbind of them.  nbind 0: one ipc
     *  socket in a new private directory (docs/zmq.md, "Security"). */
    const char *const *bind;
    size_t nbind;
    /** Default store only: the Buffer's memory limit (0: default). */
    uint64_t memory;
    /** Default store and default ipc directory: where to make the private
     *  temporary directories (NULL: $TMPDIR, else /tmp). */
    const char *dir;
    /** CURVE secret key, 40 z85 characters; NULL: no CURVE. */
    const char *curve_secret;
    /** With curve_secret: the public keys (40 z85 characters each) of the
     *  clients allowed in, ncurve_clients of them.  0: any client that has
     *  the server's public key.  See docs/zmq.md, "Security". */
    const char *const *curve_clients;
    size_t ncurve_clients;
    /** Largest message accepted, in bytes (0: PD_ZMQ_MAX_MESSAGE_DEFAULT). */
    uint64_t max_message;
    /** Stop after this many milliseconds without a request (0: never). */
    uint64_t idle_timeout_ms;
    /** Log sink (NULL: lines "partd server: ..." on stderr) and the most
     *  verbose level passed to it (0 means PD_LOG_INFO; PD_LOG_ERROR is 0,
     *  so errors are always logged). */
    pd_log_fn log;
    void *log_arg;
    int log_level;
    /** PD_BORROW, PD_SERVER_NO_CLOSE. */
    unsigned flags;
    /** The layout of this struct the caller was built with: 0 (the
     *  library's current one) or PD_SERVER_OPTS_VERSION.  A larger number
     *  (a newer header than the library) is PD_ERR_MISUSE.  New members are
     *  only ever added after this one. */
    unsigned struct_version;
} pd_server_opts;

/** The pd_server_opts layout this header declares. */
#define PD_SERVER_OPTS_VERSION 1u

/**
 * Opens a server: binds its addresses (so pd_server_address works at once;
 * clients may connect right away, their requests wait until it runs) but
 * does not serve yet.
 *
 * store: the store to serve.  NULL, or *store NULL: a new
 *   Buffer(Dict, Log) with the Log in a private temporary directory,
 *   removed by pd_server_close.  Otherwise *store is taken over (set to
 *   NULL) and closed by pd_server_close, unless opts->flags has PD_BORROW.
 * opts: may be NULL (all defaults).
 *
 * Errors (pd_errmsg(NULL) says which address and why): PD_ERR_MISUSE (bad
 * option: unknown flag, a malformed CURVE key, an address libzmq cannot
 * parse), PD_ERR_IO (an address cannot be bound: in use, no such
 * directory, path too long for ipc; the temporary directory cannot be
 * made), PD_ERR_UNSUPPORTED (CURVE asked for but libzmq lacks it),
 * PD_ERR_NOMEM.  On error *out is NULL and the caller keeps *store.
 */
PD_API int pd_server_open(pd_server **out, pd_store **store,
                          const pd_server_opts *opts);

/**
 * The address clients connect to for bind address i (the one resolved after
 * binding: a real port for port 0, the ipc path of the default socket), or
 * NULL past the last.  Owned by the server; valid until pd_server_close.
 */
PD_API const char *pd_server_address(const pd_server *srv, size_t i);

/**
 * Serves in the calling thread until pd_server_stop, the `close` command,
 * or the idle timeout.  Takes the store's lock (pd_lock) first, waiting
 * for it (a File locked by another process makes it wait), and holds it
 * while it serves; on the way out it flushes the store into its inner
 * stores and releases the lock.  A server runs once: after it stopped,
 * run and start return PD_ERR_MISUSE.
 * While it waits for the lock it does not look at stop requests (nor does
 * pd_server_close, which waits for run).
 * Returns 0 when stopped; PD_ERR_IO when the lock cannot be taken or
 * ZeroMQ fails; PD_ERR_MISUSE (running already, or already stopped).
 * Requests that fail are answered and logged, never returned.
 */
PD_API int pd_server_run(pd_server *srv);

/** pd_server_run in a new thread.  Errors: PD_ERR_MISUSE, PD_ERR_IO (no
 *  thread).  The thread's own outcome is returned by pd_server_close. */
PD_API int pd_server_start(pd_server *srv);

/**
 * Asks the server to stop after the request it is handling.  Returns at
 * once.  Thread-safe and async-signal-safe (it stores a flag and writes one
 * byte to a pipe), so a SIGTERM handler may call it.  Safe before run and
 * more than once.
 */
PD_API void pd_server_stop(pd_server *srv);

/** True while the server serves (between run's start and its return). */
PD_API int pd_server_running(const pd_server *srv);

/**
 * Stops the server (pd_server_stop, then waits for its thread), flushes the
 * store and releases its lock (done by run on its way out), closes the
 * sockets (libzmq removes the ipc socket files it made), removes the
 * default ipc directory, closes the store unless it was borrowed (a default
 * store's temporary directory goes with it), and sets *srv to NULL.  Must
 * not be called from the serving thread nor from a signal handler.  Every
 * step runs even if one fails; returns the first error (the serving
 * thread's, then the store's), with pd_errmsg(NULL).  Safe on NULL.
 */
PD_API int pd_server_close(pd_server **srv);

/* ---------------------------------------------------------------- Client */

/* Flags for pd_client_opts.flags. */
#define PD_CLIENT_SYNC                                                         \
    0x1u /* wait for each request's reply before returning (see below) */

/** Options for pd_client_open.  Zero-initialise; zero members are defaults.
 */
typedef struct pd_client_opts {
    /** Milliseconds each wait may take (sending, each reply); 0: the
     *  default, PD_CLIENT_TIMEOUT_DEFAULT.  Negative: PD_ERR_MISUSE (a
     *  client never waits forever). */
    int timeout_ms;
    /** The server's CURVE public key (40 z85 characters); NULL: no CURVE. */
    const char *curve_server_key;
    /** This client's CURVE keypair; NULL: a new one is made. */
    const char *curve_public;
    const char *curve_secret;
    /** Largest reply frame accepted (0: PD_ZMQ_MAX_MESSAGE_DEFAULT); libzmq
     *  drops a connection that sends a larger one, so that call times out.
     *  Also the largest append or iset request sent to a libpartd server
     *  (keys and values together): a larger one fails with PD_ERR_LIMIT
     *  before anything is sent, since a server with the same limit (the
     *  same default) would drop it with the connection.  A libpartd
     *  server sends a get's values in frames of at most this size and
     *  32 MiB (the packed get: docs/zmq.md, "Packed append and get"), so
     *  there a value larger than it still arrives. */
    uint64_t max_message;
    /** PD_CLIENT_SYNC. */
    unsigned flags;
    /** Appends that may be in flight at once to libpartd's server (0:
     *  PD_CLIENT_WINDOW_DEFAULT; 1: one request in flight, as the reference
     *  client; at most PD_CLIENT_WINDOW_MAX).  See docs/zmq.md, "The client".
     */
    unsigned window;
    /** 0 (current) or PD_CLIENT_OPTS_VERSION, as in pd_server_opts. */
    unsigned struct_version;
} pd_client_opts;

/** The pd_client_opts layout this header declares. */
#define PD_CLIENT_OPTS_VERSION 1u

#define PD_CLIENT_WINDOW_DEFAULT 8u
#define PD_CLIENT_WINDOW_MAX 64u

/**
 * Opens a client of the server at `address` (e.g. the string from
 * pd_server_address, or a Python partd.Server's `address`).  Connects and
 * sends `syn` without waiting, as the reference does: an address where
 * nothing listens is found out by the first call, which times out.
 *
 * The client is a pd_store (kind "client"): pd_append, pd_get, pd_delete,
 * pd_iset, pd_drop run on the server; pd_keys too when the server is
 * libpartd's (else PD_ERR_UNSUPPORTED); pd_lock/pd_unlock only serialise
 * this handle's calls (the server runs one request at a time anyway).
 *
 * Appends are pipelined to libpartd's server (up to `window` in flight);
 * an error comes back with a later call.  How replies, batches, PD_FSYNC,
 * timeouts and reconnection work: docs/zmq.md, "The client".
 *
 * Errors: PD_ERR_MISUSE (NULL, a bad key or option, an address libzmq
 * cannot parse), PD_ERR_UNSUPPORTED (CURVE without libzmq support),
 * PD_ERR_NOMEM; via pd_errmsg(NULL).  On error *out is NULL.
 */
PD_API int pd_client_open(pd_store **out, const char *address,
                          const pd_client_opts *opts);

/** The address the client connects to (owned by it), or NULL if `store` is
 *  not a client. */
PD_API const char *pd_client_address(const pd_store *client);

/**
 * Waits for the replies of the requests still in flight, if any, and
 * returns their outcome: 0, the first failed request's error (noting how
 * many later ones failed), PD_ERR_TIMEOUT.
 * Errors: as above; PD_ERR_MISUSE if `client` is not a client.
 */
PD_API int pd_client_sync(pd_store *client);

/**
 * Leases namespace `name` (len bytes: the first key part of a Namespace's
 * keys, partd.h) on the server for `ms` milliseconds (at most 2^31 - 1):
 * unless a lease call renews it before then, the server drops the
 * namespace (deletes every key whose first part is `name` and that has two
 * parts or more) and logs it.  A call renews the lease (any client may);
 * ms == 0 releases it (the keys stay).  So the users of a shuffle renew
 * its namespace while they live, and a shuffle whose processes were all
 * killed does not leave its data on the server.  Leases live in the
 * server's memory: a restarted server has none until they are renewed.
 * See docs/zmq.md, "Leases".  Waits for the server's answer.
 * Errors: PD_ERR_UNSUPPORTED (not libpartd's server), PD_ERR_KEY (a name
 * containing "-|-" or ending in "-|"), PD_ERR_LIMIT (the server leases
 * 4096 namespaces already), PD_ERR_TIMEOUT, as pd_client_sync (an earlier
 * request's failure is read first); PD_ERR_MISUSE if `client` is not a
 * client or the name is NULL or over PD_KEY_MAX bytes.
 */
PD_API int pd_client_lease(pd_store *client, const void *name, size_t len,
                           uint32_t ms);

/**
 * 1 when the server the client talks to is libpartd's, 0 when it is
 * another (Python partd), -1 when no reply has been received yet.
 */
PD_API int pd_client_server_is_ours(const pd_store *client);

/**
 * Sends `close` (the server acknowledges, then stops) and waits for the
 * acknowledgement.  The handle stays open but its later calls time out
 * unless a server comes back.  Errors: as pd_client_sync; our server
 * started with PD_SERVER_NO_CLOSE answers with an error.
 */
PD_API int pd_client_close_server(pd_store *client);

/* ---------------------------------------------------------------- Stats */

/**
 * What a libpartd server reports about itself (pd_client_stats,
 * pd_server_get_stats; `partd stats`).  Set `size` to sizeof(pd_server_stats)
 * before the call: members past `size` are not written, so a program built
 * against an older header (a smaller struct) keeps working with a newer
 * library.  Members the server did not send are 0.
 */
typedef struct pd_server_stats {
    size_t size; /**< in: sizeof(pd_server_stats) */
    /* The store, at the time of the call. */
    uint64_t keys;  /**< keys that hold data */
    uint64_t bytes; /**< bytes they hold (sum of their sizes) */
    /* Since the server started. */
    uint64_t records;        /**< key-value pairs appended (append requests
                                  that succeeded) */
    uint64_t appended_bytes; /**< bytes of those values */
    uint64_t requests;       /**< requests answered, this one included */
    uint64_t failed;         /**< of which refused or failed (error reply) */
    /* Requests per command (the rest are req_other: unknown or refused
     * before their command could be read). */
    uint64_t req_syn, req_append, req_get, req_iset, req_delete, req_drop,
        req_keys, req_stats, req_close, req_other;
    /* Memory. */
    uint64_t buffer;       /**< 1 when the store is a Buffer, else 0 */
    uint64_t memory;       /**< the Buffer's pd_buffer_memory_usage */
    uint64_t memory_limit; /**< the Buffer's pd_buffer_memory_limit */
    uint64_t spills;       /**< the Buffer's pd_buffer_spills */
    uint64_t rss;          /**< the server process's resident memory, bytes
                                (0 where it cannot be read) */
    /* Clients. */
    uint64_t clients;     /**< `syn` received: clients that connected (one
                               that reconnects after a timeout counts again) */
    uint64_t connections; /**< connections open now */
    uint64_t uptime_ms;   /**< since the server started serving */
    /* Writer attempts (docs/zmq.md, "Attempts"); req_attempt counts the
     * attempt_begin, _append, _commit and _abort requests. */
    uint64_t req_attempt;
    uint64_t attempts_open;       /**< open now */
    uint64_t attempts_committed;  /**< committed */
    uint64_t attempts_aborted;    /**< aborted by their client, or open when
                                       the server stopped */
    uint64_t attempts_conflicted; /**< commits refused: another attempt of
                                       the writer committed first */
    uint64_t attempts_expired;    /**< aborted by the server after going
                                       idle (their client gone) */
} pd_server_stats;

/**
 * Asks the libpartd server that `client` talks to for its figures (the
 * `stats` command, docs/zmq.md), waiting for the reply.  out->size must be
 * set (see pd_server_stats).  Errors: PD_ERR_MISUSE (not a client, NULL,
 * out->size too small), PD_ERR_UNSUPPORTED (the server is not libpartd's:
 * a Python server has no stats command and is never sent one), the errors
 * of any call (PD_ERR_TIMEOUT, PD_ERR_PROTOCOL, an earlier request's
 * failure); via pd_errmsg(client).
 */
PD_API int pd_client_stats(pd_store *client, pd_server_stats *out);

/**
 * The same figures read from the server itself, while it does not serve
 * (before pd_server_run or after it returned, e.g. for a summary at exit;
 * connections is then 0).  Errors: PD_ERR_MISUSE (NULL, out->size too
 * small, the server is running), the store's pd_keys errors; via
 * pd_errmsg(NULL).
 */
PD_API int pd_server_get_stats(pd_server *srv, pd_server_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* PARTD_ZMQ_H */
