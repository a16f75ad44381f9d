/* SPDX-License-Identifier: MIT */
/*
 * adieu-client: replays a JSON file of messages against a server and checks that every one
 * of them is answered (SPEC section 3).
 *
 *   adieu-client frame [--host H] [--port P] [--prefix-bytes 2|4] [--timeout SECONDS] FILE.json
 *
 * The program has three parts that know little of each other:
 *  - the replay loads the file, gives each object a fresh UUID v4 "id", serialises the
 *    messages and matches replies to them by id; it does no I/O;
 *  - a transport turns one message into bytes on the wire and bytes read back into
 *    messages: the framed codec today, the WebSocket one (ws mode) later, beside it;
 *  - the session does the libuv work: resolve, connect, pipelined writes, reads, the reply
 *    timeout, signals, the proper close (FIN, then a bounded wait for the server's EOF) and
 *    the final report.
 */
#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>

#include "adieu/adieu.h"
#include "proto/frame.h"
#include "util/buf.h"

#define DEFAULT_HOST "127.0.0.1"
#define DEFAULT_PORT 10999u
#define DEFAULT_TIMEOUT_S 30.0

/* Frames gathered into one uv_write, and the bound on bytes handed to libuv and not yet
 * written: together they keep memory flat and system calls few whatever the file size. */
#define BATCH_BYTES (64u * 1024)
#define MAX_QUEUED (1024u * 1024)
#define READ_BYTES (64u * 1024)

/* After our FIN, how long to read on while waiting for the server's EOF. */
#define LINGER_DONE_MS 2000
#define LINGER_ABORT_MS 1000

#define PROGRESS_MIN_MESSAGES 1000
#define PROGRESS_PERIOD_MS 100
#define PROGRESS_WIDTH 30

/* Replies on a 4-byte prefix may declare up to 4 GiB; refuse to buffer more than this. */
#define MAX_REPLY_PREFIX4 (64u * 1024 * 1024)
/* Replies that match nothing are each reported on one line, up to this many. */
#define MAX_UNMATCHED_SHOWN 20
#define SAMPLE_BYTES 80

enum {
    RC_ANSWERED = 0,
    RC_NO_CONNECT = 1,
    RC_USAGE = 2,
    RC_UNANSWERED = 3,
};

static const char usage_text[] =
    "usage: adieu-client frame [--host H] [--port P] [--prefix-bytes 2|4] [--timeout SECONDS]\n"
    "                          FILE.json\n"
    "       adieu-client ws URL [FILE.json]   (not available in this version)\n"
    "\n"
    "Sends each object of FILE.json (a JSON array of objects) with a fresh \"id\" (UUID v4)\n"
    "over length-prefixed TCP, pipelined, and matches the replies by id.\n"
    "\n"
    "  --host H             server name or address (default " DEFAULT_HOST ")\n"
    "  --port P             server port (default 10999)\n"
    "  --prefix-bytes 2|4   length prefix size (default 2)\n"
    "  --timeout SECONDS    give up after this long without reply progress (default 30;\n"
    "                       0 waits forever)\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 all answered; 3 some unanswered (listed on stdout); 1 cannot connect;\n"
    "2 bad flags or file; 130 (SIGINT) or 143 (SIGTERM) interrupted.\n";

