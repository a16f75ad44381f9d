/* SPDX-License-Identifier: MIT */
/*
 * The server-side WebSocket connection of proto/ws_conn.h.
 *
 * adieu_ws_conn_recv() pulls frame events from the frame parser and turns at most one of them
 * into a connection event per call, so the caller handles every event with nothing of ours
 * on the stack. A text or binary message that arrives as one unfragmented frame wholly inside
 * the caller's input is handed out in place; anything else (fragments, a frame split across
 * inputs) is assembled in c->assembly. Its bytes are released at the start of the call after
 * its message was delivered, but its storage (up to ASSEMBLY_KEEP) is kept for the next
 * message, so that a steady stream of split messages allocates nothing per message;
 * adieu_ws_conn_trim() frees it when the I/O layer finds the connection between messages at
 * the end of a read, so an idle connection holds no heap memory. The commonest message of
 * all, one masked frame under 64 KiB that starts a message while OPEN and lies wholly in the
 * input, does not go through the frame parser: whole_message() takes it in one step, with
 * the same event, consumed count and state as the parser's two events would give.
 *
 * Control frames (at most 125 bytes) follow the same rule as data: one whole in the caller's
 * input is handed out in place, with no copy. Only what must outlive the call goes to the
 * control block c->ctl: a control frame split across inputs (gathered in ctl->ctrl), the
 * payload of a pong we owe and the reason of our close frame (both sent later), and the
 * frame being taken from the output, which must stay put until taken. Frames that carry no
 * such bytes (the echo of a close, which carries the code alone; a pong of an empty ping) are
 * built in c->out_small instead, so the common close handshake and keep-alive allocate
 * nothing. The block is allocated on first need and freed by adieu_ws_conn_trim() once
 * nothing in it is in use: an idle connection is only the struct.
 */
#include "proto/ws_conn.h"

#include <assert.h>
#include <string.h>

#include "adieu/errors.h"
#include "util/alloc.h"

/* A message declared no larger than this is reserved whole when its first byte has to be
 * assembled, so it never reallocates. A larger one grows only as its bytes arrive, so a peer
 * that declares a big message and sends little of it cannot make us hold more than it sent. */
#define RESERVE_WHOLE ((size_t)64 * 1024)

/* Assembly storage kept from one message to the next. Larger storage, left by an unusually
 * big message, is freed once that message was delivered; up to this much stays until
 * adieu_ws_conn_trim(). The same bound as RESERVE_WHOLE, so that every message reserved whole
 * finds its storage in place the next time. */
#define ASSEMBLY_KEEP RESERVE_WHOLE

/* RFC 6455 §7.4.1: "no status code was actually present". Reported, never sent. */
#define CODE_NO_STATUS 1005u

/* RFC 6455 §5.5: a close payload is a 2-byte code and up to 123 bytes of reason. */
#define MAX_CLOSE_REASON (ADIEU_WS_MAX_CONTROL - 2)

/* The data of an empty event: never NULL. */
static const uint8_t no_bytes[1];

/* The detail of invalid text, from data_payload() and whole_message() alike: one string, so
 * that both report the same pointer as well as the same words. */
static const char bad_text[] = "invalid UTF-8 in a text message";

unsigned adieu_ws_fail_code(adieu_ws_fail_t fail)
{
    switch (fail) {
#define ADIEU__WS_FAIL_CODE(name, code)                                                            \
    case ADIEU_WS_FAIL_##name:                                                                     \
        return code;
        ADIEU_WS_FAIL_MAP(ADIEU__WS_FAIL_CODE)
#undef ADIEU__WS_FAIL_CODE
    case ADIEU_WS_FAIL_NONE:
    default:
        return 0;
    }
}

void adieu_ws_conn_init(adieu_ws_conn_t *c, size_t max_message)
{
    assert(c != NULL);
    memset(c, 0, sizeof(*c));
    c->state = ADIEU_WS_OPEN;
    c->max_message = max_message;
    adieu_ws_frame_parser_init(&c->frame, ADIEU_WS_SERVER);
    adieu_utf8_init(&c->utf8);
    adieu_buf_init(&c->assembly);
    c->pool = NULL;
}

