# SPDX-License-Identifier: BSD-3-Clause
# SPDX-FileCopyrightText: the libpartd authors
# The library's sources, one list per folder (one folder per concept; see
# docs/architecture.md).  Every file is named: a source moved or added
# without being listed here is a link error, never silently dropped.
set(PARTD_SOURCES_CORE
  src/core/attempt.c src/core/buf.c src/core/dir.c src/core/error.c src/core/key.c src/core/ktab.c
  src/core/result.c src/core/store.c src/core/sys.c)
set(PARTD_SOURCES_DICT src/dict/arena.c src/dict/dict.c)
set(PARTD_SOURCES_FILE
  src/file/fdcache.c src/file/file.c src/file/keyfile.c src/file/lock.c
  src/file/names.c src/file/ops.c src/file/walk.c)
set(PARTD_SOURCES_LOG
  src/log/attempt.c src/log/commits.c src/log/compact.c src/log/format.c
  src/log/apply.c src/log/extents.c src/log/gather.c src/log/index.c
  src/log/log.c src/log/pending.c src/log/rcache.c
  src/log/segment.c)
set(PARTD_SOURCES_BUFFER src/buffer/attempt.c src/buffer/buffer.c
  src/buffer/bypass.c src/buffer/spill.c)
set(PARTD_SOURCES_ENCODE
  src/encode/codec.c src/encode/encode.c src/encode/frame.c
  src/encode/codec_blosc.c src/encode/codec_bz2.c src/encode/codec_lz4.c
  src/encode/codec_snappy.c src/encode/codec_zlib.c src/encode/codec_zstd.c)
set(PARTD_SOURCES_ZMQ
  src/zmq/attempt_srv.c src/zmq/client.c src/zmq/client_attempt.c
  src/zmq/client_pipe.c src/zmq/curve.c src/zmq/handler.c src/zmq/lease_srv.c
  src/zmq/server.c src/zmq/server_open.c src/zmq/wire.c)
set(PARTD_SOURCES_FANOUT src/fanout/fanout.c src/fanout/namespace.c)
set(PARTD_SOURCES_CLI
  src/cli/attempt.c src/cli/connect.c src/cli/demo.c src/cli/demo_fail.c src/cli/demo_proc.c
  src/cli/demo_verify.c src/cli/main.c
  src/cli/opts.c src/cli/out.c src/cli/serve.c src/cli/stats.c
  src/cli/store.c src/cli/verbs.c)

set(PARTD_SOURCES)
foreach(folder CORE DICT FILE LOG BUFFER ENCODE ZMQ FANOUT)
  foreach(f ${PARTD_SOURCES_${folder}})
    list(APPEND PARTD_SOURCES ${PROJECT_SOURCE_DIR}/${f})
  endforeach()
endforeach()
list(TRANSFORM PARTD_SOURCES_CLI PREPEND ${PROJECT_SOURCE_DIR}/)
