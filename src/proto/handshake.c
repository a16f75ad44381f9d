/* SPDX-License-Identifier: MIT */
/*
 * The WebSocket opening handshake, server side (RFC 6455 §4.2), and the routing of plain HTTP
 * on the WebSocket port (SPEC section 4). See handshake.h for the order of the checks and
 * what each answer means for the I/O layer.
 */
#include "proto/handshake.h"

#include <assert.h>
#include <string.h>

#include <openssl/evp.h>

#include "adieu/errors.h"

static const char TEXT_PLAIN[] = "text/plain; charset=utf-8";

/* ---------------------------------------------------------------------------------------
 * Sec-WebSocket-Key and Sec-WebSocket-Accept
 * ------------------------------------------------------------------------------------- */

/* The value of a character of the base64 alphabet (RFC 4648 §4, not the URL-safe one of §5),
 * or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    return c == '/' ? 63 : -1;
}

bool adieu_handshake_key_valid(const char *key, size_t key_len)
{
    /* RFC 6455 §4.2.1 item 5: "a base64-encoded value that, when decoded, is 16 bytes in
     * length". 16 bytes encode as 22 characters and "==". */
    if (key == NULL || key_len != ADIEU_HANDSHAKE_KEY_LEN || key[22] != '=' || key[23] != '=') {
        return false;
    }
    for (size_t i = 0; i < 22; i++) {
        if (b64_value((unsigned char)key[i]) < 0) {
            return false;
        }
    }
    /* The 22nd character carries the last 2 bits of byte 16 and 4 padding bits, which are
     * zero in the one canonical encoding (RFC 4648 §3.5 lets a decoder insist on it). */
    return (b64_value((unsigned char)key[21]) & 0x0f) == 0;
}