void adieu_ws_conn_free(adieu_ws_conn_t *c)
{
    assert(c != NULL);
    adieu_buf_free(&c->assembly);
    adieu__free(c->ctl);
    c->ctl = NULL;
    c->msg_active = false;
    c->state = ADIEU_WS_FAILED;
    c->pong_pending = false;
    c->close_pending = false;
    c->out_off = 0;
    c->out_len = 0;
    c->out_is_close = false;
}

adieu_ws_state_t adieu_ws_conn_state(const adieu_ws_conn_t *c)
{
    assert(c != NULL && c->state != 0);
    return c->state;
}

/* ---------------------------------------------------------------------------------------
 * Control output
 * ------------------------------------------------------------------------------------- */

/* The control block, allocated on first need; NULL when it cannot be. */
static adieu_ws_ctl_t *ctl_get(adieu_ws_conn_t *c)
{
    if (c->ctl == NULL) {
        c->ctl = adieu__malloc(sizeof(*c->ctl));
        if (c->ctl != NULL) {
            c->ctl->ctrl_len = 0;
        }
    }
    return c->ctl;
}

/* True while some part of the control block holds bytes still needed. The event data of a
 * split control frame in ctl->ctrl is not counted: trimming ends its validity. */
static bool ctl_in_use(const adieu_ws_conn_t *c)
{
    return c->ctl->ctrl_len > 0 || (c->pong_pending && c->pong_len > 0) ||
           (c->close_pending && c->close_len > 2) ||
           (c->out_off != c->out_len && c->out_len > ADIEU_WS_OUT_SMALL);
}

/* Where the frame being taken is: frames small enough are built in the connection itself. */
static uint8_t *out_bytes(adieu_ws_conn_t *c)
{
    if (c->out_len <= ADIEU_WS_OUT_SMALL) {
        return c->out_small;
    }
    assert(c->ctl != NULL);
    return c->ctl->out;
}

/* RFC 6455 §5.5.3: "If an endpoint receives a Ping frame and has not yet sent Pong frame(s)
 * in response to previous Ping frame(s), the endpoint MAY elect to send a Pong frame for only
 * the most recently processed Ping frame": a pong still waiting is overwritten. The payload
 * is copied, as it is sent after the caller's input is gone. Returns 0 or ADIEU_ENOMEM. */
static int queue_pong(adieu_ws_conn_t *c, const uint8_t *payload, uint8_t len)
{
    if (len > 0) {
        if (ctl_get(c) == NULL) {
            return ADIEU_ENOMEM;
        }
        memcpy(c->ctl->pong, payload, len);
    }
    c->pong_len = len;
    c->pong_pending = true;
    return 0;
}

/* Queues our close frame: with code and reason, or empty when code is 0. A reason needs the
 * control block, which the caller has allocated. NOTE: the pong is taken before the close,
 * and no pong is queued once a close is, so a pong never follows our close frame on the
 * wire. */
static void queue_close(adieu_ws_conn_t *c, unsigned code, const char *reason, size_t len)
{
    assert(!c->close_queued);
    assert(len <= MAX_CLOSE_REASON && (code != 0 || len == 0));
    assert(len == 0 || c->ctl != NULL);
    c->close_len = 0;
    c->close_code = (uint16_t)code;
    if (code != 0) {
        if (len > 0) {
            memcpy(c->ctl->close_reason, reason, len);
        }
        c->close_len = (uint8_t)(2 + len);
    }
    c->close_pending = true;
    c->close_queued = true;
}