/* Writes one diagnostic line on stderr. */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("adieu-client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------------
 * Ids: UUID v4 (RFC 9562 §5.4) as 16 bytes, text only at the edges.
 * ------------------------------------------------------------------------------------- */

static void uuid_set_v4(uint8_t id[16])
{
    id[6] = (uint8_t)((id[6] & 0x0f) | 0x40); /* version 4 */
    id[8] = (uint8_t)((id[8] & 0x3f) | 0x80); /* variant 10 */
}

static void uuid_format(const uint8_t id[16], char out[37])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[id[i] >> 4];
        out[o++] = hex[id[i] & 0x0f];
    }
    out[o] = '\0';
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parses the canonical 8-4-4-4-12 form; anything else is not one of our ids. */
static bool uuid_parse(const char *s, size_t len, uint8_t out[16])
{
    if (len != 36)
        return false;
    size_t o = 0;
    for (size_t i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i++] != '-')
                return false;
            continue;
        }
        int hi = hex_value(s[i]), lo = hex_value(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[o++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------
 * The replay: messages to send and the ids to match, no I/O.
 * ------------------------------------------------------------------------------------- */

typedef enum {
    REPLY_MATCHED = 0,
    REPLY_NOT_JSON,   /* the payload does not parse as JSON */
    REPLY_NO_ID,      /* no "id" string, like the demo's {"error":"invalid json",...} */
    REPLY_UNKNOWN_ID, /* an id that was never sent */
    REPLY_DUPLICATE   /* a second reply for an id already answered */
} reply_kind_t;

typedef struct {
    size_t count;       /* messages in the file */
    size_t next;        /* first message not yet handed to the transport */
    size_t answered;    /* messages whose reply came */
    size_t unmatched;   /* replies that matched no message */
    size_t *off;        /* count + 1 offsets: message i is text[off[i], off[i + 1]) */
    adieu_buf_t text;   /* every serialised message, back to back */
    uint8_t (*ids)[16]; /* the id of message i */
    uint8_t *done;      /* 1 once message i is answered */
    uint32_t *slots;    /* open addressing, keyed by the id's random bytes: index + 1, 0 empty */
    size_t mask;        /* slot count - 1; the table is at most half full */
} replay_t;

static void replay_free(replay_t *r)
{
    free(r->off);
    adieu_buf_free(&r->text);
    free(r->ids);
    free(r->done);
    free(r->slots);
    memset(r, 0, sizeof *r);
}

static size_t id_slot(const replay_t *r, const uint8_t id[16])
{
    /* NOTE: the first bytes of a v4 id are random, so they serve as the hash as they are. */
    uint64_t h;
    memcpy(&h, id, sizeof h);
    return (size_t)h & r->mask;
}

/* The index of the message with this id, or SIZE_MAX. */
static size_t replay_find(const replay_t *r, const uint8_t id[16])
{
    for (size_t i = id_slot(r, id);; i = (i + 1) & r->mask) {
        uint32_t v = r->slots[i];
        if (v == 0)
            return SIZE_MAX;
        if (memcmp(r->ids[v - 1], id, 16) == 0)
            return v - 1;
    }
}

/* Adds message idx to the id table; false if its id is already there. */
static bool replay_insert(replay_t *r, size_t idx)
{
    for (size_t i = id_slot(r, r->ids[idx]);; i = (i + 1) & r->mask) {
        uint32_t v = r->slots[i];
        if (v == 0) {
            r->slots[i] = (uint32_t)(idx + 1);
            return true;
        }
        if (memcmp(r->ids[v - 1], r->ids[idx], 16) == 0)
            return false;
    }
}

static int fill_random(void *p, size_t len)
{
    /* uv_random() reads getrandom(2) or /dev/urandom; small chunks stay within what every
     * source returns in one go. */
    for (size_t o = 0; o < len; o += 4096) {
        size_t n = len - o < 4096 ? len - o : 4096;
        int err = uv_random(NULL, NULL, (uint8_t *)p + o, n, 0, NULL);
        if (err < 0)
            return err;
    }
    return 0;
}

/* Draws every id at once, then fixes the version bits and indexes them. */
static bool replay_make_ids(replay_t *r)
{
    int err = fill_random(r->ids, r->count * sizeof r->ids[0]);
    for (size_t i = 0; err == 0 && i < r->count; i++) {
        uuid_set_v4(r->ids[i]);
        /* A repeated id would make two messages indistinguishable: draw again. */
        while (err == 0 && !replay_insert(r, i)) {
            err = fill_random(r->ids[i], 16);
            uuid_set_v4(r->ids[i]);
        }
    }
    if (err < 0)
        say("cannot get random bytes: %s (%s)", uv_err_name(err), uv_strerror(err));
    return err == 0;
}

static bool replay_alloc(replay_t *r, size_t count)
{
    size_t slots = 16;
    while (slots < 2 * count)
        slots *= 2;
    r->count = count;
    r->mask = slots - 1;
    r->off = calloc(count + 1, sizeof *r->off);
    r->ids = calloc(count ? count : 1, sizeof *r->ids);
    r->done = calloc(count ? count : 1, 1);
    r->slots = calloc(slots, sizeof *r->slots);
    if (!r->off || !r->ids || !r->done || !r->slots) {
        say("out of memory for %zu messages", count);
        return false;
    }
    return true;
}

/* Appends the compact form of obj to r->text. jansson keeps object keys in insertion
 * order, so the keys go out as the file has them, the new "id" last or in its old place. */
static bool replay_serialise(replay_t *r, const json_t *obj)
{
    uint8_t *p = adieu_buf_reserve(&r->text, 512);
    size_t room = p ? r->text.cap - r->text.len : 0;
    size_t n = p ? json_dumpb(obj, (char *)p, room, JSON_COMPACT) : 0;
    if (n > room) {
        p = adieu_buf_reserve(&r->text, n);
        n = p ? json_dumpb(obj, (char *)p, n, JSON_COMPACT) : 0;
    }
    if (n == 0)
        return false;
    adieu_buf_commit(&r->text, n);
    return true;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* Loads path as a JSON array of objects; prints one line and returns NULL otherwise. */
static json_t *load_array(const char *path)
{
    /* The file is opened here rather than by json_load_file() so that an unreadable file
     * (a directory, an I/O error) is reported as such, not as bad JSON. */
    FILE *f = fopen(path, "rb");
    if (!f) {
        say("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    json_error_t err;
    json_t *root = json_loadf(f, JSON_ALLOW_NUL, &err);
    int read_errno = ferror(f) ? errno : 0;
    fclose(f);
    if (!root) {
        if (read_errno != 0)
            say("cannot read %s: %s", path, strerror(read_errno));
        else
            say("%s:%d:%d: not valid JSON: %s", path, err.line, err.column, err.text);
        return NULL;
    }
    if (!json_is_array(root)) {
        say("%s: expected a JSON array of objects, found %s", path, json_kind(root));
        json_decref(root);
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(root); i++) {
        const json_t *v = json_array_get(root, i);
        if (!json_is_object(v)) {
            say("%s: element %zu is %s, expected an object", path, i, json_kind(v));
            json_decref(root);
            return NULL;
        }
    }
    return root;
}

/* Gives each object its id and serialises it; messages longer than max_message (what the
 * transport can carry) make the file unusable. */
static bool replay_build(replay_t *r, json_t *root, size_t max_message, const char *path)
{
    for (size_t i = 0; i < r->count; i++) {
        json_t *obj = json_array_get(root, i);
        char id[37];
        uuid_format(r->ids[i], id);
        if (json_object_set_new(obj, "id", json_string(id)) < 0 || !replay_serialise(r, obj)) {
            say("%s: cannot serialise element %zu", path, i);
            return false;
        }
        r->off[i + 1] = r->text.len;
        size_t len = r->off[i + 1] - r->off[i];
        if (len > max_message) {
            say("%s: element %zu is %zu bytes serialised, over the %zu this transport carries",
                path, i, len, max_message);
            return false;
        }
    }
    return true;
}

/* Fills r from the file. Returns false after printing one line. */
static bool replay_load(replay_t *r, const char *path, size_t max_message)
{
    memset(r, 0, sizeof *r);
    adieu_buf_init(&r->text);
    json_t *root = load_array(path);
    if (!root)
        return false;
    bool ok = json_array_size(root) < UINT32_MAX && replay_alloc(r, json_array_size(root)) &&
              replay_make_ids(r) && replay_build(r, root, max_message, path);
    json_decref(root);
    return ok;
}

/* The next message to send, or false when all were handed out. */
static bool replay_next(replay_t *r, const uint8_t **data, size_t *len)
{
    if (r->next >= r->count)
        return false;
    *data = r->text.data + r->off[r->next];
    *len = r->off[r->next + 1] - r->off[r->next];
    r->next++;
    return true;
}

static bool replay_complete(const replay_t *r)
{
    return r->answered == r->count;
}

/* Matches one reply against the messages sent. */
static reply_kind_t replay_on_reply(replay_t *r, const uint8_t *data, size_t len)
{
    json_error_t err;
    json_t *v = json_loadb((const char *)data, len, JSON_ALLOW_NUL, &err);
    if (!v) {
        r->unmatched++;
        return REPLY_NOT_JSON;
    }
    const json_t *idv = json_is_object(v) ? json_object_get(v, "id") : NULL;
    uint8_t id[16];
    reply_kind_t kind = REPLY_NO_ID;
    if (json_is_string(idv)) {
        size_t idx = uuid_parse(json_string_value(idv), json_string_length(idv), id)
                         ? replay_find(r, id)
                         : SIZE_MAX;
        if (idx == SIZE_MAX) {
            kind = REPLY_UNKNOWN_ID;
        } else if (r->done[idx]) {
            kind = REPLY_DUPLICATE;
        } else {
            r->done[idx] = 1;
            r->answered++;
            kind = REPLY_MATCHED;
        }
    }
    json_decref(v);
    if (kind != REPLY_MATCHED)
        r->unmatched++;
    return kind;
}

/* Prints the count and the id of every unanswered message, in file order, on stdout. */
static void replay_print_unanswered(const replay_t *r)
{
    printf("unanswered: %zu\n", r->count - r->answered);
    for (size_t i = 0; i < r->count; i++) {
        if (!r->done[i]) {
            char id[37];
            uuid_format(r->ids[i], id);
            puts(id);
        }
    }
}

/* ---------------------------------------------------------------------------------------
 * Transports. The session calls a transport through this table only, so that the
 * WebSocket one can be added beside the framed one.
 * ------------------------------------------------------------------------------------- */

typedef struct {
    /* Appends the wire form of one message to out. Returns 0 or a negative code. */
    int (*encode)(void *self, adieu_buf_t *out, const uint8_t *msg, size_t len);
    /* Parses input as adieu_frame_parse() does: sets *consumed; returns 1 with one message
     * in *msg / *msg_len (valid until the next call), 0 when more bytes are needed, or a
     * negative code after which the stream is unusable. */
    int (*decode)(void *self, const uint8_t *in, size_t len, size_t *consumed, const uint8_t **msg,
                  size_t *msg_len);
    /* At end of stream: 0 between messages, ADIEU_ETRUNCATED inside one. */
    int (*at_eof)(const void *self);
    /* The largest reply accepted, for messages. */
    size_t (*max_reply)(const void *self);
    void (*dispose)(void *self);
} transport_ops_t;

typedef struct {
    unsigned prefix_bytes;
    adieu_frame_parser_t parser;
} frame_transport_t;

/* The largest payload a prefix of this size can declare. */
static size_t frame_max_message(unsigned prefix_bytes)
{
    return prefix_bytes == 2 ? 65535u : UINT32_MAX;
}

static void frame_init(frame_transport_t *t, unsigned prefix_bytes)
{
    t->prefix_bytes = prefix_bytes;
    size_t max_reply = prefix_bytes == 2 ? 65535u : MAX_REPLY_PREFIX4;
    adieu_frame_parser_init(&t->parser, prefix_bytes, max_reply);
}

static int frame_encode(void *self, adieu_buf_t *out, const uint8_t *msg, size_t len)
{
    frame_transport_t *t = self;
    uint8_t *p = adieu_buf_reserve(out, 4 + len);
    if (!p)
        return ADIEU_ENOMEM;
    int n = adieu_frame_prefix(p, t->prefix_bytes, len);
    if (n < 0)
        return n;
    memcpy(p + n, msg, len);
    adieu_buf_commit(out, (size_t)n + len);
    return 0;
}

static int frame_decode(void *self, const uint8_t *in, size_t len, size_t *consumed,
                        const uint8_t **msg, size_t *msg_len)
{
    frame_transport_t *t = self;
    adieu_frame_msg_t m;
    int r = adieu_frame_parse(&t->parser, in, len, consumed, &m);
    if (r == 1) {
        *msg = m.data;
        *msg_len = m.len;
    }
    return r;
}

static int frame_at_eof(const void *self)
{
    const frame_transport_t *t = self;
    return adieu_frame_parser_eof(&t->parser);
}

static size_t frame_max_reply(const void *self)
{
    const frame_transport_t *t = self;
    return t->parser.max_message;
}

static void frame_dispose(void *self)
{
    frame_transport_t *t = self;
    adieu_frame_parser_free(&t->parser);
}

static const transport_ops_t frame_ops = {
    .encode = frame_encode,
    .decode = frame_decode,
    .at_eof = frame_at_eof,
    .max_reply = frame_max_reply,
    .dispose = frame_dispose,
};

/* ---------------------------------------------------------------------------------------
 * The session: one connection driven by libuv.
 * ------------------------------------------------------------------------------------- */

typedef struct {
    const char *host;
    unsigned port;
    unsigned prefix_bytes;
    double timeout_s;
    uint64_t timeout_ms; /* 0: wait forever */
    const char *file;
} options_t;

typedef enum {
    PHASE_RESOLVING,  /* waiting for getaddrinfo */
    PHASE_CONNECTING, /* waiting for the TCP connect to one of the addresses */
    PHASE_RUNNING,    /* sending and reading replies; the timer is the reply timeout */
    PHASE_CLOSING,    /* FIN queued: reading on until the server's EOF or the linger timer */
    PHASE_DONE        /* the socket is closed */
} phase_t;

/* How the run ended; the first ending wins. */
typedef enum {
    END_NONE = 0,
    END_ANSWERED,   /* every message answered */
    END_NO_CONNECT, /* resolve or connect failed (err) */
    END_PEER_EOF,   /* the server closed between replies */
    END_PEER_RESET, /* the server reset the connection (err) */
    END_TRUNCATED,  /* the server closed inside a reply frame */
    END_IO_ERROR,   /* another read error (err) */
    END_BAD_REPLY,  /* the transport refused the reply stream (err, an adieu code) */
    END_TIMEOUT,    /* no reply progress for --timeout */
    END_INTERRUPTED /* SIGINT or SIGTERM (signum) */
} end_t;

typedef struct {
    uv_write_t req;
    adieu_buf_t out;
    size_t msgs; /* messages whose frames this write carries */
} write_t;

typedef struct {
    uv_loop_t loop;
    uv_getaddrinfo_t resolver;
    uv_connect_t connect_req;
    uv_shutdown_t shutdown_req;
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect and reply timeout; the linger bound while closing */
    uv_signal_t sigint, sigterm;
    struct addrinfo *addrs, *next_addr;

    const options_t *opt;
    replay_t *replay;
    const transport_ops_t *ops;
    void *transport;

    phase_t phase;
    end_t end;
    int err;       /* the libuv or adieu error behind end, 0 if none */
    int signum;    /* for END_INTERRUPTED */
    bool tcp_live; /* tcp initialised and its close callback not yet run */
    int write_err; /* a write failed: send nothing more; the read side reports why */
    size_t queued; /* bytes handed to uv_write and not yet completed */
    size_t sent;   /* messages whose write completed */
    size_t shown;  /* unmatched replies reported */

    bool bar;        /* draw a progress bar on stderr */
    int bar_width;   /* characters drawn, 0 when erased */
    uint64_t bar_ms; /* when it was last drawn */

    uint8_t rbuf[READ_BYTES];
} session_t;

static void on_tcp_closed(uv_handle_t *h);
static void on_timer(uv_timer_t *t);
static void session_pump(session_t *s);

static void close_handle(uv_handle_t *h, uv_close_cb cb)
{
    if (!uv_is_closing(h))
        uv_close(h, cb);
}

/* Records how the run ended; later endings are ignored. Returns true for the first one. */
static bool session_end(session_t *s, end_t end, int err)
{
    if (s->end != END_NONE)
        return false;
    s->end = end;
    s->err = err;
    return true;
}

/* Closes the socket now. Pending writes complete with UV_ECANCELED before on_tcp_closed. */
static void session_close_tcp(session_t *s)
{
    if (s->tcp_live)
        close_handle((uv_handle_t *)&s->tcp, on_tcp_closed);
}

/* Closes the handles left once the socket is gone; the loop then runs out. */
static void session_finish(session_t *s)
{
    s->phase = PHASE_DONE;
    if (s->addrs) {
        uv_freeaddrinfo(s->addrs);
        s->addrs = NULL;
    }
    close_handle((uv_handle_t *)&s->timer, NULL);
    close_handle((uv_handle_t *)&s->sigint, NULL);
    close_handle((uv_handle_t *)&s->sigterm, NULL);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    session_t *s = req->data;
    /* The FIN could not be sent (the server is gone or the socket is closing): stop
     * waiting for an EOF that will not come. */
    if (status < 0 && status != UV_ECANCELED)
        session_close_tcp(s);
}

/* The proper close: stop sending, FIN after what is queued, read on until the server's EOF,
 * for at most linger_ms. */
static void session_start_closing(session_t *s, uint64_t linger_ms)
{
    s->phase = PHASE_CLOSING;
    uv_timer_start(&s->timer, on_timer, linger_ms, 0);
    s->shutdown_req.data = s;
    if (s->write_err < 0 || uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, on_shutdown) < 0)
        session_close_tcp(s);
}

/* Stops a run that has not reached the connection yet, or ends one that has. */
static void session_abort(session_t *s)
{
    switch (s->phase) {
    case PHASE_RESOLVING:
        /* If the lookup already runs in the thread pool its callback comes later anyway;
         * on_resolved then sees the ending and finishes. */
        uv_cancel((uv_req_t *)&s->resolver);
        break;
    case PHASE_CONNECTING:
        session_close_tcp(s);
        break;
    case PHASE_RUNNING:
        session_start_closing(s, LINGER_ABORT_MS);
        break;
    case PHASE_CLOSING:
        session_close_tcp(s);
        break;
    case PHASE_DONE:
        break;
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    session_t *s = h->data;
    if (session_end(s, END_INTERRUPTED, 0)) {
        s->signum = signum;
        session_abort(s);
    } else if (s->phase == PHASE_CLOSING) {
        /* A second signal (or one after the last reply): no more waiting. */
        session_close_tcp(s);
    }
}

static void on_timer(uv_timer_t *t)
{
    session_t *s = t->data;
    switch (s->phase) {
    case PHASE_RESOLVING:
    case PHASE_CONNECTING:
        session_end(s, END_NO_CONNECT, UV_ETIMEDOUT);
        session_abort(s);
        break;
    case PHASE_RUNNING:
        session_end(s, END_TIMEOUT, 0);
        session_abort(s);
        break;
    case PHASE_CLOSING:
        /* The server never closed after our FIN: close on our side all the same. */
        session_close_tcp(s);
        break;
    case PHASE_DONE:
        break;
    }
}

/* ---- progress bar (stderr, terminals only) ---- */

static void progress_erase(session_t *s)
{
    if (s->bar_width > 0) {
        fprintf(stderr, "\r%*s\r", s->bar_width, "");
        s->bar_width = 0;
    }
}

static void progress_draw(session_t *s)
{
    /* The bar stops with the run: once the result is out, nothing is drawn under it. */
    uint64_t now = uv_now(&s->loop);
    if (!s->bar || s->end != END_NONE || (s->bar_width > 0 && now - s->bar_ms < PROGRESS_PERIOD_MS))
        return;
    s->bar_ms = now;
    const replay_t *r = s->replay;
    size_t filled = r->answered * PROGRESS_WIDTH / r->count;
    char line[PROGRESS_WIDTH + 1];
    memset(line, '#', filled);
    memset(line + filled, '.', PROGRESS_WIDTH - filled);
    line[PROGRESS_WIDTH] = '\0';
    int n = fprintf(stderr, "\r[%s] %zu/%zu responses %3zu%%", line, r->answered, r->count,
                    r->answered * 100 / r->count);
    /* The \r is not part of the width to erase. */
    if (n - 1 > s->bar_width)
        s->bar_width = n - 1;
}

/* ---- sending ---- */

static void on_write(uv_write_t *req, int status)
{
    write_t *w = (write_t *)req;
    session_t *s = req->data;
    s->queued -= adieu_buf_size(&w->out);
    if (status == 0)
        s->sent += w->msgs;
    else if (status != UV_ECANCELED && s->write_err == 0)
        s->write_err = status;
    adieu_buf_free(&w->out);
    free(w);
    session_pump(s);
}

/* Gathers up to BATCH_BYTES of messages in one buffer and writes it. Returns 0 or a
 * negative code (nothing is queued then). */
static int session_send_batch(session_t *s)
{
    write_t *w = malloc(sizeof *w);
    if (!w)
        return ADIEU_ENOMEM;
    adieu_buf_init(&w->out);
    w->msgs = 0;
    const uint8_t *msg;
    size_t len;
    int err = 0;
    while (err == 0 && adieu_buf_size(&w->out) < BATCH_BYTES &&
           replay_next(s->replay, &msg, &len)) {
        err = s->ops->encode(s->transport, &w->out, msg, len);
        w->msgs++;
    }
    /* NOTE: not uv_buf_init(), whose length is an unsigned int: one 4-byte-prefixed
     * message may be larger. */
    uv_buf_t b;
    b.base = (char *)adieu_buf_head(&w->out);
    b.len = adieu_buf_size(&w->out);
    w->req.data = s;
    if (err == 0)
        err = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
    if (err < 0) {
        adieu_buf_free(&w->out);
        free(w);
        return err;
    }
    s->queued += b.len;
    return 0;
}

/* Keeps up to MAX_QUEUED bytes in libuv while there is something to send. */
static void session_pump(session_t *s)
{
    while (s->phase == PHASE_RUNNING && s->end == END_NONE && s->write_err == 0 &&
           !uv_is_closing((uv_handle_t *)&s->tcp) && s->queued < MAX_QUEUED &&
           s->replay->next < s->replay->count) {
        int err = session_send_batch(s);
        if (err < 0) {
            /* The socket refused the write at once: the read side will say why. */
            s->write_err = err;
        }
    }
}

/* ---- receiving ---- */

static void print_counts(const session_t *s, size_t sent)
{
    printf("sent=%zu received=%zu", sent, s->replay->answered);
    if (s->replay->unmatched > 0)
        printf(" unmatched=%zu", s->replay->unmatched);
    putchar('\n');
}

/* Every message is answered: say so at once, then close properly (a server slow to close
 * must not delay the result). Every message was sent, or it could not have been answered. */
static void session_answered(session_t *s)
{
    progress_erase(s);
    print_counts(s, s->replay->count);
    puts("all responses received");
    fflush(stdout);
    session_start_closing(s, LINGER_DONE_MS);
}

/* Copies up to SAMPLE_BYTES of a reply with non-printable bytes as '.'. */
static void sample(const uint8_t *data, size_t len, char out[SAMPLE_BYTES + 4])
{
    size_t n = len < SAMPLE_BYTES ? len : SAMPLE_BYTES;
    for (size_t i = 0; i < n; i++)
        out[i] = data[i] >= 0x20 && data[i] < 0x7f ? (char)data[i] : '.';
    strcpy(out + n, len > n ? "..." : "");
}

static void session_on_message(session_t *s, const uint8_t *data, size_t len)
{
    reply_kind_t kind = replay_on_reply(s->replay, data, len);
    if (kind == REPLY_MATCHED) {
        if (replay_complete(s->replay) && session_end(s, END_ANSWERED, 0))
            session_answered(s);
        return;
    }
    if (s->shown++ >= MAX_UNMATCHED_SHOWN) {
        return;
    }
    static const char *const what[] = {
        [REPLY_NOT_JSON] = "reply is not JSON",
        [REPLY_NO_ID] = "reply without an id",
        [REPLY_UNKNOWN_ID] = "reply with an unknown id",
        [REPLY_DUPLICATE] = "second reply for an id",
    };
    char text[SAMPLE_BYTES + 4];
    sample(data, len, text);
    progress_erase(s);
    say("%s: %s", what[kind], text);
    if (s->shown == MAX_UNMATCHED_SHOWN)
        say("further replies that match nothing are counted, not shown");
}

static void session_on_bytes(session_t *s, const uint8_t *data, size_t len)
{
    if (s->phase == PHASE_RUNNING && s->opt->timeout_ms > 0)
        uv_timer_start(&s->timer, on_timer, s->opt->timeout_ms, 0);
    size_t off = 0;
    while (off < len && !uv_is_closing((uv_handle_t *)&s->tcp)) {
        size_t used = 0, msg_len = 0;
        const uint8_t *msg = NULL;
        int r = s->ops->decode(s->transport, data + off, len - off, &used, &msg, &msg_len);
        off += used;
        if (r == 0)
            break;
        if (r < 0) {
            session_end(s, END_BAD_REPLY, r);
            session_close_tcp(s);
            break;
        }
        session_on_message(s, msg, msg_len);
    }
    progress_draw(s);
}

/* The read side ended: EOF, reset or another error. */
static void session_on_read_end(session_t *s, int err)
{
    /* After our FIN this is the server's answer to it, whatever its form. */
    if (s->phase == PHASE_RUNNING) {
        /* NOTE: a reset seen first by a write is consumed there, and the reads that follow
         * only see EOF; ECONNRESET and EPIPE on a write both mean the peer reset. */
        if (err == UV_EOF && (s->write_err == UV_ECONNRESET || s->write_err == UV_EPIPE))
            session_end(s, END_PEER_RESET, s->write_err);
        else if (err == UV_EOF)
            session_end(s, s->ops->at_eof(s->transport) < 0 ? END_TRUNCATED : END_PEER_EOF, 0);
        else if (err == UV_ECONNRESET)
            session_end(s, END_PEER_RESET, err);
        else
            session_end(s, END_IO_ERROR, err);
    }
    session_close_tcp(s);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    session_t *s = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)s->rbuf, sizeof s->rbuf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    session_t *s = stream->data;
    (void)buf;
    if (nread > 0)
        session_on_bytes(s, s->rbuf, (size_t)nread);
    else if (nread < 0)
        session_on_read_end(s, (int)nread);
}

/* ---- connecting ---- */

static void session_connect_next(session_t *s);

static void on_connect(uv_connect_t *req, int status)
{
    session_t *s = req->data;
    if (status == UV_ECANCELED)
        return; /* closed under us by a signal or the timeout; on_tcp_closed goes on */
    if (status < 0) {
        s->err = status;
        session_close_tcp(s); /* on_tcp_closed tries the next address */
        return;
    }
    s->phase = PHASE_RUNNING;
    uv_freeaddrinfo(s->addrs);
    s->addrs = s->next_addr = NULL;
    /* Frames are batched here already; Nagle would only delay the tail of a batch. */
    uv_tcp_nodelay(&s->tcp, 1);
    if (s->opt->timeout_ms > 0)
        uv_timer_start(&s->timer, on_timer, s->opt->timeout_ms, 0);
    else
        uv_timer_stop(&s->timer);
    int err = uv_read_start((uv_stream_t *)&s->tcp, on_alloc, on_read);
    if (err < 0) {
        session_end(s, END_IO_ERROR, err);
        session_close_tcp(s);
        return;
    }
    progress_draw(s);
    if (replay_complete(s->replay) && session_end(s, END_ANSWERED, 0)) {
        session_answered(s); /* an empty file: nothing to send */
        return;
    }
    session_pump(s);
}

static void on_tcp_closed(uv_handle_t *h)
{
    session_t *s = h->data;
    s->tcp_live = false;
    if (s->phase == PHASE_CONNECTING && s->end == END_NONE) {
        if (s->next_addr) {
            session_connect_next(s);
            return;
        }
        session_end(s, END_NO_CONNECT, s->err);
    }
    session_finish(s);
}

static void session_connect_next(session_t *s)
{
    const struct addrinfo *ai = s->next_addr;
    s->next_addr = ai->ai_next;
    s->phase = PHASE_CONNECTING;
    int err = uv_tcp_init(&s->loop, &s->tcp);
    if (err < 0) {
        session_end(s, END_NO_CONNECT, err);
        session_finish(s);
        return;
    }
    s->tcp_live = true;
    s->tcp.data = s;
    s->connect_req.data = s;
    err = uv_tcp_connect(&s->connect_req, &s->tcp, ai->ai_addr, on_connect);
    if (err < 0) {
        s->err = err;
        session_close_tcp(s); /* on_tcp_closed tries the next address */
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    session_t *s = req->data;
    if (s->end != END_NONE || status < 0) {
        /* Interrupted or timed out while resolving, or the name does not resolve. */
        if (res)
            uv_freeaddrinfo(res);
        session_end(s, END_NO_CONNECT, status);
        session_finish(s);
        return;
    }
    s->addrs = s->next_addr = res;
    session_connect_next(s);
}

/* Makes the loop, the timer and the signal handles. Called before the file is loaded, so
 * that a signal during a long load is handled like any other: noted, then acted on at the
 * first loop turn. Returns 0, or a libuv error with nothing left to clean up. */
static int session_init(session_t *s)
{
    int err = uv_loop_init(&s->loop);
    if (err < 0)
        return err;
    /* NOTE: all three handles are initialised before anything can fail, so that
     * session_finish() may close them on every path. */
    uv_timer_init(&s->loop, &s->timer);
    uv_signal_init(&s->loop, &s->sigint);
    uv_signal_init(&s->loop, &s->sigterm);
    s->timer.data = s->sigint.data = s->sigterm.data = s->resolver.data = s;
    if ((err = uv_signal_start(&s->sigint, on_signal, SIGINT)) < 0 ||
        (err = uv_signal_start(&s->sigterm, on_signal, SIGTERM)) < 0) {
        session_finish(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        return err;
    }
    return 0;
}

/* Starts the name lookup; the rest follows from the loop. */
static void session_connect(session_t *s)
{
    /* NOTE: the loop's clock stood still while the file was loaded; without this the
     * timeout would count the load and could fire at once. */
    uv_update_time(&s->loop);
    if (s->opt->timeout_ms > 0)
        uv_timer_start(&s->timer, on_timer, s->opt->timeout_ms, 0);
    char port[16];
    snprintf(port, sizeof port, "%u", s->opt->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->phase = PHASE_RESOLVING;
    int err = uv_getaddrinfo(&s->loop, &s->resolver, on_resolved, s->opt->host, port, &hints);
    if (err < 0) {
        session_end(s, END_NO_CONNECT, err);
        session_finish(s);
    }
}

/* ---- the report ---- */

/* Says on stderr why the run stopped short.
 * NOTE: uv_err_name() and uv_strerror() allocate (and leak) a string for a code libuv does
 * not know, so they are only given libuv codes, never adieu ones. */
static void report_cause(const session_t *s)
{
    size_t n = s->replay->answered, m = s->replay->count;
    switch (s->end) {
    case END_PEER_EOF:
        say("server closed the connection (EOF) after %zu of %zu responses", n, m);
        break;
    case END_TRUNCATED:
        say("server closed the connection (EOF) inside a reply frame (truncated) after %zu of "
            "%zu responses",
            n, m);
        break;
    case END_PEER_RESET:
        say("server reset the connection (%s) after %zu of %zu responses", uv_err_name(s->err), n,
            m);
        break;
    case END_IO_ERROR:
        say("connection failed: %s (%s) after %zu of %zu responses", uv_err_name(s->err),
            uv_strerror(s->err), n, m);
        break;
    case END_BAD_REPLY:
        if (s->err == ADIEU_ETOOBIG)
            say("server sent a reply frame over %zu bytes after %zu of %zu responses",
                s->ops->max_reply(s->transport), n, m);
        else
            say("cannot read the replies (out of memory) after %zu of %zu responses", n, m);
        break;
    case END_TIMEOUT:
        say("no reply for %g s after %zu of %zu responses", s->opt->timeout_s, n, m);
        break;
    default:
        break;
    }
}

/* Prints the outcome and returns the exit status. */
static int session_report(const session_t *s)
{
    const options_t *o = s->opt;
    bool v6 = strchr(o->host, ':') != NULL;
    switch (s->end) {
    case END_ANSWERED:
        return RC_ANSWERED; /* reported by session_answered() */
    case END_NO_CONNECT:
        say("cannot connect to %s%s%s:%u: %s (%s)", v6 ? "[" : "", o->host, v6 ? "]" : "", o->port,
            uv_err_name(s->err), uv_strerror(s->err));
        return RC_NO_CONNECT;
    case END_INTERRUPTED:
        say("interrupted after %zu of %zu responses", s->replay->answered, s->replay->count);
        return 128 + s->signum;
    default:
        report_cause(s);
        print_counts(s, s->sent);
        replay_print_unanswered(s->replay);
        return RC_UNANSWERED;
    }
}

/* Runs the loop until every handle is closed, then closes it. */
static void session_close_loop(session_t *s)
{
    uv_run(&s->loop, UV_RUN_DEFAULT);
    int err = uv_loop_close(&s->loop);
    if (err != 0) {
        /* A programmer error: some handle was left open. */
        uv_print_all_handles(&s->loop, stderr);
        assert(err == 0);
    }
}

/* Loads the file and runs the whole exchange over the framed transport; returns the exit
 * status. */
static int run_frame(const options_t *opt)
{
    session_t *s = calloc(1, sizeof *s);
    if (!s) {
        say("out of memory");
        return RC_NO_CONNECT;
    }
    frame_transport_t frame;
    frame_init(&frame, opt->prefix_bytes);
    replay_t replay;
    memset(&replay, 0, sizeof replay); /* zeroed is empty: replay_free() is safe on it */
    s->opt = opt;
    s->replay = &replay;
    s->ops = &frame_ops;
    s->transport = &frame;
    int rc, err = session_init(s);
    if (err < 0) {
        say("cannot start the event loop: %s (%s)", uv_err_name(err), uv_strerror(err));
        rc = RC_NO_CONNECT;
    } else if (!replay_load(&replay, opt->file, frame_max_message(opt->prefix_bytes))) {
        session_finish(s);
        session_close_loop(s);
        rc = RC_USAGE;
    } else {
        s->bar = isatty(STDERR_FILENO) && replay.count > PROGRESS_MIN_MESSAGES;
        session_connect(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        progress_erase(s);
        rc = session_report(s);
        session_close_loop(s);
    }
    replay_free(&replay);
    s->ops->dispose(s->transport);
    free(s);
    return rc;
}

/* ---------------------------------------------------------------------------------------
 * Flags and main
 * ------------------------------------------------------------------------------------- */

static bool parse_uint(const char *text, unsigned long min, unsigned long max, unsigned long *out)
{
    if (text[0] < '0' || text[0] > '9')
        return false;
    char *end;
    unsigned long v = strtoul(text, &end, 10);
    if (*end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_seconds(const char *text, double *out)
{
    if ((text[0] < '0' || text[0] > '9') && text[0] != '.')
        return false;
    char *end;
    double v = strtod(text, &end);
    /* A week is far beyond any useful wait and keeps the milliseconds in range. */
    if (*end != '\0' || !(v >= 0 && v <= 604800))
        return false;
    *out = v;
    return true;
}

/* Applies one option with its value; false after a message if the value is bad. */
static bool apply_option(options_t *o, const char *name, const char *value)
{
    unsigned long v;
    if (strcmp(name, "--host") == 0) {
        if (value[0] == '\0') {
            say("--host: empty host");
            return false;
        }
        o->host = value;
    } else if (strcmp(name, "--port") == 0) {
        if (!parse_uint(value, 1, 65535, &v)) {
            say("--port: not a port number: '%s'", value);
            return false;
        }
        o->port = (unsigned)v;
    } else if (strcmp(name, "--prefix-bytes") == 0) {
        if (!parse_uint(value, 2, 4, &v) || v == 3) {
            say("--prefix-bytes: must be 2 or 4, not '%s'", value);
            return false;
        }
        o->prefix_bytes = (unsigned)v;
    } else {
        if (!parse_seconds(value, &o->timeout_s)) {
            say("--timeout: not a number of seconds: '%s'", value);
            return false;
        }
        o->timeout_ms = (uint64_t)(o->timeout_s * 1000 + 0.5);
        if (o->timeout_ms == 0 && o->timeout_s > 0)
            o->timeout_ms = 1;
    }
    return true;
}

/* The options that take a value, matched on the first len characters of name. */
static bool is_valued_option(const char *name, size_t len)
{
    static const char *const names[] = {"--host", "--port", "--prefix-bytes", "--timeout"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == len && strncmp(names[i], name, len) == 0)
            return true;
    return false;
}

/* Prints what is wrong and the usage on stderr; returns the bad-flags status. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("adieu-client: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fputs(usage_text, stderr);
    return RC_USAGE;
}

/* Parses the frame mode's arguments (after "frame"). Returns -1 to go on, or the exit
 * status: 0 after --help, 2 after a message and the usage. */
static int parse_frame_args(int argc, char **argv, options_t *o)
{
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == '\0') {
            if (o->file)
                return usage_error("more than one FILE: '%s'", a);
            o->file = a;
        } else if (strcmp(a, "--") == 0) {
            options_done = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return RC_ANSWERED;
        } else {
            const char *eq = strchr(a, '=');
            size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
            if (!is_valued_option(a, name_len))
                return usage_error("unknown option '%s'", a);
            if (!eq && i + 1 >= argc)
                return usage_error("%s needs a value", a);
            char name[32];
            snprintf(name, sizeof name, "%.*s", (int)name_len, a);
            if (!apply_option(o, name, eq ? eq + 1 : argv[++i])) {
                fputs(usage_text, stderr);
                return RC_USAGE;
            }
        }
    }
    if (!o->file)
        return usage_error("missing FILE.json");
    return -1;
}

static void ignore_sigpipe(void)
{
    /* A write to a reset socket must fail with EPIPE, not kill the process. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return RC_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage_text, stdout);
        return RC_ANSWERED;
    }
    if (strcmp(argv[1], "ws") == 0) {
        say("ws mode is not available in this version");
        return RC_USAGE;
    }
    if (strcmp(argv[1], "frame") != 0) {
        say("unknown mode '%s'", argv[1]);
        fputs(usage_text, stderr);
        return RC_USAGE;
    }
    options_t opt = {
        .host = DEFAULT_HOST,
        .port = DEFAULT_PORT,
        .prefix_bytes = 2,
        .timeout_s = DEFAULT_TIMEOUT_S,
        .timeout_ms = (uint64_t)(DEFAULT_TIMEOUT_S * 1000),
    };
    int rc = parse_frame_args(argc - 2, argv + 2, &opt);
    if (rc >= 0)
        return rc;

    ignore_sigpipe();
    rc = run_frame(&opt);
    fflush(stdout);
    return rc;
}
