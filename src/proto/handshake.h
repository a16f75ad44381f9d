/* SPDX-License-Identifier: MIT */
/*
 * The server side of the WebSocket opening handshake (RFC 6455 §4.2) and the routing of
 * plain HTTP on the WebSocket port (SPEC P2, P3, section 4 "HTTP answers on the WebSocket
 * port"). Sans-I/O: a parsed request (proto/http.h) goes in, a classification and response
 * bytes come out. SHA-1 comes from OpenSSL's libcrypto, a pure function.
 *
 * How the I/O layer uses it, per connection on the WebSocket listener:
 *
 *   1. adieu_http_parse() on everything received so far. 0: wait (the handshake timer runs).
 *      Negative: adieu_handshake_refuse_parse() then adieu_handshake_write_refusal(): 431
 *      or 400, then close.
 *   2. adieu_handshake_classify() on the request:
 *      ADIEU_HS_UPGRADE  adieu_handshake_write_101(), then WebSocket framing on the bytes
 *                        after the head;
 *      ADIEU_HS_HEALTHZ  adieu_handshake_write_healthz(out, cap, draining), then close;
 *      ADIEU_HS_METRICS  adieu_handshake_write_metrics*() with the Prometheus text, close;
 *      ADIEU_HS_REFUSE   adieu_handshake_write_refusal(), then close.
 *   3. The close reason (SPEC section 4): REFUSE with status 431 is too_big, any other
 *      REFUSE (400, 426, 503) is bad_request; HEALTHZ and METRICS are http_done, the 503
 *      "draining" answer of /healthz included.
 *
 * 404 is never produced: every path other than /healthz and /metrics is a WebSocket
 * endpoint (SPEC section 4), and a method other than GET on /healthz or /metrics is a 400
 * ("any other method"). The 404 phrase is known to the writers for an embedding
 * application that serves fewer paths.
 */
#ifndef ADIEU_PROTO_HANDSHAKE_H
#define ADIEU_PROTO_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "proto/http.h"

/* RFC 6455 §1.3, §4.2.2: the GUID appended to the client's key before hashing. */
#define ADIEU_HANDSHAKE_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
/* A valid Sec-WebSocket-Key: base64 of 16 bytes. */
#define ADIEU_HANDSHAKE_KEY_LEN 24
/* Sec-WebSocket-Accept: base64 of a 20-byte SHA-1 digest. */
#define ADIEU_HANDSHAKE_ACCEPT_LEN 28
/* Room enough for any refusal, /healthz answer or metrics head, and for a 101 whose
 * subprotocol name is at most 256 bytes. */
#define ADIEU_HANDSHAKE_RESPONSE_MAX 512
/* The Content-Type of /metrics: the Prometheus text exposition format 0.0.4. */
#define ADIEU_HANDSHAKE_METRICS_TYPE "text/plain; version=0.0.4"

typedef enum {
    ADIEU_HS_UPGRADE = 1, /* a valid upgrade: answer 101 */
    ADIEU_HS_HEALTHZ,     /* GET /healthz: answer 200 "ok", or 503 "draining" */
    ADIEU_HS_METRICS,     /* GET /metrics: answer 200 with the Prometheus text */
    ADIEU_HS_REFUSE       /* answer status with adieu_handshake_write_refusal() */
} adieu_hs_kind_t;

/* What to answer. A plain value; its pointers say what they borrow. */
typedef struct {
    adieu_hs_kind_t kind;
    int status;         /* 101; 200 or 503 (HEALTHZ); 200 (METRICS); 400, 426, 431, 503 */
    const char *detail; /* short static printable string for the close line's detail="" */
    const char *key;    /* UPGRADE: the Sec-WebSocket-Key value, pointing into the request
                           buffer (valid while it is unchanged), not NUL-terminated */
    size_t key_len;
    const char *subprotocol; /* UPGRADE: the selected subprotocol, pointing into the
                                caller's supported list (NUL-terminated), or NULL */
    size_t subprotocol_len;
} adieu_handshake_t;

/* What the server is willing to do. Borrowed for the call. */
typedef struct {
    bool draining;                   /* SPEC C4: every upgrade request is answered 503 */
    const char *const *subprotocols; /* --subprotocol names, NUL-terminated, any order */
    size_t num_subprotocols;
} adieu_handshake_opts_t;

