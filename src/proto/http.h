/* SPDX-License-Identifier: MIT */
/*
 * A strict HTTP/1.1 request-head parser for the WebSocket upgrade (RFC 9112 §2–§5, RFC 9110
 * §5), and plain responses. Sans-I/O: no libuv, no sockets, no clock, no logging here.
 *
 * The parser works like picohttpparser: the caller keeps every byte received since the start
 * of the request in one buffer and passes all of it on each call. The head is parsed in one
 * pass only once its end (the blank line) has arrived; until then each call scans only the
 * bytes that are new since the last one, so a peer trickling a head one byte at a time
 * (slowloris) costs O(new bytes) per call, not O(bytes so far).
 *
 * Strictness, and what each failure means (the I/O layer answers 400 or 431):
 *   - lines end in CRLF. A bare LF or a bare CR is refused (RFC 9112 §2.2 allows a recipient
 *     to accept a bare LF; we do not, so that no two parsers on the path can disagree about
 *     where a line ends);
 *   - request line `token SP request-target SP HTTP/1.DIGIT CRLF`, single spaces only;
 *   - no empty line before the request line (RFC 9112 §2.2's SHOULD is about garbage left by
 *     a previous request, and an upgrade is the first request on its connection);
 *   - header names are tokens followed directly by ':' (RFC 9112 §5.1), values are trimmed of
 *     OWS; obs-fold and whitespace before the first header are refused (RFC 9112 §5.2, §2.2);
 *   - NUL, other control bytes and DEL are refused anywhere (RFC 9110 §5.5), as soon as they
 *     arrive: a peer that speaks something else (a TLS ClientHello, say) is refused at once
 *     instead of waiting for the handshake timeout.
 */
#ifndef ADIEU_PROTO_HTTP_H
#define ADIEU_PROTO_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* A header array of this many entries is what the I/O layer should pass: more header fields
 * than that in an upgrade request is abuse, answered with 431. */
#define ADIEU_HTTP_MAX_HEADERS 100

/* One header field. Both strings point into the caller's buffer and are NOT NUL-terminated.
 * The value is trimmed of leading and trailing SP/HTAB and may be empty. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} adieu_http_header_t;

/* A parsed request head. Every pointer points into the buffer given to adieu_http_parse()
 * (headers into the caller's array) and is valid while that buffer is unchanged. */
typedef struct {
    const char *method; /* a token, case-sensitive (RFC 9110 §9.1): "GET" */
    size_t method_len;
    const char *target; /* the request-target as sent: "/chat?x=1", "http://h/chat", "*" */
    size_t target_len;
    int minor_version; /* x in HTTP/1.x, 0..9 */
    const adieu_http_header_t *headers;
    size_t num_headers;
} adieu_http_request_t;

typedef enum {
    ADIEU__HTTP_UNSET = 0, /* not initialised: a zeroed parser is refused (asserted) */
    ADIEU__HTTP_SCAN,      /* waiting for the blank line that ends the head */
    ADIEU__HTTP_DONE,      /* a head was returned; the parser takes no more input */
    ADIEU__HTTP_FAILED     /* the head was refused; the parser takes no more input */
} adieu_http_state_t;

typedef struct {
    adieu_http_state_t state;
    unsigned eol;          /* progress through the CR LF CR LF that ends the head, at
                              `scanned` (http.c's EOL_* states) */
    size_t scanned;        /* leading bytes of the request already scanned */
    size_t max_header;     /* largest head accepted, request line to blank line included */
    size_t bytes_examined; /* every byte looked at, scans and the final parse together: a
                              test and benchmark hook for the O(n) promise */
    const char *detail;    /* FAILED: why, a short static string for the log line */
} adieu_http_parser_t;

/* Initialises p for one request head of at most max_header bytes (SPEC --max-header: the
 * request line, the header fields and the blank line). Never allocates, cannot fail. */
void adieu_http_parser_init(adieu_http_parser_t *p, size_t max_header);

/* Parses the request head at the start of buf. buf holds every byte received since the start
 * of the request (it may move between calls, but its first bytes must not change, and len
 * never shrinks); bytes after the head are left alone. headers is the caller's array of
 * max_headers entries. Returns:
 *   1  the head is complete: *head_len is its length (blank line included), *req is filled,
 *      req->headers points into headers; the parser is DONE;
 *   0  the head is not complete yet: call again when more bytes arrived;
 *   ADIEU_ETOOBIG  the head is over max_header bytes (known as soon as max_header bytes
 *      arrived without its end), or it has more than max_headers fields: answer 431;
 *   ADIEU_EPROTO   malformed: answer 400;
 *   ADIEU_EINVALID_STATE  called after a 1 or an error.
 * After an error, adieu_http_parser_detail() says why. Ownership: buf and headers are
 * borrowed; nothing is copied. */
