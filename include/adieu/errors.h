/* SPDX-License-Identifier: MIT */
/*
 * adieu's error codes, apart from adieu.h so that the sans-I/O core (src/proto, and the pure
 * utilities it uses) can name them without including libuv.
 */
#ifndef ADIEU_ERRORS_H
#define ADIEU_ERRORS_H

/* ---------------------------------------------------------------------------------------
 * Errors
 *
 * Functions return 0 on success or a negative code. adieu's own codes live from -20000
 * down, grouped by hundreds: argument/state, protocol, limits, resources. Codes from libuv
 * (UV_ECONNRESET, ...) pass through unchanged; adieu_err_name() and adieu_strerror()
 * name both kinds.
 * ------------------------------------------------------------------------------------- */
#define ADIEU_ERRNO_MAP(XX)                                                                        \
    XX(EINVAL, -20000, "invalid argument")                                                         \
    XX(EINVALID_STATE, -20001, "operation not valid in this state")                                \
    XX(ECLOSED, -20002, "connection is closed")                                                    \
    XX(ECANCELED, -20003, "operation canceled: the connection closed first")                       \
    XX(ETRUNCATED, -20100, "stream ended inside a message")                                        \
    XX(EPROTO, -20101, "protocol violation")                                                       \
    XX(EUTF8, -20102, "invalid UTF-8")                                                             \
    XX(ETOOBIG, -20200, "message too big")                                                         \
    XX(EBUFFULL, -20201, "output queue over its hard limit")                                       \
    XX(ETOOMANY, -20202, "too many connections")                                                   \
    XX(ENOMEM, -20300, "out of memory")

typedef enum {
#define ADIEU__ERR_ENUM(name, value, msg) ADIEU_##name = (value),
    ADIEU_ERRNO_MAP(ADIEU__ERR_ENUM)
#undef ADIEU__ERR_ENUM
} adieu_errno_t;

/* adieu_conn_send() returns this positive value when the message was queued but the
 * connection's output queue is above its high watermark: stop sending to this connection
 * until on_drain. */
#define ADIEU_BACKPRESSURE 1

#endif /* ADIEU_ERRORS_H */