/* Builds the next pending control frame where out_bytes() will find it. */
static void load_output(adieu_ws_conn_t *c)
{
    adieu_ws_opcode_t op;
    uint8_t len;
    c->out_off = 0;
    c->out_len = 0;
    if (c->pong_pending) {
        op = ADIEU_WS_OP_PONG;
        len = c->pong_len;
        c->pong_pending = false;
    } else if (c->close_pending) {
        op = ADIEU_WS_OP_CLOSE;
        len = c->close_len;
        c->close_pending = false;
        c->out_is_close = true;
    } else {
        return;
    }
    /* RFC 6455 §5.2, §5.5: a control frame is final, unmasked from a server, and its length
     * (at most 125) fits the 7-bit field, so its header is always these two bytes. */
    assert(len <= ADIEU_WS_MAX_CONTROL);
    c->out_len = (uint8_t)(2 + len);
    uint8_t *dst = out_bytes(c);
    dst[0] = (uint8_t)(0x80u | (unsigned)op);
    dst[1] = len;
    if (op == ADIEU_WS_OP_PONG) {
        if (len > 0) {
            memcpy(dst + 2, c->ctl->pong, len);
        }
    } else if (len > 0) {
        dst[2] = (uint8_t)(c->close_code >> 8);
        dst[3] = (uint8_t)c->close_code;
        if (len > 2) {
            memcpy(dst + 4, c->ctl->close_reason, len - 2u);
        }
    }
}

size_t adieu_ws_conn_output(adieu_ws_conn_t *c, const uint8_t **data)
{
    assert(c != NULL && data != NULL && c->state != 0);
    /* The usual answer, after almost every event: nothing. */
    if (!adieu_ws_conn_has_output(c)) {
        *data = c->out_small;
        return 0;
    }
    if (c->out_off == c->out_len) {
        load_output(c);
    }
    *data = out_bytes(c) + c->out_off;
    return (size_t)(c->out_len - c->out_off);
}

