/* SPDX-License-Identifier: MIT */
/*
 * Fuzz harness for the HTTP request-head parser (proto/http.h).
 *
 * Input: byte 0 picks max_header (low 3 bits) and the size of the header array (the next 3
 * bits; bit 6 passes NULL for an empty array); bytes 1-2 pick how the bytes arrive (fuzz.h);
 * the rest is what the peer sends. As the contract asks, each call passes every byte so
 * far; each time in a fresh exact-size copy, the previous one freed first, so a parser that
 * kept a pointer into an old buffer, or reads past the new one, is caught by ASan.
 *
 * Invariants:
 *   - the verdict (complete, need more, 400, 431), the head length and every field's offset
 *     and length agree with an independent reference parser of the rules http.h states, so
 *     every way of splitting the input gives the same answer;
 *   - a parsed request's pointers (method, target, each header name and value) lie inside
 *     the head in the buffer of that call, req->headers is the caller's array, no more
 *     entries than it holds; bytes_examined stays O(n) (at most the bytes scanned plus the
 *     head);
 *   - after a verdict every call is ADIEU_EINVALID_STATE; _eof() and _detail() agree with the
 *     state; the list, lookup and target helpers stay inside the strings they are given.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adieu/errors.h"
#include "proto/http.h"

#include "fuzz.h"

static const size_t max_headers_sizes[8] = {0, 1, 4, 16, 64, 256, 1024, 8192};
static const size_t header_counts[8] = {0, 1, 2, 3, 5, 8, 100, 100};

/* ---------------------------------------------------------------------------------------
 * The reference parser: the rules of http.h written out plainly over the whole input.
 * ------------------------------------------------------------------------------------- */

typedef struct {
    size_t off;
    size_t len;
} span_t;

typedef struct {
    int rc;          /* 1, 0, ADIEU_EPROTO or ADIEU_ETOOBIG */
    size_t head_len; /* when rc is 1 */
    size_t end;      /* where the blank line ends, when it came (even if the head is bad) */
    span_t method;
    span_t target;
    int minor;
    size_t count;
    span_t name[ADIEU_HTTP_MAX_HEADERS];
    span_t value[ADIEU_HTTP_MAX_HEADERS];
} ref_t;

