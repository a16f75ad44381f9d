/* SPDX-License-Identifier: MIT */
/*
 * The RFC 6455 frame codec (§5), sans-I/O: a streaming frame parser and a frame-header
 * writer. No extension is ever negotiated here (SPEC P2 declines permessage-deflate), so the
 * RSV bits must be 0 and only the six defined opcodes exist.
 *
 * The parser never buffers a payload. It reports each frame's header once, then the payload
 * as chunks pointing into the caller's input, unmasked in place. Every frame-level rule is
 * checked as soon as the header field that can break it (the two fixed bytes, the extended
 * length) is complete, so a violation is reported without waiting for the rest of the frame.
 * Message-level rules (fragment order, UTF-8, message size, close codes) belong to proto/ws_conn.h.
 */
#ifndef ADIEU_PROTO_WS_FRAME_H
#define ADIEU_PROTO_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* RFC 6455 §5.2 and §11.8: the defined opcodes. 0x3..0x7 and 0xB..0xF are reserved. */
typedef enum {
    ADIEU_WS_OP_CONT = 0x0,
    ADIEU_WS_OP_TEXT = 0x1,
    ADIEU_WS_OP_BINARY = 0x2,
    ADIEU_WS_OP_CLOSE = 0x8,
    ADIEU_WS_OP_PING = 0x9,
    ADIEU_WS_OP_PONG = 0xA
} adieu_ws_opcode_t;

/* RFC 6455 §5.5: the largest control-frame payload. */
#define ADIEU_WS_MAX_CONTROL 125
/* The largest header: 2 bytes, an 8-byte extended length, a 4-byte masking key. */
#define ADIEU_WS_MAX_HEADER 14

/* Which end of the connection the parser is on. RFC 6455 §5.1: a server must refuse
 * unmasked frames, a client masked ones. */
typedef enum { ADIEU_WS_SERVER = 1, ADIEU_WS_CLIENT } adieu_ws_role_t;

typedef enum {
    ADIEU__WSF_HEAD = 1, /* waiting for the two fixed header bytes (need of them left) */
    ADIEU__WSF_EXTLEN,   /* waiting for the 16- or 64-bit extended length (need bytes) */
    ADIEU__WSF_MASKKEY,  /* waiting for the 4-byte masking key (need bytes) */
    ADIEU__WSF_PAYLOAD,  /* inside a payload: need bytes of it still to come */
    ADIEU__WSF_FAILED    /* a frame broke a rule: all input is refused */
} adieu_ws_frame_state_t;

typedef struct {
    adieu_ws_frame_state_t state; /* 0 in a zeroed struct: not initialised (asserted) */
    adieu_ws_role_t role;
    uint64_t need;     /* bytes still required to finish the current state */
    uint8_t field[8];  /* bytes of the current header field gathered so far */
    uint8_t field_len; /* size of the current header field (2, 8 or 4) */
    /* The frame being parsed. */
    adieu_ws_opcode_t opcode;
    bool fin;
    bool masked;
    uint64_t len;    /* declared payload length */
    uint8_t key[4];  /* masking key */
    unsigned phase;  /* index into key of the next payload byte (payload offset mod 4) */
    const char *why; /* after a failure: what was wrong, a short static string */
} adieu_ws_frame_parser_t;

typedef enum {
    ADIEU_WS_FRAME_HEADER = 1, /* a frame's header is complete: opcode, fin, frame_len */
    ADIEU_WS_FRAME_PAYLOAD     /* a chunk of its payload: data, len, offset, last */
} adieu_ws_frame_event_type_t;

typedef struct {
    adieu_ws_frame_event_type_t type;
    adieu_ws_opcode_t opcode; /* both events: the frame's opcode */
    bool fin;                 /* both events: the frame's FIN bit */
    uint64_t frame_len;       /* both events: the declared payload length */
    uint8_t *data;            /* PAYLOAD: unmasked bytes, inside the caller's input */
    size_t len;               /* PAYLOAD: at least 1 */
    uint64_t offset;          /* PAYLOAD: offset of data within the frame's payload */
    bool last;                /* PAYLOAD: this chunk ends the payload */
} adieu_ws_frame_event_t;

/* Initialises p for the given role. Never allocates, cannot fail. */
void adieu_ws_frame_parser_init(adieu_ws_frame_parser_t *p, adieu_ws_role_t role);

/* Feeds len bytes at data (NULL when len is 0). Sets *consumed to the bytes used (<= len)
 * and returns:
 *   1  one event in *ev. A HEADER event comes once per frame, when its last header byte
 *      arrives; a frame with an empty payload has no PAYLOAD event. PAYLOAD events follow,
 *      each for as much of the payload as the input holds, together covering it exactly.
 *      Their data points into the input, which is unmasked in place (the caller's bytes
 *      are modified), and stays valid as long as the caller's buffer does;
 *   0  every byte was consumed and more are needed;
 *   ADIEU_EPROTO  the frame breaks RFC 6455 §5 (p->why says how); *consumed counts the
 *      bytes up to the end of the header field that showed it. The parser is FAILED from
 *      then on;
 *   ADIEU_EINVALID_STATE  called after a failure.
 * Masked payloads are unmasked a machine word at a time, the key's phase carried from one
 * chunk to the next, so any split of the input gives the same bytes. */
int adieu_ws_frame_parse(adieu_ws_frame_parser_t *p, uint8_t *data, size_t len, size_t *consumed,
                         adieu_ws_frame_event_t *ev);

/* True when the parser stands between frames (no partial header, no payload left). */
bool adieu_ws_frame_parser_idle(const adieu_ws_frame_parser_t *p);

/* True for the control opcodes (close, ping, pong): RFC 6455 §5.5. */
static inline bool adieu_ws_opcode_is_control(adieu_ws_opcode_t op)
{
    return ((unsigned)op & 0x8u) != 0;
}

/* Writes an unmasked frame header (RFC 6455 §5.1: a server never masks) for a payload of
 * payload_len bytes, using the shortest length encoding (§5.2). Returns the header size (2,
 * 4 or 10), or ADIEU_EINVAL for an undefined opcode, a control frame without fin or over 125
 * bytes (§5.5), or a length with its most significant bit set. */
int adieu_ws_frame_header(uint8_t out[10], adieu_ws_opcode_t opcode, bool fin,
                          uint64_t payload_len);

/* The same for a client frame: the mask bit set and key appended (RFC 6455 §5.3). Returns 6,
 * 8 or 14, or ADIEU_EINVAL as above. The payload must then be masked with adieu_ws_mask(...,
 * key, 0). */
int adieu_ws_frame_header_masked(uint8_t out[14], adieu_ws_opcode_t opcode, bool fin,
                                 uint64_t payload_len, const uint8_t key[4]);

/* XORs len bytes at data with the masking key in place (RFC 6455 §5.3: octet i of the
 * payload with key octet i mod 4), starting at key octet phase (0..3). Returns the phase
 * for the bytes that follow, (phase + len) mod 4. Masking and unmasking are the same
 * operation. Works a machine word at a time. */
unsigned adieu_ws_mask(uint8_t *data, size_t len, const uint8_t key[4], unsigned phase);

/* RFC 6455 §7.4.1, §7.4.2 and the IANA registry (1012–1014): true for the close codes that
 * may appear in a close frame: 1000–1003, 1007–1014, 3000–4999. 1004 is reserved; 1005,
 * 1006 and 1015 must never be sent; 0–999, 1016–2999 and 5000+ are unassigned. */
bool adieu_ws_close_code_valid(unsigned code);

#endif /* ADIEU_PROTO_WS_FRAME_H */
