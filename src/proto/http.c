/* SPDX-License-Identifier: MIT */
/*
 * The HTTP/1.1 request-head parser and plain responses (see http.h for the contract).
 *
 * Two passes, picohttpparser-style. scan() walks only the bytes that arrived since the last
 * call, looking for the CRLF CRLF that ends the head; on its way it refuses what can never be
 * part of a valid head (bare CR, bare LF, control bytes), so that garbage is answered at
 * once. Its state is two numbers (position and CRLF progress), so nothing is ever scanned
 * twice. When the end arrives, parse_head() parses the whole head in one pass. It may
 * rely on what scan() proved: every CR is followed by LF, every LF follows a CR, and the only
 * control byte present is HTAB.
 */
#include "proto/http.h"

#include <assert.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "adieu/errors.h"

/* ---------------------------------------------------------------------------------------
 * Character classes (RFC 9110 §5.6.2, RFC 5234 B.1)
 * ------------------------------------------------------------------------------------- */

/* tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" / "`" / "|"
 *       / "~" / DIGIT / ALPHA */
#define TCHAR(c)                                                                                   \
    (((c) >= '0' && (c) <= '9') || ((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z') ||     \
     (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || (c) == '\'' ||          \
     (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' || (c) == '_' ||           \
     (c) == '`' || (c) == '|' || (c) == '~')

/* A byte never valid in a request head: the control bytes other than HTAB, CR and LF, and
 * DEL. RFC 9110 §5.5: "Field values containing CR, LF, or NUL characters are invalid and
 * dangerous"; the other controls are outside field-vchar, and the request line allows none. */
#define BAD_CTL(c) (((c) < 0x20 && (c) != '\t' && (c) != '\r' && (c) != '\n') || (c) == 0x7f)

/* The classes of a byte, one table lookup instead of a chain of comparisons per byte. */
enum {
    CLS_TCHAR = 1, /* TCHAR(c) */
    CLS_PLAIN = 2  /* neither CR, nor LF, nor BAD_CTL(c): scan() just steps over it */
};
#define CLS(c)                                                                                     \
    ((TCHAR(c) ? CLS_TCHAR : 0) | ((c) != '\r' && (c) != '\n' && !BAD_CTL(c) ? CLS_PLAIN : 0))
#define CLS4(c) CLS(c), CLS((c) + 1), CLS((c) + 2), CLS((c) + 3)
#define CLS16(c) CLS4(c), CLS4((c) + 4), CLS4((c) + 8), CLS4((c) + 12)
#define CLS64(c) CLS16(c), CLS16((c) + 16), CLS16((c) + 32), CLS16((c) + 48)

/* The table is the predicates above evaluated for every byte value at compile time, so the
 * rules stay written once, as the RFCs state them. */
static const uint8_t byte_class[256] = {CLS64(0x00), CLS64(0x40), CLS64(0x80), CLS64(0xC0)};

#undef CLS64
#undef CLS16
#undef CLS4
#undef CLS

/* True if any of the 8 bytes at b is below 0x20 or is DEL: every CR, LF and bad control
 * byte, and HTAB too, which the byte loop then steps over. (x - n * ones) & ~x & highs is the
 * "has a byte below n" test, exact as a yes/no answer for n <= 0x80; XOR with DEL in every
 * byte turns DEL into a zero byte for the same test with n = 1. Bytes 0x80..0xFF (obs-text)
 * set neither term. */
static bool ctl8(const unsigned char *b)
{
    const uint64_t ones = UINT64_C(0x0101010101010101);
    const uint64_t highs = UINT64_C(0x8080808080808080);
    uint64_t x;
    memcpy(&x, b, sizeof(x));
    uint64_t del = x ^ (ones * 0x7f);
    return ((((x - ones * 0x20) & ~x) | ((del - ones) & ~del)) & highs) != 0;
}

static bool is_tchar(unsigned char c)
{
    return (byte_class[c] & CLS_TCHAR) != 0;
}

/* VCHAR: visible US-ASCII. The request-target is made of these only (RFC 9112 §3.2 and RFC
 * 3986: no whitespace, no obs-text). */
static bool is_vchar(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char ascii_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* ---------------------------------------------------------------------------------------
 * The parser
 * ------------------------------------------------------------------------------------- */

void adieu_http_parser_init(adieu_http_parser_t *p, size_t max_header)
{
    assert(p != NULL);
    memset(p, 0, sizeof(*p));
    p->state = ADIEU__HTTP_SCAN;
    p->max_header = max_header;
    p->detail = "";
}

static int fail(adieu_http_parser_t *p, int err, const char *detail)
{
    p->state = ADIEU__HTTP_FAILED;
    p->detail = detail;
    return err;
}

/* Progress through the CR LF CR LF that ends a head, kept in p->eol between calls. */
enum {
    EOL_NONE = 0, /* inside a line (also at the very start: a head cannot begin blank) */
    EOL_CR,       /* after a CR: only LF may follow */
    EOL_CRLF,     /* at the start of a line: CR here begins the blank line */
    EOL_CRLFCR    /* after CRLF CR: LF ends the head */
};

/* Scans buf[p->scanned, limit) for the end of the head. Returns 1 with *end set to the head's
 * length when found, 0 when not, or ADIEU_EPROTO. RFC 9112 §2.2: "A sender MUST NOT generate
 * a bare CR"; a recipient may treat a bare LF as a line end, which we do not. */
static int scan(adieu_http_parser_t *p, const unsigned char *buf, size_t limit, size_t *end)
{
    size_t start = p->scanned;
    unsigned eol = p->eol;
    size_t i = start;
    int rc = 0;
    for (; i < limit && rc == 0; i++) {
        /* Inside a line, the bytes that are neither CR, LF nor a bad control byte only keep
         * it going: step over the run of them, a word at a time while no byte of the word
         * is a control byte, then byte by byte. */
        if (eol == EOL_NONE) {
            while (limit - i >= 8 && !ctl8(buf + i)) {
                i += 8;
            }
            while (i < limit && (byte_class[buf[i]] & CLS_PLAIN)) {
                i++;
            }
            if (i == limit) {
                break;
            }
        }
        unsigned char c = buf[i];
        bool after_cr = eol == EOL_CR || eol == EOL_CRLFCR;
        if (c == '\n') {
            if (!after_cr) {
                rc = fail(p, ADIEU_EPROTO, "bare LF");
            } else if (eol == EOL_CRLFCR) {
                *end = i + 1;
                rc = 1;
            }
            eol = EOL_CRLF;
        } else if (after_cr) {
            rc = fail(p, ADIEU_EPROTO, "bare CR");
        } else if (c == '\r') {
            eol = eol == EOL_CRLF ? EOL_CRLFCR : EOL_CR;
        } else if (BAD_CTL(c)) {
            rc = fail(p, ADIEU_EPROTO, "control byte in request head");
        } else {
            eol = EOL_NONE;
        }
    }
    p->bytes_examined += i - start;
    p->scanned = i;
    p->eol = eol;
    return rc;
}

/* request-line = method SP request-target SP HTTP-version (RFC 9112 §3). line excludes its
 * CRLF. Exactly one SP between the parts: RFC 9112 §3 lets a recipient accept other
 * whitespace there, but a strict parser that does not cannot be confused about where the
 * target ends. */
static const char *parse_request_line(const char *line, size_t n, adieu_http_request_t *req)
{
    const unsigned char *s = (const unsigned char *)line;
    size_t i = 0;
    while (i < n && is_tchar(s[i])) {
        i++;
    }
    if (i == 0 || i == n || s[i] != ' ') {
        return "bad method";
    }
    req->method = line;
    req->method_len = i;
    size_t t = ++i;
    while (i < n && is_vchar(s[i])) {
        i++;
    }
    if (i == t || i == n || s[i] != ' ') {
        return "bad request-target";
    }
    req->target = line + t;
    req->target_len = i - t;
    i++;
    /* HTTP-version = HTTP-name "/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3). */
    if (n - i != 8 || memcmp(line + i, "HTTP/", 5) != 0 || s[i + 6] != '.' || s[i + 5] < '0' ||
        s[i + 5] > '9' || s[i + 7] < '0' || s[i + 7] > '9') {
        return "bad HTTP version";
    }
    /* Only HTTP/1.x has this message syntax: an HTTP/2 or HTTP/0 request here is not one
     * we can read. */
    if (s[i + 5] != '1') {
        return "unsupported HTTP version";
    }
    req->minor_version = s[i + 7] - '0';
    return NULL;
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 §5). line excludes its CRLF. */
static const char *parse_header_line(const char *line, size_t n, adieu_http_header_t *h)
{
    const unsigned char *s = (const unsigned char *)line;
    /* RFC 9112 §5.2: a server MUST either reject obs-fold with 400 or replace it; and §2.2:
     * whitespace between the start-line and the first field is rejected or skipped. Both
     * show up as a line starting with SP or HTAB, and both are refused. */
    if (n > 0 && is_ows(line[0])) {
        return "obs-fold or line starting with whitespace";
    }
    size_t i = 0;
    while (i < n && is_tchar(s[i])) {
        i++;
    }
    if (i < n && i > 0 && is_ows(line[i])) {
        /* RFC 9112 §5.1: "No whitespace is allowed between the field name and colon ... A
         * server MUST reject, with a response status code of 400 (Bad Request)". */
        return "whitespace before colon";
    }
    if (i == 0 || i == n || s[i] != ':') {
        return "bad header name";
    }
    h->name = line;
    h->name_len = i;
    size_t v = i + 1;
    size_t end = n;
    while (v < end && is_ows(line[v])) {
        v++;
    }
    while (end > v && is_ows(line[end - 1])) {
        end--;
    }
    /* field-vchar = VCHAR / obs-text, with SP and HTAB between them (RFC 9110 §5.5). NOTE:
     * the rule is enforced by scan(), which refused every other control byte of the head
     * before parse_head() ran, and the caller may not change bytes already scanned, so the
     * value needs no second look here. */
    h->value = line + v;
    h->value_len = end - v;
    return NULL;
}

/* Parses a complete head of len bytes (ending in CRLF CRLF, checked by scan()). */
static int parse_head(adieu_http_parser_t *p, const char *buf, size_t len,
                      adieu_http_header_t *headers, size_t max_headers, adieu_http_request_t *req)
{
    p->bytes_examined += len;
    const char *eol = memchr(buf, '\r', len);
    assert(eol != NULL);
    const char *detail = parse_request_line(buf, (size_t)(eol - buf), req);
    if (detail != NULL) {
        return fail(p, ADIEU_EPROTO, detail);
    }
    size_t count = 0;
    const char *line = eol + 2;
    const char *last = buf + len - 2; /* the blank line's CRLF */
    while (line < last) {
        eol = memchr(line, '\r', (size_t)(last - line) + 1);
        assert(eol != NULL);
        if (count == max_headers) {
            return fail(p, ADIEU_ETOOBIG, "too many header fields");
        }
        detail = parse_header_line(line, (size_t)(eol - line), &headers[count]);
        if (detail != NULL) {
            return fail(p, ADIEU_EPROTO, detail);
        }
        count++;
        line = eol + 2;
    }
    req->headers = headers;
    req->num_headers = count;
    return 1;
}

int adieu_http_parse(adieu_http_parser_t *p, const char *buf, size_t len,
                     adieu_http_header_t *headers, size_t max_headers, adieu_http_request_t *req,
                     size_t *head_len)
{
    assert(p != NULL && req != NULL && head_len != NULL);
    assert(p->state != ADIEU__HTTP_UNSET);
    assert(buf != NULL || len == 0);
    assert(headers != NULL || max_headers == 0);
    if (p->state != ADIEU__HTTP_SCAN) {
        return ADIEU_EINVALID_STATE;
    }
    /* The caller re-sends what it already sent: fewer bytes than were scanned means it lost
     * or replaced its buffer, which no peer can cause. */
    assert(len >= p->scanned);
    /* Never look past max_header: a head that has not ended by then is too big, whatever
     * follows, so neither the time spent nor the answer depends on how much more was sent. */
    size_t limit = len < p->max_header ? len : p->max_header;
    size_t end = 0;
    int rc = scan(p, (const unsigned char *)buf, limit, &end);
    if (rc < 0) {
        return rc;
    }
    if (rc == 0) {
        if (len > 0 && len >= p->max_header) {
            return fail(p, ADIEU_ETOOBIG, "header section over max_header");
        }
        return 0;
    }
    memset(req, 0, sizeof(*req));
    rc = parse_head(p, buf, end, headers, max_headers, req);
    if (rc < 0) {
        return rc;
    }
    p->state = ADIEU__HTTP_DONE;
    *head_len = end;
    return 1;
}

int adieu_http_parser_eof(const adieu_http_parser_t *p)
{
    assert(p != NULL && p->state != ADIEU__HTTP_UNSET);
    switch (p->state) {
    case ADIEU__HTTP_SCAN:
        return p->scanned > 0 ? ADIEU_ETRUNCATED : 0;
    case ADIEU__HTTP_DONE:
        return 0;
    default:
        return ADIEU_EINVALID_STATE;
    }
}

const char *adieu_http_parser_detail(const adieu_http_parser_t *p)
{
    assert(p != NULL);
    return p->state == ADIEU__HTTP_FAILED && p->detail != NULL ? p->detail : "";
}

/* ---------------------------------------------------------------------------------------
 * Reading a parsed request
 * ------------------------------------------------------------------------------------- */

bool adieu_http_ieq(const char *s, size_t n, const char *lit)
{
    assert(s != NULL || n == 0);
    assert(lit != NULL);
    size_t i = 0;
    for (; i < n; i++) {
        if (lit[i] == '\0' ||
            ascii_lower((unsigned char)s[i]) != ascii_lower((unsigned char)lit[i])) {
            return false;
        }
    }
    return lit[i] == '\0';
}

/* True when the n bytes at a and at b are equal ignoring ASCII case. */
static bool ieq_n(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ascii_lower((unsigned char)a[i]) != ascii_lower((unsigned char)b[i])) {
            return false;
        }
    }
    return true;
}

const adieu_http_header_t *adieu_http_header_next(const adieu_http_request_t *req, const char *name,
                                                  const adieu_http_header_t *prev)
{
    assert(req != NULL && name != NULL);
    size_t i = prev == NULL ? 0 : (size_t)(prev - req->headers) + 1;
    assert(i <= req->num_headers);
    /* The lengths are compared first: most fields differ in length from the one sought, and
     * then no byte needs folding. */
    size_t n = strlen(name);
    for (; i < req->num_headers; i++) {
        const adieu_http_header_t *h = &req->headers[i];
        /* RFC 9110 §5.1: field names are case-insensitive. */
        if (h->name_len == n && ieq_n(h->name, name, n)) {
            return h;
        }
    }
    return NULL;
}

const adieu_http_header_t *adieu_http_header_find(const adieu_http_request_t *req, const char *name)
{
    return adieu_http_header_next(req, name, NULL);
}

size_t adieu_http_header_count(const adieu_http_request_t *req, const char *name)
{
    size_t n = 0;
    for (const adieu_http_header_t *h = adieu_http_header_find(req, name); h != NULL;
         h = adieu_http_header_next(req, name, h)) {
        n++;
    }
    return n;
}

void adieu_http_list_init(adieu_http_list_t *it, const char *value, size_t len)
{
    assert(it != NULL && (value != NULL || len == 0));
    it->pos = value;
    it->end = value == NULL ? NULL : value + len;
}

bool adieu_http_list_next(adieu_http_list_t *it, const char **elem, size_t *elem_len)
{
    assert(it != NULL && elem != NULL && elem_len != NULL);
    while (it->pos != NULL && it->pos < it->end) {
        const char *start = it->pos;
        const char *comma = memchr(start, ',', (size_t)(it->end - start));
        const char *stop = comma != NULL ? comma : it->end;
        it->pos = comma != NULL ? comma + 1 : it->end;
        while (start < stop && is_ows(*start)) {
            start++;
        }
        while (stop > start && is_ows(stop[-1])) {
            stop--;
        }
        /* RFC 9110 §5.6.1: "a recipient MUST accept empty list elements" and ignores them. */
        if (stop > start) {
            *elem = start;
            *elem_len = (size_t)(stop - start);
            return true;
        }
    }
    return false;
}

bool adieu_http_list_has(const adieu_http_request_t *req, const char *name, const char *token)
{
    for (const adieu_http_header_t *h = adieu_http_header_find(req, name); h != NULL;
         h = adieu_http_header_next(req, name, h)) {
        adieu_http_list_t it;
        adieu_http_list_init(&it, h->value, h->value_len);
        const char *e;
        size_t n;
        while (adieu_http_list_next(&it, &e, &n)) {
            if (adieu_http_ieq(e, n, token)) {
                return true;
            }
        }
    }
    return false;
}

/* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) (RFC 3986 §3.1). */
static bool is_scheme_char(unsigned char c, bool first)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
        return true;
    }
    return !first && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.');
}

/* The path and query of a URI: the path ends at '?' (RFC 3986 §3.3). */
static void path_of(const char *s, size_t n, const char **path, size_t *path_len)
{
    const char *q = memchr(s, '?', n);
    *path = s;
    *path_len = q != NULL ? (size_t)(q - s) : n;
}

bool adieu_http_target_path(const char *target, size_t len, const char **path, size_t *path_len)
{
    assert(target != NULL && path != NULL && path_len != NULL);
    /* origin-form = absolute-path [ "?" query ] (RFC 9112 §3.2.1). */
    if (len > 0 && target[0] == '/') {
        path_of(target, len, path, path_len);
        return true;
    }
    /* absolute-form (RFC 9112 §3.2.2: "A server MUST accept the absolute-form"), and RFC
     * 6455 §4.2.1 item 1 allows "an absolute HTTP/HTTPS URI containing the /resource name/". */
    size_t i = 0;
    while (i < len && is_scheme_char((unsigned char)target[i], i == 0)) {
        i++;
    }
    if (i == 0 || len - i < 3 || memcmp(target + i, "://", 3) != 0) {
        return false; /* asterisk-form or authority-form: no path */
    }
    i += 3;
    while (i < len && target[i] != '/' && target[i] != '?') {
        i++;
    }
    if (i == len || target[i] == '?') {
        /* RFC 9112 §3.2.1: an empty path is sent as "/". */
        *path = "/";
        *path_len = 1;
        return true;
    }
    path_of(target + i, len - i, path, path_len);
    return true;
}

/* ---------------------------------------------------------------------------------------
 * Responses
 * ------------------------------------------------------------------------------------- */

const char *adieu_http_status_text(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 426:
        return "Upgrade Required";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return NULL;
    }
}

void adieu__http_put(adieu__http_out_t *w, const char *s, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = true;
        return;
    }
    if (n > 0) {
        memcpy(w->out + w->len, s, n);
    }
    w->len += n;
}

void adieu__http_puts(adieu__http_out_t *w, const char *s)
{
    adieu__http_put(w, s, strlen(s));
}

int adieu__http_out_end(const adieu__http_out_t *w)
{
    if (w->overflow || w->len > INT_MAX) {
        return ADIEU_ETOOBIG;
    }
    return (int)w->len;
}

static void put_size(adieu__http_out_t *w, size_t v)
{
    char digits[24];
    size_t i = sizeof(digits);
    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v > 0);
    adieu__http_put(w, digits + i, sizeof(digits) - i);
}

int adieu_http_write_head(char *out, size_t cap, int status, const char *extra_headers,
                          const char *content_type, size_t content_length)
{
    assert(out != NULL || cap == 0);
    assert(content_type != NULL);
    const char *phrase = adieu_http_status_text(status);
    /* A 1xx response has no body and no Content-Length (RFC 9110 §8.6); 101 is written by
     * handshake.c, not here. */
    if (phrase == NULL || status < 200) {
        return ADIEU_EINVAL;
    }
    adieu__http_out_t w = {.out = out, .cap = cap};
    adieu__http_puts(&w, "HTTP/1.1 ");
    put_size(&w, (size_t)status);
    adieu__http_puts(&w, " ");
    adieu__http_puts(&w, phrase);
    adieu__http_puts(&w, "\r\nContent-Type: ");
    adieu__http_puts(&w, content_type);
    adieu__http_puts(&w, "\r\nContent-Length: ");
    put_size(&w, content_length);
    adieu__http_puts(&w, "\r\nConnection: close\r\n");
    if (extra_headers != NULL) {
        adieu__http_puts(&w, extra_headers);
    }
    adieu__http_puts(&w, "\r\n");
    return adieu__http_out_end(&w);
}

int adieu_http_write_response(char *out, size_t cap, int status, const char *extra_headers,
                              const char *content_type, const char *body, size_t body_len)
{
    assert(body != NULL || body_len == 0);
    int n = adieu_http_write_head(out, cap, status, extra_headers, content_type, body_len);
    if (n < 0) {
        return n;
    }
    adieu__http_out_t w = {.out = out, .cap = cap, .len = (size_t)n};
    adieu__http_put(&w, body, body_len);
    return adieu__http_out_end(&w);
}
