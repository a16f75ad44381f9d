/* SPDX-License-Identifier: MIT */
/*
 * The server side of an RFC 6455 connection after the upgrade, sans-I/O: bytes in, events
 * and bytes out, in the manner of Python's websockets and wsproto. On top of the frame codec
 * (proto/ws_frame.h) it assembles messages from fragments with control frames interleaved
 * (§5.4), validates text as UTF-8 as it arrives (§8.1), enforces the message size limit on
 * declared lengths, answers pings (§5.5.2) and runs the close handshake (§5.5.1, §7).
 *
 * The I/O layer drives it:
 *
 *     size_t pos = 0;
 *     for (;;) {
 *         size_t used;
 *         adieu_ws_event_t ev;
 *         int rc = adieu_ws_conn_recv(&c, buf + pos, n - pos, &used, &ev);
 *         pos += used;
 *         if (rc == 0)
 *             break;               // all consumed
 *         handle(&ev);             // the parser is not on the stack here
 *     }
 *     while ((len = adieu_ws_conn_output(&c, &bytes)) > 0) {
 *         queue_write(bytes, len); // copies
 *         adieu_ws_conn_output_consume(&c, len);
 *     }
 *     adieu_ws_conn_trim(&c);      // the read is done: free what an idle connection keeps
 *
 * A message that has to be assembled (fragments, or a frame split across reads) is copied
 * into storage the connection keeps from one message to the next (up to 64 KiB of it), so
 * a steady stream of such messages allocates nothing per message. adieu_ws_conn_trim()
 * frees that storage when the connection stands between messages: an idle connection keeps
 * no heap buffer once trimmed.
 *
 * Control frames are handled in place like data frames when they arrive whole in one input.
 * What has to outlive the call lives in a control block (adieu_ws_ctl_t) allocated on first
 * need: a control frame split across inputs, the payload of a pong we owe, the reason of our
 * close frame, the control frame being taken from the output. A close frame without a reason
 * and a pong without a payload fit in the connection itself. adieu_ws_conn_trim() frees the
 * block once none of it is in use, so a connection that only receives whole data frames,
 * pongs and empty pings never allocates one.
 *
 * Data frames the application sends do not pass through here: the I/O layer writes
 * adieu_ws_conn_send_header()'s bytes and the payload itself. Control output (pongs, close
 * frames) must go out between whole data frames, in the order it is taken.
 */
#ifndef ADIEU_PROTO_WS_CONN_H
#define ADIEU_PROTO_WS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/utf8.h"
#include "proto/ws_frame.h"
#include "util/buf.h"

/* The ways a peer can fail the connection (RFC 6455 §7.1.7), each with the close code we
 * send for it (§7.4.1). This is the one place that maps a failure to a code; the I/O layer
 * maps each kind to the close reason of the same name (SPEC section 4). SERVER_ERROR is our
 * own fault (out of memory), not the peer's. */
#define ADIEU_WS_FAIL_MAP(XX)                                                                      \
    XX(PROTOCOL_ERROR, 1002)                                                                       \
    XX(INVALID_UTF8, 1007)                                                                         \
    XX(TOO_BIG, 1009)                                                                              \
    XX(SERVER_ERROR, 1011)

typedef enum {
    ADIEU_WS_FAIL_NONE = 0,
#define ADIEU__WS_FAIL_ENUM(name, code) ADIEU_WS_FAIL_##name,
    ADIEU_WS_FAIL_MAP(ADIEU__WS_FAIL_ENUM)
#undef ADIEU__WS_FAIL_ENUM
} adieu_ws_fail_t;

/* The close code sent for a failure of that kind; 0 for ADIEU_WS_FAIL_NONE. */
unsigned adieu_ws_fail_code(adieu_ws_fail_t fail);

typedef enum {
    ADIEU_WS_OPEN = 1,       /* messages flow both ways */
    ADIEU_WS_LOCAL_CLOSING,  /* our close is queued; waiting for the peer's. Data messages
                                received now are parsed and checked, never delivered */
    ADIEU_WS_REMOTE_CLOSING, /* the peer's close came first; our echo is queued and not yet
                                all taken from the output. Further input is discarded */
    ADIEU_WS_CLOSED,         /* both close frames exchanged: the handshake is complete (see
                                adieu_ws_conn_done). Further input is discarded */
    ADIEU_WS_FAILED          /* the peer broke the protocol (or adieu_ws_conn_free ran): input
                                is discarded, nothing but the queued output is sent */
} adieu_ws_state_t;

typedef enum {
    ADIEU_WS_EV_MESSAGE = 1, /* a whole text or binary message */
    ADIEU_WS_EV_PING,        /* a ping; its pong is queued (unless our close was) */
    ADIEU_WS_EV_PONG,        /* a pong (answering our ping, or unsolicited: §5.5.3) */
    ADIEU_WS_EV_CLOSE,       /* the peer's close frame */
    ADIEU_WS_EV_FAIL         /* the peer broke the protocol: close the connection */
} adieu_ws_event_type_t;