static bool ref_tchar(uint8_t c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool ref_vchar(uint8_t c)
{
    return c > 0x20 && c < 0x7f;
}

/* A byte no request head may hold anywhere: controls but HTAB, CR, LF; and DEL. */
static bool ref_bad(uint8_t c)
{
    return (c < 0x20 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f;
}

/* Length of the run of bytes at b[i..end) that pass ok. */
static size_t ref_run(const uint8_t *b, size_t i, size_t end, bool (*ok)(uint8_t))
{
    size_t k = i;
    while (k < end && ok(b[k])) {
        k++;
    }
    return k - i;
}

/* The request line b[0..end): method SP target SP HTTP/1.d */
static bool ref_request_line(const uint8_t *b, size_t end, ref_t *r)
{
    size_t m = ref_run(b, 0, end, ref_tchar);
    if (m == 0 || m == end || b[m] != ' ') {
        return false;
    }
    size_t t = ref_run(b, m + 1, end, ref_vchar);
    size_t v = m + 1 + t;
    if (t == 0 || v == end || b[v] != ' ') {
        return false;
    }
    const uint8_t *ver = b + v + 1;
    if (end - (v + 1) != 8 || memcmp(ver, "HTTP/1.", 7) != 0 || ver[7] < '0' || ver[7] > '9') {
        return false;
    }
    r->method = (span_t){0, m};
    r->target = (span_t){m + 1, t};
    r->minor = ver[7] - '0';
    return true;
}

/* A header line b[start..end): token ":" OWS value OWS. */
static bool ref_header_line(const uint8_t *b, size_t start, size_t end, span_t *name, span_t *value)
{
    size_t nl = ref_run(b, start, end, ref_tchar);
    if (nl == 0 || start + nl == end || b[start + nl] != ':') {
        return false;
    }
    size_t v = start + nl + 1;
    size_t e = end;
    while (v < e && (b[v] == ' ' || b[v] == '\t')) {
        v++;
    }
    while (e > v && (b[e - 1] == ' ' || b[e - 1] == '\t')) {
        e--;
    }
    *name = (span_t){start, nl};
    *value = (span_t){v, e - v};
    return true;
}

static ref_t reference(const uint8_t *b, size_t len, size_t max_header, size_t max_headers)
{
    ref_t r;
    memset(&r, 0, sizeof(r));
    size_t limit = len < max_header ? len : max_header;
    size_t end = 0;
    for (size_t i = 0; i < limit && end == 0; i++) {
        uint8_t c = b[i];
        bool after_cr = i > 0 && b[i - 1] == '\r';
        if ((after_cr && c != '\n') || (c == '\n' && !after_cr) || ref_bad(c)) {
            r.rc = ADIEU_EPROTO;
            return r;
        }
        if (c == '\n' && i >= 3 && memcmp(b + i - 3, "\r\n\r\n", 4) == 0) {
            end = i + 1;
        }
    }
    if (end == 0) {
        r.rc = len > 0 && len >= max_header ? ADIEU_ETOOBIG : 0;
        return r;
    }
    r.end = end;
    /* Lines: every CR is followed by LF here, and the head ends in an empty line. */
    const uint8_t *cr = memchr(b, '\r', end);
    if (!ref_request_line(b, (size_t)(cr - b), &r)) {
        r.rc = ADIEU_EPROTO;
        return r;
    }
    size_t start = (size_t)(cr - b) + 2;
    while (start < end - 2) {
        size_t stop = (size_t)((const uint8_t *)memchr(b + start, '\r', end - start) - b);
        if (r.count == max_headers) {
            r.rc = ADIEU_ETOOBIG;
            return r;
        }
        if (!ref_header_line(b, start, stop, &r.name[r.count], &r.value[r.count])) {
            r.rc = ADIEU_EPROTO;
            return r;
        }
        r.count++;
        start = stop + 2;
    }
    r.rc = 1;
    r.head_len = end;
    return r;
}

/* ---------------------------------------------------------------------------------------
 * Checks on a parsed request
 * ------------------------------------------------------------------------------------- */

static bool span_is(const char *buf, const char *p, size_t len, span_t s)
{
    return p == buf + s.off && len == s.len;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The list and lookup helpers on one header. */
static void check_helpers(const adieu_http_request_t *req, size_t k)
{
    const adieu_http_header_t *h = &req->headers[k];
    char name[64];
    if (h->name_len >= sizeof(name)) {
        return;
    }
    memcpy(name, h->name, h->name_len);
    name[h->name_len] = '\0';
    FUZZ_ASSERT(adieu_http_ieq(h->name, h->name_len, name));
    const adieu_http_header_t *first = adieu_http_header_find(req, name);
    FUZZ_ASSERT(first != NULL && first <= h);
    FUZZ_ASSERT(adieu_http_ieq(first->name, first->name_len, name));
    size_t count = adieu_http_header_count(req, name);
    FUZZ_ASSERT(count >= 1 && count <= req->num_headers);

    adieu_http_list_t it;
    adieu_http_list_init(&it, h->value, h->value_len);
    const char *e;
    size_t elen;
    bool first_elem = true;
    while (adieu_http_list_next(&it, &e, &elen)) {
        FUZZ_ASSERT(elen > 0 && fuzz_inside(e, elen, h->value, h->value_len));
        FUZZ_ASSERT(!is_ows(e[0]) && !is_ows(e[elen - 1]) && memchr(e, ',', elen) == NULL);
        if (first_elem && elen < 64) {
            char token[64];
            memcpy(token, e, elen);
            token[elen] = '\0';
            /* A token with a NUL cannot be named as a C string; values hold none anyway. */
            FUZZ_ASSERT(strlen(token) != elen || adieu_http_list_has(req, name, token));
            first_elem = false;
        }
    }
}

static void check_target(const adieu_http_request_t *req)
{
    const char *path = NULL;
    size_t plen = 0;
    bool ok = adieu_http_target_path(req->target, req->target_len, &path, &plen);
    if (req->target[0] == '/') {
        FUZZ_ASSERT(ok && path == req->target);
    }
    if (ok) {
        FUZZ_ASSERT(path != NULL && plen > 0 && path[0] == '/');
        FUZZ_ASSERT(fuzz_inside(path, plen, req->target, req->target_len) ||
                    (plen == 1 && strcmp(path, "/") == 0));
        FUZZ_ASSERT(memchr(path, '?', plen) == NULL);
    }
}

static void check_request(const char *buf, size_t len, const adieu_http_request_t *req,
                          const adieu_http_header_t *headers, size_t max_headers, size_t head_len,
                          const ref_t *ref)
{
    FUZZ_ASSERT(head_len == ref->head_len && head_len <= len);
    FUZZ_ASSERT(memcmp(buf + head_len - 4, "\r\n\r\n", 4) == 0);
    FUZZ_ASSERT(fuzz_inside(req->method, req->method_len, buf, head_len));
    FUZZ_ASSERT(fuzz_inside(req->target, req->target_len, buf, head_len));
    FUZZ_ASSERT(span_is(buf, req->method, req->method_len, ref->method));
    FUZZ_ASSERT(span_is(buf, req->target, req->target_len, ref->target));
    FUZZ_ASSERT(req->minor_version == ref->minor);
    FUZZ_ASSERT(req->num_headers == ref->count && req->num_headers <= max_headers);
    FUZZ_ASSERT(req->num_headers == 0 || req->headers == headers);
    for (size_t k = 0; k < req->num_headers; k++) {
        const adieu_http_header_t *h = &req->headers[k];
        FUZZ_ASSERT(fuzz_inside(h->name, h->name_len, buf, head_len));
        FUZZ_ASSERT(fuzz_inside(h->value, h->value_len, buf, head_len));
        FUZZ_ASSERT(span_is(buf, h->name, h->name_len, ref->name[k]));
        FUZZ_ASSERT(span_is(buf, h->value, h->value_len, ref->value[k]));
        check_helpers(req, k);
    }
    check_target(req);
}

static void check_detail(const adieu_http_parser_t *p, bool failed)
{
    const char *d = adieu_http_parser_detail(p);
    FUZZ_ASSERT(d != NULL && (d[0] != '\0') == failed);
    for (const char *c = d; *c != '\0'; c++) {
        FUZZ_ASSERT(*c >= 0x20 && *c < 0x7f);
    }
}

/* The response writer: its answer fits or is refused, never overruns cap. */
static void check_writer(fuzz_in_t *in)
{
    static const int statuses[10] = {101, 200, 400, 404, 426, 431, 500, 503, 299, 0};
    int status = statuses[fuzz_byte(in) % 10u];
    size_t cap = fuzz_byte(in);
    size_t body_len = fuzz_byte(in) % 64;
    char body[64];
    fuzz_bytes(in, (uint8_t *)body, body_len);
    char *out = fuzz_alloc(cap);
    int n = adieu_http_write_response(out, cap, status, NULL, "text/plain", body, body_len);
    if (adieu_http_status_text(status) == NULL || status < 200) {
        FUZZ_ASSERT(n == ADIEU_EINVAL);
    } else if (n != ADIEU_ETOOBIG) {
        FUZZ_ASSERT(n > 0 && (size_t)n <= cap && (size_t)n >= body_len);
        FUZZ_ASSERT(memcmp(out, "HTTP/1.1 ", 9) == 0);
        FUZZ_ASSERT(body_len == 0 || memcmp(out + n - body_len, body, body_len) == 0);
    }
    free(out);
}

/* ---------------------------------------------------------------------------------------
 * The harness
 * ------------------------------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_in_t in = fuzz_in(data, size);
    uint8_t cfg = fuzz_byte(&in);
    size_t max_header = max_headers_sizes[cfg & 7u];
    size_t max_headers = header_counts[(cfg >> 3) & 7u];
    fuzz_split_t split = fuzz_split_read(&in);
    const uint8_t *s = in.p;
    size_t n = in.n;

    adieu_http_header_t *headers = NULL;
    if (max_headers > 0 || (cfg & 0x40u) == 0) {
        headers = fuzz_alloc(max_headers * sizeof(*headers));
    }
    adieu_http_parser_t p;
    adieu_http_parser_init(&p, max_header);
    FUZZ_ASSERT(adieu_http_parser_eof(&p) == 0);
    check_detail(&p, false);

    ref_t ref = reference(s, n, max_header, max_headers);
    char *buf = NULL;
    size_t len = 0;
    int rc = 0;
    bool first = true;
    adieu_http_request_t req;
    size_t head_len = 0;
    while (rc == 0 && (len < n || first)) {
        /* Every byte so far, in a buffer of its own: the old one is gone. */
        len += n > 0 ? fuzz_split_next(&split, n - len) : 0;
        free(buf);
        buf = (char *)fuzz_dup(s, len);
        size_t scanned = p.scanned;
        rc = adieu_http_parse(&p, len > 0 ? buf : NULL, len, headers, max_headers, &req, &head_len);
        FUZZ_ASSERT(rc == 1 || rc == 0 || rc == ADIEU_EPROTO || rc == ADIEU_ETOOBIG);
        FUZZ_ASSERT(p.scanned >= scanned && p.scanned <= len);
        first = false;
    }
    FUZZ_ASSERT(rc == ref.rc);
    size_t limit = len < max_header ? len : max_header;
    /* O(n): each byte scanned once, and the head parsed once more when it ended. */
    FUZZ_ASSERT(p.bytes_examined <= limit + ref.end);
    if (rc == 1) {
        FUZZ_ASSERT(p.state == ADIEU__HTTP_DONE && head_len <= max_header);
        check_request(buf, len, &req, headers, max_headers, head_len, &ref);
        FUZZ_ASSERT(adieu_http_parser_eof(&p) == 0);
    } else if (rc == 0) {
        FUZZ_ASSERT(p.state == ADIEU__HTTP_SCAN && len == n && len < max_header + (len == 0));
        /* The same bytes again: nothing new, the same answer. */
        FUZZ_ASSERT(adieu_http_parse(&p, len > 0 ? buf : NULL, len, headers, max_headers, &req,
                                     &head_len) == 0);
        FUZZ_ASSERT(adieu_http_parser_eof(&p) == (len > 0 ? ADIEU_ETRUNCATED : 0));
    } else {
        FUZZ_ASSERT(p.state == ADIEU__HTTP_FAILED);
        FUZZ_ASSERT(adieu_http_parser_eof(&p) == ADIEU_EINVALID_STATE);
    }
    check_detail(&p, rc < 0);
    if (rc != 0) {
        FUZZ_ASSERT(adieu_http_parse(&p, buf, len, headers, max_headers, &req, &head_len) ==
                    ADIEU_EINVALID_STATE);
    }
    free(buf);
    free(headers);
    check_writer(&in);
    return 0;
}