int adieu_handshake_accept_key(const char *key, size_t key_len,
                               char out[ADIEU_HANDSHAKE_ACCEPT_LEN + 1])
{
    enum { KEY_MAX = 64, GUID_LEN = sizeof(ADIEU_HANDSHAKE_GUID) - 1 };
    assert(out != NULL && (key != NULL || key_len == 0));
    if (key_len > KEY_MAX) {
        return ADIEU_EINVAL;
    }
    /* RFC 6455 §4.2.2 /response/ item 4: the key as sent (not decoded, not case-folded), then
     * the GUID, hashed with SHA-1, the 20-byte digest base64-encoded. */
    unsigned char input[KEY_MAX + GUID_LEN];
    if (key_len > 0) {
        memcpy(input, key, key_len);
    }
    memcpy(input + key_len, ADIEU_HANDSHAKE_GUID, GUID_LEN);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    if (EVP_Digest(input, key_len + GUID_LEN, digest, &digest_len, EVP_sha1(), NULL) != 1 ||
        digest_len != 20) {
        return ADIEU_ENOMEM;
    }
    /* EVP_EncodeBlock writes 4 characters per 3 bytes, padded, and a NUL: 28 + 1. */
    int n = EVP_EncodeBlock((unsigned char *)out, digest, 20);
    assert(n == ADIEU_HANDSHAKE_ACCEPT_LEN);
    (void)n;
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Classification
 * ------------------------------------------------------------------------------------- */

static adieu_hs_kind_t refuse(adieu_handshake_t *out, int status, const char *detail)
{
    out->kind = ADIEU_HS_REFUSE;
    out->status = status;
    out->detail = detail;
    return out->kind;
}

static bool is_get(const adieu_http_request_t *req)
{
    /* RFC 9110 §9.1: "The method token is case-sensitive". */
    return req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
}

/* The bytes host_problem() refuses in a Host value: whitespace and the delimiters that end an
 * authority. A switch rather than memchr: a library call per byte of the value costs more
 * than the comparison itself. */
static bool host_delimiter(char c)
{
    switch (c) {
    case ' ':
    case '\t':
    case ',':
    case '/':
    case '?':
    case '#':
    case '@':
        return true;
    default:
        return false;
    }
}

/* RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
 * request message that lacks a Host header field and to any request message that contains
 * more than one Host header field line or a Host header field with an invalid field value."
 * Host = uri-host [ ":" port ]: besides being non-empty, it cannot hold whitespace or any of
 * the delimiters that end an authority. RFC 6455 §4.2.1 item 2 needs the server's authority,
 * so an empty Host does not do for an upgrade either. Returns NULL when it is fine. */
static const char *host_problem(const adieu_http_request_t *req)
{
    size_t n = adieu_http_header_count(req, "Host");
    if (n == 0) {
        return "missing Host";
    }
    if (n > 1) {
        return "duplicate Host";
    }
    const adieu_http_header_t *h = adieu_http_header_find(req, "Host");
    if (h->value_len == 0) {
        return "empty Host";
    }
    for (size_t i = 0; i < h->value_len; i++) {
        if (host_delimiter(h->value[i])) {
            return "malformed Host";
        }
    }
    return NULL;
}

/* /healthz and /metrics: plain HTTP, answered by the I/O layer (SPEC P3). HTTP/1.0 is fine
 * here (health checkers may use it), but an HTTP/1.1 request still needs its Host. */
static adieu_hs_kind_t classify_plain(const adieu_http_request_t *req, adieu_hs_kind_t kind,
                                      bool draining, adieu_handshake_t *out)
{
    if (!is_get(req)) {
        return refuse(out, 400, "method not GET");
    }
    const char *problem = req->minor_version >= 1 ? host_problem(req) : NULL;
    if (problem != NULL) {
        return refuse(out, 400, problem);
    }
    out->kind = kind;
    out->status = kind == ADIEU_HS_HEALTHZ && draining ? 503 : 200;
    out->detail = kind == ADIEU_HS_HEALTHZ ? "healthz" : "metrics";
    return kind;
}

/* A GET upgrade has no body: RFC 9110 §9.3.1 gives a GET body no meaning, and here its
 * bytes would be taken for the first WebSocket frames. */
static bool has_body(const adieu_http_request_t *req)
{
    if (adieu_http_header_find(req, "Transfer-Encoding") != NULL) {
        return true;
    }
    for (const adieu_http_header_t *h = adieu_http_header_find(req, "Content-Length"); h != NULL;
         h = adieu_http_header_next(req, "Content-Length", h)) {
        if (!(h->value_len == 1 && h->value[0] == '0')) {
            return true;
        }
    }
    return false;
}

/* RFC 6455 §4.2.1 items 3, 4 and 6, and §4.4 for the version. NULL when they hold; else the
 * detail, with *status set. */
static const char *upgrade_problem(const adieu_http_request_t *req, int *status)
{
    *status = 400;
    /* RFC 9110 §15.5.22: 426 means the client must switch protocols, and it says which. */
    if (adieu_http_header_find(req, "Upgrade") == NULL) {
        *status = 426;
        return "no Upgrade header";
    }
    if (!adieu_http_list_has(req, "Upgrade", "websocket")) {
        return "Upgrade without websocket";
    }
    if (!adieu_http_list_has(req, "Connection", "upgrade")) {
        return "Connection without upgrade";
    }
    /* RFC 6455 §4.4: a version the server does not understand is answered with a
     * Sec-WebSocket-Version field listing those it does; 426 as SPEC section 4 says. The
     * field appears at most once in a request (§11.3.5). */
    *status = 426;
    size_t versions = adieu_http_header_count(req, "Sec-WebSocket-Version");
    if (versions == 0) {
        return "missing Sec-WebSocket-Version";
    }
    if (versions > 1) {
        return "duplicate Sec-WebSocket-Version";
    }
    const adieu_http_header_t *v = adieu_http_header_find(req, "Sec-WebSocket-Version");
    if (!(v->value_len == 2 && memcmp(v->value, "13", 2) == 0)) {
        return "unsupported Sec-WebSocket-Version";
    }
    /* RFC 6455 §11.3.1: Sec-WebSocket-Key "MUST NOT appear more than once". */
    *status = 400;
    size_t keys = adieu_http_header_count(req, "Sec-WebSocket-Key");
    if (keys == 0) {
        return "missing Sec-WebSocket-Key";
    }
    if (keys > 1) {
        return "duplicate Sec-WebSocket-Key";
    }
    const adieu_http_header_t *k = adieu_http_header_find(req, "Sec-WebSocket-Key");
    if (!adieu_handshake_key_valid(k->value, k->value_len)) {
        return "bad Sec-WebSocket-Key";
    }
    return NULL;
}

/* RFC 6455 §4.2.2 /subprotocol/: one of the client's values, or none. SPEC section 4: "the
 * server picks the first protocol in the client's list that it supports". §11.3.4: the field
 * may be repeated, which is the same as one field holding all the values, in order. */
static void select_subprotocol(const adieu_http_request_t *req, const adieu_handshake_opts_t *opts,
                               adieu_handshake_t *out)
{
    for (const adieu_http_header_t *h = adieu_http_header_find(req, "Sec-WebSocket-Protocol");
         h != NULL; h = adieu_http_header_next(req, "Sec-WebSocket-Protocol", h)) {
        adieu_http_list_t it;
        adieu_http_list_init(&it, h->value, h->value_len);
        const char *e;
        size_t n;
        while (adieu_http_list_next(&it, &e, &n)) {
            for (size_t i = 0; i < opts->num_subprotocols; i++) {
                const char *s = opts->subprotocols[i];
                if (strlen(s) == n && memcmp(s, e, n) == 0) {
                    /* NOTE: the name echoed is the server's own copy, byte for byte equal to
                     * an element of a parsed field value, so it cannot carry CR or LF into
                     * the 101. */
                    out->subprotocol = s;
                    out->subprotocol_len = n;
                    return;
                }
            }
        }
    }
}

static adieu_hs_kind_t classify_upgrade(const adieu_http_request_t *req,
                                        const adieu_handshake_opts_t *opts, adieu_handshake_t *out)
{
    /* RFC 6455 §4.2.1 item 1: "An HTTP/1.1 or higher GET request". */
    if (!is_get(req)) {
        return refuse(out, 400, "method not GET");
    }
    if (req->minor_version < 1) {
        return refuse(out, 400, "HTTP/1.0 request");
    }
    const char *problem = host_problem(req);
    if (problem != NULL) {
        return refuse(out, 400, problem);
    }
    if (has_body(req)) {
        return refuse(out, 400, "request body not allowed");
    }
    int status = 0;
    problem = upgrade_problem(req, &status);
    if (problem != NULL) {
        return refuse(out, status, problem);
    }
    if (opts->draining) {
        return refuse(out, 503, "draining");
    }
    const adieu_http_header_t *k = adieu_http_header_find(req, "Sec-WebSocket-Key");
    out->key = k->value;
    out->key_len = k->value_len;
    select_subprotocol(req, opts, out);
    out->kind = ADIEU_HS_UPGRADE;
    out->status = 101;
    out->detail = "upgrade";
    return out->kind;
}

adieu_hs_kind_t adieu_handshake_classify(const adieu_http_request_t *req,
                                         const adieu_handshake_opts_t *opts, adieu_handshake_t *out)
{
    assert(req != NULL && opts != NULL && out != NULL);
    assert(opts->subprotocols != NULL || opts->num_subprotocols == 0);
    memset(out, 0, sizeof(*out));
    const char *path;
    size_t path_len;
    if (!adieu_http_target_path(req->target, req->target_len, &path, &path_len)) {
        return refuse(out, 400, "bad request-target");
    }
    /* SPEC section 4: "Any path other than /healthz and /metrics is a WebSocket endpoint."
     * Paths compare exactly: no case folding, no percent-decoding. */
    if (path_len == 8 && memcmp(path, "/healthz", 8) == 0) {
        return classify_plain(req, ADIEU_HS_HEALTHZ, opts->draining, out);
    }
    if (path_len == 8 && memcmp(path, "/metrics", 8) == 0) {
        return classify_plain(req, ADIEU_HS_METRICS, opts->draining, out);
    }
    return classify_upgrade(req, opts, out);
}

void adieu_handshake_refuse_parse(const adieu_http_parser_t *p, int err, adieu_handshake_t *out)
{
    assert(p != NULL && out != NULL && err < 0);
    memset(out, 0, sizeof(*out));
    const char *detail = adieu_http_parser_detail(p);
    if (detail[0] == '\0') {
        detail = "malformed request";
    }
    /* SPEC section 4: "Headers over --max-header → 431" (RFC 6585 §5), and too many fields
     * is the same abuse. Everything else the parser refuses is malformed: 400. */
    refuse(out, err == ADIEU_ETOOBIG ? 431 : 400, detail);
}

/* ---------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------- */

int adieu_handshake_write_101(const adieu_handshake_t *hs, char *out, size_t cap)
{
    assert(hs != NULL && (out != NULL || cap == 0));
    if (hs->kind != ADIEU_HS_UPGRADE) {
        return ADIEU_EINVAL;
    }
    char accept[ADIEU_HANDSHAKE_ACCEPT_LEN + 1];
    int rc = adieu_handshake_accept_key(hs->key, hs->key_len, accept);
    if (rc < 0) {
        return rc;
    }
    /* RFC 6455 §4.2.2 /response/: status 101, Upgrade: websocket, Connection: Upgrade,
     * Sec-WebSocket-Accept, and Sec-WebSocket-Protocol only with a selected subprotocol. No
     * Sec-WebSocket-Extensions: every extension offer is declined (SPEC P2). No
     * Content-Length: a 1xx response has none (RFC 9110 §8.6). */
    adieu__http_out_t w = {.out = out, .cap = cap};
    adieu__http_puts(&w, "HTTP/1.1 101 Switching Protocols\r\n"
                         "Upgrade: websocket\r\n"
                         "Connection: Upgrade\r\n"
                         "Sec-WebSocket-Accept: ");
    adieu__http_put(&w, accept, ADIEU_HANDSHAKE_ACCEPT_LEN);
    adieu__http_puts(&w, "\r\n");
    if (hs->subprotocol != NULL) {
        adieu__http_puts(&w, "Sec-WebSocket-Protocol: ");
        adieu__http_put(&w, hs->subprotocol, hs->subprotocol_len);
        adieu__http_puts(&w, "\r\n");
    }
    adieu__http_puts(&w, "\r\n");
    return adieu__http_out_end(&w);
}

int adieu_handshake_write_refusal(const adieu_handshake_t *hs, char *out, size_t cap)
{
    assert(hs != NULL && (out != NULL || cap == 0));
    const char *phrase = adieu_http_status_text(hs->status);
    if (hs->kind != ADIEU_HS_REFUSE || phrase == NULL || hs->status < 400) {
        return ADIEU_EINVAL;
    }
    /* RFC 9110 §15.5.22: a 426 "MUST send an Upgrade header field", and §7.8: the sender of
     * Upgrade "MUST also send an "Upgrade" connection option". It goes on a line of its own
     * after the head's `Connection: close`: repeated list fields mean the same as one (§5.3),
     * and `close` stays first and alone on its line for readers that look at one field.
     * RFC 6455 §4.4: the versions understood, on every 426, since both kinds come from a
     * client that has to speak another protocol. */
    const char *extra = hs->status == 426 ? "Upgrade: websocket\r\n"
                                            "Connection: Upgrade\r\n"
                                            "Sec-WebSocket-Version: 13\r\n"
                                          : NULL;
    const char *detail = hs->detail != NULL ? hs->detail : "";
    size_t body_len = strlen(phrase) + 2 + strlen(detail) + 1;
    int n = adieu_http_write_head(out, cap, hs->status, extra, TEXT_PLAIN, body_len);
    if (n < 0) {
        return n;
    }
    adieu__http_out_t w = {.out = out, .cap = cap, .len = (size_t)n};
    adieu__http_puts(&w, phrase);
    adieu__http_puts(&w, ": ");
    adieu__http_puts(&w, detail);
    adieu__http_puts(&w, "\n");
    return adieu__http_out_end(&w);
}

int adieu_handshake_write_healthz(bool draining, char *out, size_t cap)
{
    /* SPEC P3: 200 "ok" while serving, 503 "draining" during shutdown. */
    if (draining) {
        return adieu_http_write_response(out, cap, 503, NULL, TEXT_PLAIN, "draining", 8);
    }
    return adieu_http_write_response(out, cap, 200, NULL, TEXT_PLAIN, "ok", 2);
}

int adieu_handshake_write_metrics(const char *body, size_t body_len, char *out, size_t cap)
{
    return adieu_http_write_response(out, cap, 200, NULL, ADIEU_HANDSHAKE_METRICS_TYPE, body,
                                     body_len);
}

int adieu_handshake_write_metrics_head(size_t body_len, char *out, size_t cap)
{
    return adieu_http_write_head(out, cap, 200, NULL, ADIEU_HANDSHAKE_METRICS_TYPE, body_len);
}