typedef struct {
    adieu_ws_event_type_t type;
    adieu_ws_opcode_t opcode; /* MESSAGE: ADIEU_WS_OP_TEXT (valid UTF-8) or _BINARY */
    /* MESSAGE: the message. PING, PONG: the payload. CLOSE: the reason text, valid UTF-8,
     * not NUL-terminated. FAIL: empty. Never NULL. Borrowed: valid until the next
     * adieu_ws_conn_recv(), adieu_ws_conn_trim() or adieu_ws_conn_free() on the connection
     * (it points into the caller's input, or into the connection's own storage). */
    const uint8_t *data;
    size_t len;
    /* CLOSE: the peer's code, 1005 ("no status code", §7.4.1) when its close had none.
     * FAIL: the code of the close frame we queued for it (or would have, had ours not been
     * sent already). */
    unsigned code;
    adieu_ws_fail_t fail; /* FAIL: what kind of failure */
    const char *detail;   /* FAIL: a short static description ("reserved opcode") */
} adieu_ws_event_t;

/* The control block: storage for control frames that must outlive the call that received or
 * queued them. Allocated only while some part of it is in use (see adieu_ws_conn_trim), so an
 * idle connection holds none: these bytes are most of what a connection would weigh. */
typedef struct adieu_ws_ctl_s {
    uint8_t ctrl[ADIEU_WS_MAX_CONTROL];             /* a control frame split across inputs */
    uint8_t pong[ADIEU_WS_MAX_CONTROL];             /* the payload of the pong we owe */
    uint8_t close_reason[ADIEU_WS_MAX_CONTROL - 2]; /* the reason of our close frame */
    uint8_t out[2 + ADIEU_WS_MAX_CONTROL];          /* the control frame being taken */
    uint8_t ctrl_len; /* bytes of ctrl gathered so far; 0 unless a split frame is under way */
} adieu_ws_ctl_t;

/* The control frames that fit in the connection: a close frame with a code and no reason, a
 * pong of up to 2 bytes. Where the frame being taken is: out_small when out_len fits. */
#define ADIEU_WS_OUT_SMALL 4

/* Members in order of alignment, so that the small ones pack without holes (160 bytes on
 * LP64, where the control block is 501). */
typedef struct {
    adieu_ws_state_t state; /* 0 in a zeroed struct: not initialised (asserted) */
    adieu_ws_opcode_t msg_opcode;
    size_t max_message;
    /* The data message being received. */
    size_t msg_len; /* the running total: declared lengths of its frames so far */
    adieu_ws_frame_parser_t frame;
    adieu_buf_t assembly; /* its bytes, unless it is delivered in place; between messages
                             empty, its storage kept until adieu_ws_conn_trim() */
    /* Optional, NULL after init: where the assembly's storage comes from when a message must
     * be assembled and goes back to on adieu_ws_conn_trim(), so that many connections can
     * hold none between messages and still not allocate per message. */
    adieu_buf_pool_t *pool;
    adieu_ws_ctl_t *ctl; /* NULL while no part of the control block is in use */
    adieu_utf8_t utf8;   /* text: validation state across fragments */
    bool msg_active;     /* a data frame started a message that has not ended yet */
    /* Control output: a pong and our close wait until taken; out_len/out_off describe the
     * frame being taken. These stay here, not in ctl, so that adieu_ws_conn_has_output() is
     * three loads from the connection. */
    bool pong_pending;
    bool close_pending;
    bool close_queued; /* our close frame was queued (pending, being taken or taken) */
    bool close_taken;  /* every byte of our close frame was taken from the output */
    bool out_is_close; /* the frame being taken is our close frame */
    uint8_t pong_len;  /* its payload is in ctl->pong when not empty */
    uint8_t close_len; /* payload: 0 (empty close), or 2 + the reason in ctl->close_reason */
    uint8_t out_off;
    uint8_t out_len;
    uint16_t close_code;
    uint8_t out_small[ADIEU_WS_OUT_SMALL];
} adieu_ws_conn_t;

/* Initialises c in the OPEN state with a limit of max_message bytes per message (0 allows
 * only empty messages). Never allocates, cannot fail. */
void adieu_ws_conn_init(adieu_ws_conn_t *c, size_t max_message);

/* Frees the assembly buffer and the control block and drops pending output. c is then
 * FAILED (input discarded, sends refused) until adieu_ws_conn_init(). */
void adieu_ws_conn_free(adieu_ws_conn_t *c);