void adieu_ws_conn_output_consume(adieu_ws_conn_t *c, size_t n)
{
    assert(c != NULL && c->state != 0);
    assert(n <= (size_t)(c->out_len - c->out_off));
    c->out_off = (uint8_t)(c->out_off + n);
    if (c->out_off == c->out_len && c->out_is_close) {
        c->out_is_close = false;
        c->close_taken = true;
        /* RFC 6455 §7.1.2: once an endpoint "has both sent and received a Close control
         * frame", the closing handshake is complete. */
        if (c->state == ADIEU_WS_REMOTE_CLOSING) {
            c->state = ADIEU_WS_CLOSED;
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------------------- */

static int emit(adieu_ws_event_t *ev, adieu_ws_event_type_t type, const uint8_t *data, size_t len)
{
    /* The other members are zero, as a compound literal makes them: plain stores, where a
     * memset of the whole event is a library call on every message. */
    *ev = (adieu_ws_event_t){.type = type, .data = data != NULL ? data : no_bytes, .len = len};
    return 1;
}

/* RFC 6455 §7.1.7 "_Fail the WebSocket Connection_": send a close frame with the code
 * (unless one was sent already: only one close frame is ever sent), then discard all further
 * input ("an endpoint MUST NOT continue to attempt to process data ... from the remote
 * endpoint after being instructed to _Fail the WebSocket Connection_"). */
static int fail(adieu_ws_conn_t *c, adieu_ws_event_t *ev, adieu_ws_fail_t kind, const char *detail)
{
    unsigned code = adieu_ws_fail_code(kind);
    if (!c->close_queued) {
        /* Out of memory for the reason: the code alone still says why (a reason is optional,
         * §5.5.1), and failing must not itself fail. */
        size_t len = ctl_get(c) != NULL ? strlen(detail) : 0;
        queue_close(c, code, detail, len);
    }
    c->state = ADIEU_WS_FAILED;
    c->msg_active = false;
    adieu_buf_free(&c->assembly);
    emit(ev, ADIEU_WS_EV_FAIL, NULL, 0);
    ev->code = code;
    ev->fail = kind;
    ev->detail = detail;
    return 1;
}

/* The peer's close frame, its payload complete at p (in the caller's input or ctl->ctrl). */
static int on_close(adieu_ws_conn_t *c, const uint8_t *p, uint8_t n, adieu_ws_event_t *ev)
{
    /* RFC 6455 §5.5.1: "If there is a body, the first two bytes of the body MUST be a 2-byte
     * unsigned integer (in network byte order) representing a status code", followed by a
     * reason in UTF-8. A 1-byte body is neither empty nor a code. */
    if (n == 1) {
        return fail(c, ev, ADIEU_WS_FAIL_PROTOCOL_ERROR, "close frame with a 1-byte payload");
    }
    unsigned code = CODE_NO_STATUS;
    const uint8_t *reason = n >= 2 ? p + 2 : p;
    size_t reason_len = n >= 2 ? n - 2u : 0;
    if (n >= 2) {
        code = (unsigned)p[0] << 8 | p[1];
        /* RFC 6455 §7.4: only codes that may be sent may be received. */
        if (!adieu_ws_close_code_valid(code)) {
            return fail(c, ev, ADIEU_WS_FAIL_PROTOCOL_ERROR, "invalid close code");
        }
        /* RFC 6455 §5.5.1 and §8.1: the reason is UTF-8; invalid text is 1007. */
        if (!adieu_utf8_valid(reason, reason_len)) {
            return fail(c, ev, ADIEU_WS_FAIL_INVALID_UTF8, "invalid UTF-8 in a close reason");
        }
    }
    if (c->state == ADIEU_WS_OPEN) {
        /* RFC 6455 §5.5.1: "If an endpoint receives a Close frame and did not previously send
         * a Close frame, the endpoint MUST send a Close frame in response. (When sending a
         * Close frame in response, the endpoint typically echos the status code it
         * received.)" We echo the code alone, and an empty close with an empty one: 1005
         * only stands for "none" and may not be sent (§7.4.1). Without a reason the echo
         * needs no control block: it cannot fail for want of memory. */
        queue_close(c, code == CODE_NO_STATUS ? 0 : code, NULL, 0);
        c->state = ADIEU_WS_REMOTE_CLOSING;
    } else {
        c->state = ADIEU_WS_CLOSED;
    }
    /* §1.4: "after receiving a control frame indicating the connection should be closed, a
     * peer discards any further data received", including a message left half done. */
    c->msg_active = false;
    emit(ev, ADIEU_WS_EV_CLOSE, reason, reason_len);
    ev->code = code;
    return 1;
}

/* A control frame, its payload complete at p: in the caller's input, or in ctl->ctrl when it
 * was split across inputs. */
static int control_done(adieu_ws_conn_t *c, adieu_ws_opcode_t op, const uint8_t *p, uint8_t n,
                        adieu_ws_event_t *ev)
{
    switch (op) {
    case ADIEU_WS_OP_PING:
        /* RFC 6455 §5.5.2: "Upon receipt of a Ping frame, an endpoint MUST send a Pong frame
         * in response, unless it already received a Close frame." Nor do we after sending
         * ours: our close frame is the last frame we send (§5.5.1). A pong we owe and cannot
         * store fails the connection, as a message we cannot assemble does: dropping it would
         * break that MUST silently. */
        if (!c->close_queued && queue_pong(c, p, n) < 0) {
            return fail(c, ev, ADIEU_WS_FAIL_SERVER_ERROR, "out of memory");
        }
        return emit(ev, ADIEU_WS_EV_PING, p, n);
    case ADIEU_WS_OP_PONG:
        return emit(ev, ADIEU_WS_EV_PONG, p, n);
    case ADIEU_WS_OP_CLOSE:
        return on_close(c, p, n, ev);
    default:
        assert(false && "not a control opcode");
        return 0;
    }
}

/* The last frame of a data message is complete: delivers it from in-place bytes (data) or,
 * when data is NULL, from the assembly buffer. */
static int message_done(adieu_ws_conn_t *c, const uint8_t *data, size_t len, adieu_ws_event_t *ev)
{
    c->msg_active = false;
    if (c->state != ADIEU_WS_OPEN) {
        return 0;
    }
    /* RFC 6455 §8.1: a text message that ends inside a UTF-8 sequence is invalid. */
    if (c->msg_opcode == ADIEU_WS_OP_TEXT && !adieu_utf8_complete(&c->utf8)) {
        return fail(c, ev, ADIEU_WS_FAIL_INVALID_UTF8, "text message ends inside a character");
    }
    if (data == NULL && adieu_buf_size(&c->assembly) > 0) {
        data = adieu_buf_head(&c->assembly);
        len = adieu_buf_size(&c->assembly);
    }
    emit(ev, ADIEU_WS_EV_MESSAGE, data, len);
    ev->opcode = c->msg_opcode;
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * Frames
 * ------------------------------------------------------------------------------------- */

/* A data frame's header: fragment order (RFC 6455 §5.4) and the size limit. */
static int data_header(adieu_ws_conn_t *c, const adieu_ws_frame_event_t *fe, adieu_ws_event_t *ev)
{
    /* RFC 6455 §5.4: a fragmented message is "a single frame with the FIN bit clear and an
     * opcode other than 0, followed by zero or more frames with the FIN bit clear and the
     * opcode set to 0, and terminated by a single frame with the FIN bit set and an opcode
     * of 0". So a continuation needs a message to continue, and nothing else may start
     * inside one. */
    if (fe->opcode == ADIEU_WS_OP_CONT && !c->msg_active) {
        return fail(c, ev, ADIEU_WS_FAIL_PROTOCOL_ERROR, "continuation without a message");
    }
    if (fe->opcode != ADIEU_WS_OP_CONT && c->msg_active) {
        return fail(c, ev, ADIEU_WS_FAIL_PROTOCOL_ERROR, "new message inside a fragmented one");
    }
    if (fe->opcode != ADIEU_WS_OP_CONT) {
        c->msg_active = true;
        c->msg_opcode = fe->opcode;
        c->msg_len = 0;
        adieu_utf8_init(&c->utf8);
    }
    if (c->state == ADIEU_WS_OPEN) {
        /* The limit is checked on the running total of declared lengths, before any byte of
         * this frame is buffered or any storage reserved for it. */
        if (fe->frame_len > (uint64_t)(c->max_message - c->msg_len)) {
            return fail(c, ev, ADIEU_WS_FAIL_TOO_BIG, "message too big");
        }
        c->msg_len += (size_t)fe->frame_len;
    }
    if (fe->frame_len == 0 && fe->fin) {
        return message_done(c, NULL, 0, ev);
    }
    return 0;
}

/* Copies a chunk of a message into the assembly buffer. Returns 0 or ADIEU_ENOMEM. */
static int assemble(adieu_ws_conn_t *c, const uint8_t *p, size_t n)
{
    size_t have = adieu_buf_size(&c->assembly);
    /* msg_len counts every declared byte of the message so far, this whole frame included. */
    size_t want = c->msg_len <= RESERVE_WHOLE ? c->msg_len - have : n;
    if (c->pool != NULL) {
        adieu_buf_pool_take(c->pool, &c->assembly);
    }
    uint8_t *dst = adieu_buf_reserve(&c->assembly, want);
    if (dst == NULL) {
        return ADIEU_ENOMEM;
    }
    memcpy(dst, p, n);
    adieu_buf_commit(&c->assembly, n);
    return 0;
}

/* A chunk of a data frame's payload. */
static int data_payload(adieu_ws_conn_t *c, const adieu_ws_frame_event_t *fe, adieu_ws_event_t *ev)
{
    bool ends_message = fe->last && fe->fin;
    if (c->state != ADIEU_WS_OPEN) {
        /* LOCAL_CLOSING: our close was sent, so the message is dropped unseen; the frame
         * rules above still apply. */
        c->msg_active = c->msg_active && !ends_message;
        return 0;
    }
    /* RFC 6455 §8.1, fail fast: each chunk is checked as it arrives, so invalid text is
     * refused without waiting for the rest of its frame or message. */
    if (c->msg_opcode == ADIEU_WS_OP_TEXT && adieu_utf8_feed(&c->utf8, fe->data, fe->len) < 0) {
        return fail(c, ev, ADIEU_WS_FAIL_INVALID_UTF8, bad_text);
    }
    /* An unfragmented frame whose payload is wholly in this input: no copy. */
    if (ends_message && fe->offset == 0 && fe->opcode != ADIEU_WS_OP_CONT) {
        return message_done(c, fe->data, fe->len, ev);
    }
    if (assemble(c, fe->data, fe->len) < 0) {
        return fail(c, ev, ADIEU_WS_FAIL_SERVER_ERROR, "out of memory");
    }
    return ends_message ? message_done(c, NULL, 0, ev) : 0;
}

/* Handles one frame event; returns 1 with a connection event or 0. */
static int on_frame_event(adieu_ws_conn_t *c, const adieu_ws_frame_event_t *fe,
                          adieu_ws_event_t *ev)
{
    bool control = adieu_ws_opcode_is_control(fe->opcode);
    if (fe->type == ADIEU_WS_FRAME_HEADER) {
        if (!control) {
            return data_header(c, fe, ev);
        }
        assert(c->ctl == NULL || c->ctl->ctrl_len == 0);
        return fe->frame_len == 0 ? control_done(c, fe->opcode, NULL, 0, ev) : 0;
    }
    if (!control) {
        return data_payload(c, fe, ev);
    }
    /* The frame parser has checked that a control payload fits (§5.5: at most 125). */
    assert(fe->offset + fe->len <= ADIEU_WS_MAX_CONTROL);
    /* Wholly in this input: in place, as an unfragmented data frame is. */
    if (fe->offset == 0 && fe->last) {
        return control_done(c, fe->opcode, fe->data, (uint8_t)fe->len, ev);
    }
    /* Split across inputs: gathered in the control block, which trimming keeps meanwhile
     * (ctrl_len > 0 from the first chunk on). */
    assert(fe->offset == 0 || c->ctl != NULL);
    adieu_ws_ctl_t *ctl = ctl_get(c);
    if (ctl == NULL) {
        return fail(c, ev, ADIEU_WS_FAIL_SERVER_ERROR, "out of memory");
    }
    assert(fe->offset == ctl->ctrl_len);
    memcpy(ctl->ctrl + ctl->ctrl_len, fe->data, fe->len);
    ctl->ctrl_len = (uint8_t)(ctl->ctrl_len + fe->len);
    if (!fe->last) {
        return 0;
    }
    uint8_t n = ctl->ctrl_len;
    ctl->ctrl_len = 0;
    return control_done(c, fe->opcode, ctl->ctrl, n, ev);
}

/* An assembled message is valid until the next call: this is that call. Between messages the
 * buffer holds nothing we need, but its storage is kept for the next message (up to
 * ASSEMBLY_KEEP); once messages are no longer delivered (not OPEN) nothing will be assembled
 * again, and it is freed. */
static void release_assembly(adieu_ws_conn_t *c)
{
    /* The usual case, every message delivered in place: no storage at all. */
    if (c->assembly.data == NULL) {
        return;
    }
    if (c->state != ADIEU_WS_OPEN) {
        adieu_buf_free(&c->assembly);
    } else if (!c->msg_active) {
        adieu_buf_reset(&c->assembly);
        adieu_buf_shrink(&c->assembly, ASSEMBLY_KEEP);
    }
}

void adieu_ws_conn_trim(adieu_ws_conn_t *c)
{
    assert(c != NULL && c->state != 0);
    /* The control block is allocated again on its next need, which for most connections is
     * rare (a split control frame, a ping with a payload, our close with a reason). */
    if (c->ctl != NULL && !ctl_in_use(c)) {
        adieu__free(c->ctl);
        c->ctl = NULL;
    }
    if (c->assembly.data == NULL) {
        return;
    }
    /* Inside a data message, or inside a frame that may carry one, the storage is wanted
     * again as soon as the next read arrives: a message split across reads keeps it, so that
     * a steady stream of them allocates nothing per message. Between messages it only holds
     * the bytes of one already delivered, whose validity the caller gives up by calling
     * this. Once not OPEN, nothing is assembled again. */
    bool between = !c->msg_active && adieu_ws_frame_parser_idle(&c->frame);
    if (!between && c->state == ADIEU_WS_OPEN) {
        return;
    }
    adieu_buf_reset(&c->assembly);
    if (c->pool != NULL) {
        adieu_buf_pool_give(c->pool, &c->assembly);
    } else {
        adieu_buf_free(&c->assembly);
    }
}

/* The first two bytes of the frames whole_message() takes (RFC 6455 §5.2): FIN set, RSV
 * bits clear, opcode text or binary; the mask bit and the 7-bit length. */
#define FIN_TEXT 0x81u
#define FIN_BINARY 0x82u
#define MASK_BIT 0x80u
#define LEN7_BITS 0x7Fu
#define LEN7_16BIT 126u
#define LEN7_64BIT 127u

/* The usual data message: one masked, unfragmented text or binary frame, its header, key and
 * payload all in the input, arriving while OPEN between messages. Taken here in one step, it
 * costs one check of the header instead of a HEADER and a PAYLOAD event from the frame
 * parser, each dispatched through on_frame_event(), and gives the same event, consumed count
 * and state: what data_header() and data_payload() would do for it, in the same order, with
 * the same functions for the unmasking, the UTF-8 and the end of the message. Returns 1 with
 * the event in *ev and the frame's size in *used, or 0, having changed nothing, for any
 * other input, which the general path then takes. So every rule not checked here (RSV bits,
 * unmasked frames, non-minimal lengths, the size limit, fragments, control frames, a frame
 * split across inputs) keeps its one implementation there, failures included.
 *
 * The frame parser is not involved: it stays between frames, as it would be after this
 * frame. What it would have recorded of the frame (opcode, length, key) is read by nothing
 * before the next header overwrites it. */
static int whole_message(adieu_ws_conn_t *c, uint8_t *in, size_t avail, size_t *used,
                         adieu_ws_event_t *ev)
{
    if (c->state != ADIEU_WS_OPEN || c->msg_active || avail < 2 ||
        !adieu_ws_frame_parser_idle(&c->frame)) {
        return 0;
    }
    unsigned b0 = in[0];
    unsigned b1 = in[1];
    if ((b0 != FIN_TEXT && b0 != FIN_BINARY) || (b1 & MASK_BIT) == 0) {
        return 0;
    }
    size_t head = 2 + 4;
    size_t n = b1 & LEN7_BITS;
    if (n == LEN7_16BIT) {
        if (avail < 4) {
            return 0;
        }
        n = (size_t)in[2] << 8 | in[3];
        /* A 16-bit length under 126 is not minimally encoded (§5.2): the parser fails it. */
        if (n < LEN7_16BIT) {
            return 0;
        }
        head += 2;
    } else if (n == LEN7_64BIT) {
        return 0; /* 64 KiB or more: rare, and the unmasking outweighs the header */
    }
    /* A frame over the limit fails as TOO_BIG in data_header(), before its payload is
     * unmasked; msg_len would start at 0, so the limit applies to n alone. */
    if (avail < head || avail - head < n || n > c->max_message) {
        return 0;
    }
    uint8_t *payload = in + head;
    adieu_ws_mask(payload, n, payload - 4, 0);
    /* data_header() starts the message: kept the same, though nothing reads these once the
     * message is delivered (msg_active stays false, as message_done() leaves it). */
    c->msg_opcode = (adieu_ws_opcode_t)(b0 & 0x0Fu);
    c->msg_len = n;
    adieu_utf8_init(&c->utf8);
    *used = head + n;
    /* data_payload(): the frame in one chunk, so no continuation; an empty frame has no
     * PAYLOAD event, and its message is delivered with no data, as data_header() does. */
    if (c->msg_opcode == ADIEU_WS_OP_TEXT && adieu_utf8_feed(&c->utf8, payload, n) < 0) {
        return fail(c, ev, ADIEU_WS_FAIL_INVALID_UTF8, bad_text);
    }
    return message_done(c, n > 0 ? payload : NULL, n, ev);
}

int adieu_ws_conn_recv(adieu_ws_conn_t *c, uint8_t *data, size_t len, size_t *consumed,
                       adieu_ws_event_t *ev)
{
    assert(c != NULL && consumed != NULL && ev != NULL);
    assert(data != NULL || len == 0);
    assert(c->state >= ADIEU_WS_OPEN && c->state <= ADIEU_WS_FAILED);
    release_assembly(c);
    /* Only OPEN and LOCAL_CLOSING still read frames; after the peer's close or a failure
     * everything is discarded. An empty input has nothing to report: every event needs at
     * least one new byte. */
    if (len == 0 || (c->state != ADIEU_WS_OPEN && c->state != ADIEU_WS_LOCAL_CLOSING)) {
        *consumed = len;
        return 0;
    }
    size_t pos = 0;
    /* Only here, before the loop: the loop goes on only after a frame event that reported
     * nothing, which in OPEN always leaves a message or a frame under way, so the fast path
     * could never apply inside it. Each message the caller reads is one call. */
    if (whole_message(c, data, len, &pos, ev) > 0) {
        *consumed = c->state == ADIEU_WS_FAILED ? len : pos;
        return 1;
    }
    for (;;) {
        adieu_ws_frame_event_t fe;
        size_t used = 0;
        int rc = adieu_ws_frame_parse(&c->frame, data + pos, len - pos, &used, &fe);
        pos += used;
        if (rc < 0) {
            rc = fail(c, ev, ADIEU_WS_FAIL_PROTOCOL_ERROR, c->frame.why);
        } else if (rc == 0) {
            *consumed = pos;
            return 0;
        } else {
            rc = on_frame_event(c, &fe, ev);
        }
        if (rc > 0) {
            /* After a failure the rest of the input is discarded with it. */
            *consumed = c->state == ADIEU_WS_FAILED ? len : pos;
            return 1;
        }
    }
}

int adieu_ws_conn_eof(const adieu_ws_conn_t *c)
{
    assert(c != NULL && c->state != 0);
    if (c->state != ADIEU_WS_OPEN && c->state != ADIEU_WS_LOCAL_CLOSING) {
        return 0;
    }
    bool between = adieu_ws_frame_parser_idle(&c->frame) && !c->msg_active;
    return between ? 0 : ADIEU_ETRUNCATED;
}

int adieu_ws_conn_send_header(adieu_ws_conn_t *c, adieu_ws_opcode_t opcode, uint64_t len,
                              uint8_t out[10])
{
    assert(c != NULL && out != NULL && c->state != 0);
    if (c->state != ADIEU_WS_OPEN) {
        return ADIEU_EINVALID_STATE;
    }
    if (opcode != ADIEU_WS_OP_TEXT && opcode != ADIEU_WS_OP_BINARY && opcode != ADIEU_WS_OP_PING &&
        opcode != ADIEU_WS_OP_PONG) {
        return ADIEU_EINVAL;
    }
    return adieu_ws_frame_header(out, opcode, true, len);
}

int adieu_ws_conn_send_close(adieu_ws_conn_t *c, unsigned code, const char *reason, size_t len)
{
    assert(c != NULL && c->state != 0);
    assert(reason != NULL || len == 0);
    if (c->state != ADIEU_WS_OPEN) {
        return ADIEU_EINVALID_STATE;
    }
    if (!adieu_ws_close_code_valid(code) || len > MAX_CLOSE_REASON ||
        !adieu_utf8_valid((const uint8_t *)reason, len)) {
        return ADIEU_EINVAL;
    }
    /* Only a reason needs storage beyond the connection; the code alone never fails. */
    if (len > 0 && ctl_get(c) == NULL) {
        return ADIEU_ENOMEM;
    }
    queue_close(c, code, reason, len);
    c->state = ADIEU_WS_LOCAL_CLOSING;
    return 0;
}

bool adieu_ws_conn_close_expected(const adieu_ws_conn_t *c)
{
    assert(c != NULL && c->state != 0);
    return c->state == ADIEU_WS_LOCAL_CLOSING;
}

bool adieu_ws_conn_done(const adieu_ws_conn_t *c)
{
    assert(c != NULL && c->state != 0);
    return c->state == ADIEU_WS_CLOSED && c->close_taken;
}
