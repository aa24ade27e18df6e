/*
 * libpartd: the ZeroMQ Server and Client.  Included by partd/partd.h; do not
 * include it on its own.
 */
#ifndef PARTD_ZMQ_H
#define PARTD_ZMQ_H

#ifndef PARTD_PARTD_H
#error "include <partd/partd.h>, not <partd/zmq.h>"
#endif

#endif /* PARTD_ZMQ_H */