int adieu_http_parse(adieu_http_parser_t *p, const char *buf, size_t len,
                     adieu_http_header_t *headers, size_t max_headers, adieu_http_request_t *req,
                     size_t *head_len);

/* Called at end of stream: 0 if no byte of a request arrived (or a head was returned),
 * ADIEU_ETRUNCATED if the stream ended inside a head, ADIEU_EINVALID_STATE after an error. */
int adieu_http_parser_eof(const adieu_http_parser_t *p);

/* Why the parser failed: a short static string of printable ASCII ("bare LF"), or "" when it
 * has not failed. */
const char *adieu_http_parser_detail(const adieu_http_parser_t *p);

/* True when the n bytes at s equal the NUL-terminated lit, ignoring ASCII case (never the
 * locale). */
bool adieu_http_ieq(const char *s, size_t n, const char *lit);

/* The next header field named name (ASCII case-insensitive) after prev, or the first when
 * prev is NULL; NULL when there is none. prev must point into req->headers. */
const adieu_http_header_t *adieu_http_header_next(const adieu_http_request_t *req, const char *name,
                                                  const adieu_http_header_t *prev);
/* The first header field named name, or NULL. */
const adieu_http_header_t *adieu_http_header_find(const adieu_http_request_t *req,
                                                  const char *name);
/* How many header fields are named name. */
size_t adieu_http_header_count(const adieu_http_request_t *req, const char *name);

/* An iterator over a comma-separated list value (RFC 9110 §5.6.1: `#element`), such as
 * `Connection: keep-alive, Upgrade`. Elements are trimmed of OWS; empty elements are skipped,
 * as §5.6.1 asks of recipients. Quoted strings are not understood: none of the lists the
 * upgrade reads (Connection, Upgrade, Sec-WebSocket-Protocol) may hold one. */
typedef struct {
    const char *pos;
    const char *end;
} adieu_http_list_t;

void adieu_http_list_init(adieu_http_list_t *it, const char *value, size_t len);
/* Sets *elem and *elem_len to the next non-empty element (pointing into the value) and
 * returns true, or returns false at the end of the list. */
bool adieu_http_list_next(adieu_http_list_t *it, const char **elem, size_t *elem_len);
/* True when any header field named name holds the element token, compared ignoring ASCII
 * case. A list may be split over several fields of the same name (RFC 9110 §5.3). */
bool adieu_http_list_has(const adieu_http_request_t *req, const char *name, const char *token);

/* The path of a request-target, without its query: origin-form "/a/b?q" gives "/a/b";
 * absolute-form "http://host:80/a?q" gives "/a", and "/" when the path is empty (RFC 9112
 * §3.2.1–§3.2.2). *path points into target, or to a static "/". Returns false for the
 * asterisk and authority forms, which have no path. */
bool adieu_http_target_path(const char *target, size_t len, const char **path, size_t *path_len);

/* The reason phrase of a status code this server sends ("Bad Request"), or NULL. */
const char *adieu_http_status_text(int status);

/* Writes a response head into out (cap bytes):
 *     HTTP/1.1 <status> <phrase>\r\n  Content-Type: <content_type>\r\n
 *     Content-Length: <content_length>\r\n  Connection: close\r\n  <extra_headers>  \r\n
 * extra_headers is NULL or whole header lines, each ending in CRLF. Every plain answer closes
 * its connection (SPEC §4: keep-alive is not offered), hence the fixed Connection: close.
 * Returns the bytes written, ADIEU_ETOOBIG when they do not fit in cap (out may then hold a
 * partial head), or ADIEU_EINVAL for a status without a phrase. */
int adieu_http_write_head(char *out, size_t cap, int status, const char *extra_headers,
                          const char *content_type, size_t content_length);
/* The same head followed by body_len bytes of body (body may be NULL when body_len is 0). */
int adieu_http_write_response(char *out, size_t cap, int status, const char *extra_headers,
                              const char *content_type, const char *body, size_t body_len);

/* Internal to src/proto (http.c, handshake.c): an append-only writer into a caller buffer
 * that remembers overflow instead of failing each call. */
typedef struct {
    char *out;
    size_t cap;
    size_t len;
    bool overflow;
} adieu__http_out_t;

void adieu__http_put(adieu__http_out_t *w, const char *s, size_t n);
void adieu__http_puts(adieu__http_out_t *w, const char *s);
/* Returns the length written, or ADIEU_ETOOBIG after an overflow. */
int adieu__http_out_end(const adieu__http_out_t *w);

#endif /* ADIEU_PROTO_HTTP_H */