/* Classifies a parsed request per SPEC section 4 and RFC 6455 §4.2.1, fills *out and returns
 * out->kind. Checks, in this order; the first that fails decides:
 *   request-target without a path (asterisk or authority form)      400
 *   /healthz, /metrics: method other than GET; HTTP/1.1 without exactly one valid Host
 *                                                                   400, else HEALTHZ/METRICS
 *   any other path is a WebSocket endpoint:
 *     method other than GET                                         400
 *     HTTP/1.0                                                      400
 *     Host missing, repeated, empty or malformed (RFC 9112 §3.2)    400
 *     a request body (Transfer-Encoding, Content-Length other than 0): its bytes would be
 *     read as WebSocket frames                                      400
 *     no Upgrade header                                             426 (Upgrade: websocket)
 *     Upgrade without the token "websocket"                         400
 *     Connection without the token "upgrade"                        400
 *     Sec-WebSocket-Version missing, repeated or not "13"           426 (Sec-WebSocket-Version)
 *     Sec-WebSocket-Key missing, repeated, or not base64 of 16 bytes 400
 *     opts->draining                                                503
 *   otherwise UPGRADE (101). 503 replaces only the 101: a request that is wrong gets the
 *   same answer during a drain as before it, and 503 keeps its meaning "valid, retry later".
 * Tokens compare ignoring ASCII case, across repeated fields. The subprotocol is the first
 * in the client's Sec-WebSocket-Protocol list (fields in order) that is in opts, compared
 * exactly (case-sensitive, as RFC 6455 §4.2.2 has the server echo the client's value).
 * Extension offers are ignored: leaving them out of the 101 declines them (SPEC P2). */
adieu_hs_kind_t adieu_handshake_classify(const adieu_http_request_t *req,
                                         const adieu_handshake_opts_t *opts,
                                         adieu_handshake_t *out);

/* Fills *out with the refusal for an error of adieu_http_parse(): ADIEU_ETOOBIG gives 431,
 * any other error 400; detail is the parser's. */
void adieu_handshake_refuse_parse(const adieu_http_parser_t *p, int err, adieu_handshake_t *out);

/* True when key is base64 (RFC 4648 §4 alphabet, padded) of exactly 16 bytes, in canonical
 * form (RFC 4648 §3.5: the unused bits of the last character are zero). */
bool adieu_handshake_key_valid(const char *key, size_t key_len);

/* Computes Sec-WebSocket-Accept for a key, as received (RFC 6455 §4.2.2: base64 of the SHA-1
 * of the key followed by the GUID). Writes 28 characters and a NUL into out. Returns 0,
 * ADIEU_EINVAL for a key over 64 bytes, or ADIEU_ENOMEM when libcrypto fails (the I/O layer
 * then closes with server_error). */
int adieu_handshake_accept_key(const char *key, size_t key_len,
                               char out[ADIEU_HANDSHAKE_ACCEPT_LEN + 1]);

/* Writes the 101 response for an UPGRADE result into out (cap bytes): Upgrade, Connection,
 * Sec-WebSocket-Accept, and Sec-WebSocket-Protocol only when one was selected. Returns the
 * bytes written, ADIEU_ETOOBIG when they do not fit, ADIEU_ENOMEM when libcrypto fails.
 * hs->key must still point at the request (write before the input buffer changes). */
int adieu_handshake_write_101(const adieu_handshake_t *hs, char *out, size_t cap);

/* Writes the refusal for a REFUSE result: status line, for 426 also `Upgrade: websocket`,
 * `Connection: Upgrade` and `Sec-WebSocket-Version: 13`; always Content-Type text/plain,
 * Content-Length, `Connection: close` and a one-line body "<phrase>: <detail>\n". Returns
 * the bytes written, ADIEU_ETOOBIG when they do not fit, ADIEU_EINVAL for another kind. */
int adieu_handshake_write_refusal(const adieu_handshake_t *hs, char *out, size_t cap);

/* Writes the /healthz answer: 200 with body "ok", or 503 with body "draining" (SPEC P3),
 * text/plain, Connection: close. Returns the bytes written or ADIEU_ETOOBIG. */
int adieu_handshake_write_healthz(bool draining, char *out, size_t cap);

/* Writes the /metrics answer, 200 with ADIEU_HANDSHAKE_METRICS_TYPE and Connection: close:
 * head and body into out, or with _head only the head for a body the caller writes after it
 * (body_len bytes exactly). Return the bytes written or ADIEU_ETOOBIG. */
int adieu_handshake_write_metrics(const char *body, size_t body_len, char *out, size_t cap);
int adieu_handshake_write_metrics_head(size_t body_len, char *out, size_t cap);

#endif /* ADIEU_PROTO_HANDSHAKE_H */