/* Gives back (to c->pool, or frees without one) the assembly storage kept between messages
 * when the connection stands between messages (no data message begun and not ended, no
 * frame partly received) or no longer delivers messages (not OPEN); inside a message it
 * keeps the storage, which holds part of the message or will as soon as the next read
 * arrives. Frees the control block when none of
 * it is in use: no control frame partly received, no pong with a payload or close with a
 * reason waiting, no byte of a frame in it left to take (once our close frame was taken in
 * full, nothing needs it). Call it once a read was fed in full and its events handled: it
 * ends the validity of the last event's data. Cheap when there is nothing to free. Never
 * fails, changes no state. */
void adieu_ws_conn_trim(adieu_ws_conn_t *c);

/* Feeds len bytes at data (NULL when len is 0). The bytes are modified: payloads are
 * unmasked in place. Sets *consumed (<= len) and returns:
 *   1  one event in *ev; call again with the rest of the input, even an empty rest, after
 *      handling it (that call also releases the storage of an assembled message);
 *   0  the whole input was consumed (*consumed == len) and more is needed.
 * Never fails itself: a violation is a FAIL event, whose call consumes (discards) the whole
 * input; so is running out of memory for a message, a split control frame or a pong we
 * owe (ADIEU_WS_FAIL_SERVER_ERROR, 1011). Once the peer's close was received or the
 * connection failed, every later call consumes and discards its whole input and reports
 * nothing. */
int adieu_ws_conn_recv(adieu_ws_conn_t *c, uint8_t *data, size_t len, size_t *consumed,
                       adieu_ws_event_t *ev);

/* For the end of the peer's stream: 0 when it ended between messages, or anywhere after a
 * close frame or a failure; ADIEU_ETRUNCATED inside a frame or a fragmented message. */
int adieu_ws_conn_eof(const adieu_ws_conn_t *c);

/* Points *data at pending control output (a pong, a close frame) and returns its length, 0
 * when there is none. One control frame per call, in the order they must be sent; the bytes
 * stay valid until they are consumed (or c is freed), whatever else is called meanwhile.
 * Take them with adieu_ws_conn_output_consume(); until then the same bytes are returned. */
size_t adieu_ws_conn_output(adieu_ws_conn_t *c, const uint8_t **data);

/* True when adieu_ws_conn_output() would return more than 0: part of a control frame not
 * yet taken, or a pong or close frame waiting. Inline, so that the I/O layer can ask after
 * every event for the price of three loads (all from c, none through c->ctl). */
static inline bool adieu_ws_conn_has_output(const adieu_ws_conn_t *c)
{
    return c->out_off != c->out_len || c->pong_pending || c->close_pending;
}

/* Marks n bytes (at most what adieu_ws_conn_output() just returned) as taken. Taking the
 * last byte of our close frame completes the handshake when the peer's close came first. */
void adieu_ws_conn_output_consume(adieu_ws_conn_t *c, size_t n);

/* Writes the header of an application frame into out and returns its size (2, 4 or 10):
 * a whole TEXT or BINARY message of len bytes, or a PING or unsolicited PONG of at most 125
 * bytes (keep-alive). The caller sends the payload after it, unmasked. Returns
 * ADIEU_EINVALID_STATE once the connection is not OPEN (RFC 6455 §5.5.1: no data after a
 * close frame), ADIEU_EINVAL for another opcode or a control payload over 125 bytes. */
int adieu_ws_conn_send_header(adieu_ws_conn_t *c, adieu_ws_opcode_t opcode, uint64_t len,
                              uint8_t out[10]);

/* Queues our close frame with code and a reason of len bytes (copied; valid UTF-8, at most
 * 123 bytes) and moves to LOCAL_CLOSING: from now on data messages are not delivered, and
 * the peer's close completes the handshake. Returns 0; ADIEU_EINVALID_STATE when a close
 * was already queued (by us, as an echo, or for a failure); ADIEU_EINVAL for a code that
 * may not be sent (adieu_ws_close_code_valid) or a bad reason; ADIEU_ENOMEM when the reason
 * needs the control block and it cannot be allocated: nothing is queued and c is unchanged,
 * and the same close without a reason (len 0), which never allocates, cannot fail so. */
int adieu_ws_conn_send_close(adieu_ws_conn_t *c, unsigned code, const char *reason, size_t len);

/* True while we sent our close and wait for the peer's (LOCAL_CLOSING): the I/O layer arms
 * a timer (reason close_timeout when it fires). */
bool adieu_ws_conn_close_expected(const adieu_ws_conn_t *c);

/* True when the close handshake is complete: both close frames exchanged and ours taken
 * from the output. The server closes TCP once what it took is written. */
bool adieu_ws_conn_done(const adieu_ws_conn_t *c);

adieu_ws_state_t adieu_ws_conn_state(const adieu_ws_conn_t *c);

#endif /* ADIEU_PROTO_WS_CONN_H */
