/* SPDX-License-Identifier: MIT */
/*
 * adieu-client: replays a JSON file of messages against a server and checks that every one
 * of them is answered (SPEC section 3), over length-prefixed TCP or WebSocket.
 *
 *   adieu-client frame [--host H] [--port P] [--prefix-bytes 2|4] [--timeout SECONDS] FILE.json
 *   adieu-client ws [--timeout SECONDS] ws://HOST[:PORT][/path] [FILE.json]
 *
 * The program has four parts that know little of each other:
 *  - the replay loads the file, gives each object a fresh UUID v4 "id", serialises the
 *    messages and matches replies to them by id; it does no I/O;
 *  - the line input (ws mode without FILE) reads stdin, whatever it is (a terminal, a pipe,
 *    a socket or a file), and hands out its lines as messages; replies are printed;
 *  - a transport turns one message into bytes on the wire and bytes read back into
 *    messages: the framed codec, or the client side of RFC 6455 (opening handshake, masked
 *    frames, fragments, ping/pong, close handshake) on the project's sans-I/O codecs;
 *  - the session does the libuv work: resolve, connect, pipelined writes, reads, the reply
 *    timeout, signals, the proper close (FIN or close frame, then a bounded wait for the
 *    server's EOF) and the final report.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
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
#include "proto/handshake.h"
#include "proto/http.h"
#include "proto/utf8.h"
#include "proto/ws_frame.h"
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
/* The same bound for a WebSocket reply, on the running total of its fragments. */
#define MAX_REPLY_WS (64u * 1024 * 1024)
/* The server's answer to the upgrade request: status line, headers and blank line. */
#define WS_HEAD_MAX 8192
/* Random bytes drawn at once for masking keys (RFC 6455 §5.3): 256 frames per draw. */
#define WS_MASK_POOL 1024
/* Lines from stdin: reading pauses while this much is waiting to be sent, and a line may
 * not be longer than MAX_LINE (the server's default --max-message). */
#define INPUT_HIGH (256u * 1024)
#define MAX_LINE (16u * 1024 * 1024)
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
    "       adieu-client ws [--timeout SECONDS] ws://HOST[:PORT][/path] [FILE.json]\n"
    "\n"
    "Sends each object of FILE.json (a JSON array of objects) with a fresh \"id\" (UUID v4)\n"
    "over length-prefixed TCP (frame) or as WebSocket text messages (ws), pipelined, and\n"
    "matches the replies by id. In ws mode without FILE, each line of stdin is sent as a\n"
    "text message and each reply is printed on stdout; at the end of stdin the connection\n"
    "is closed (close code 1000).\n"
    "\n"
    "  --host H             server name or address (default " DEFAULT_HOST ")\n"
    "  --port P             server port (default 10999)\n"
    "  --prefix-bytes 2|4   length prefix size (default 2)\n"
    "  --timeout SECONDS    give up after this long without reply progress (default 30;\n"
    "                       0 waits forever); without FILE, for connecting only\n"
    "  -h, --help           show this help\n"
    "\n"
    "URL: ws://HOST[:PORT][/path], port 80 by default, IPv6 as [::1]; wss:// is not\n"
    "supported.\n"
    "\n"
    "Exit status: 0 all answered (without FILE: stdin sent and the connection closed\n"
    "normally); 3 some unanswered (listed on stdout) or the server ended the session;\n"
    "1 cannot connect (the upgrade refused included); 2 bad flags, URL or file;\n"
    "130 (SIGINT) or 143 (SIGTERM) interrupted.\n";

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

/* Copies up to SAMPLE_BYTES of a reply with non-printable bytes as '.'. */
static void sample(const uint8_t *data, size_t len, char out[SAMPLE_BYTES + 4])
{
    size_t n = len < SAMPLE_BYTES ? len : SAMPLE_BYTES;
    for (size_t i = 0; i < n; i++)
        out[i] = data[i] >= 0x20 && data[i] < 0x7f ? (char)data[i] : '.';
    strcpy(out + n, len > n ? "..." : "");
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
    static const char answer[] = "/answer";
    const size_t alen = sizeof(answer) - 1;
    json_error_t err;
    json_t *v = json_loadb((const char *)data, len, JSON_ALLOW_NUL, &err);
    /* SPEC: the demo app answers a WebSocket text T with "T/answer"; the JSON before the
     * suffix still carries the id, so a replay against it is matched too. */
    if (!v && len > alen && memcmp(data + len - alen, answer, alen) == 0)
        v = json_loadb((const char *)data, len - alen, JSON_ALLOW_NUL, &err);
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
 * Transports. The session calls a transport through this table only: the framed one and
 * the WebSocket one sit side by side.
 * ------------------------------------------------------------------------------------- */

/* What decode() returns, besides a negative code after which the stream is unusable. */
enum {
    DECODE_MORE = 0,    /* every byte was consumed and more are needed */
    DECODE_MESSAGE = 1, /* one message in *out */
    DECODE_OPEN,        /* the opening handshake completed: messages may be sent */
    DECODE_CLOSE        /* the server's close frame: out->code, its reason in data/len */
};

typedef struct {
    const uint8_t *data; /* valid until the next decode() */
    size_t len;
    unsigned code; /* DECODE_CLOSE: the close code, 1005 when the frame had none */
} decoded_t;

typedef struct {
    /* Appends the wire form of one message to out. Returns 0 or a negative code. */
    int (*encode)(void *self, adieu_buf_t *out, const uint8_t *msg, size_t len);
    /* Parses input: sets *consumed and returns one of DECODE_*, or a negative code. The
     * input may be modified in place. */
    int (*decode)(void *self, uint8_t *in, size_t len, size_t *consumed, decoded_t *out);
    /* At end of stream: 0 between messages, ADIEU_ETRUNCATED inside one. */
    int (*at_eof)(const void *self);
    /* The largest reply accepted, for messages. */
    size_t (*max_reply)(const void *self);
    void (*dispose)(void *self);
    /* The rest is optional (NULL for the framed transport, which is open at connect and
     * closes with a FIN). */
    /* Appends the opening handshake to out; decode() then says DECODE_OPEN. */
    int (*open)(void *self, adieu_buf_t *out);
    /* Moves the control frames owed to the server (pongs, a close) to out. */
    int (*take_control)(void *self, adieu_buf_t *out);
    /* Queues a close frame; ADIEU_EINVALID_STATE when one went out already or cannot. */
    int (*close)(void *self, unsigned code, const char *reason);
    /* After a decode error: what was wrong, one phrase. */
    const char *(*why)(const void *self);
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

static int frame_decode(void *self, uint8_t *in, size_t len, size_t *consumed, decoded_t *out)
{
    frame_transport_t *t = self;
    adieu_frame_msg_t m;
    int r = adieu_frame_parse(&t->parser, in, len, consumed, &m);
    if (r == 1) {
        out->data = m.data;
        out->len = m.len;
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

/* ---- WebSocket, client side (RFC 6455) ---- */

typedef enum {
    WS_HANDSHAKE = 1, /* waiting for the server's answer to the upgrade request */
    WS_OPEN,          /* frames both ways */
    WS_CLOSED,        /* the server's close frame came: later input is discarded */
    WS_FAILED         /* the answer or a frame broke a rule: input is discarded (§7.1.7) */
} ws_state_t;

typedef struct {
    ws_state_t state;
    const char *path;      /* the resource name for the request line: "/chat?x=1" */
    const char *authority; /* the Host header: the URL's host[:port] as written */
    char key[ADIEU_HANDSHAKE_KEY_LEN + 1];
    adieu_buf_t head;    /* the answer to the upgrade so far */
    size_t head_scanned; /* bytes of head already searched for its blank line */
    adieu_ws_frame_parser_t parser;
    adieu_ws_opcode_t frame_op;         /* the frame being parsed */
    adieu_ws_opcode_t msg_op;           /* TEXT or BINARY inside a message, else CONT */
    adieu_buf_t msg;                    /* the fragments of that message so far */
    adieu_utf8_t utf8;                  /* its validation, for TEXT */
    uint8_t ctrl[ADIEU_WS_MAX_CONTROL]; /* the control frame being parsed */
    size_t ctrl_len;
    adieu_buf_t control; /* control frames owed to the server */
    bool close_sent;     /* our close frame is queued: no frame may follow it (§5.5.1) */
    uint8_t pool[WS_MASK_POOL];
    size_t pool_used;
    char why[160];
} ws_transport_t;

static void ws_init(ws_transport_t *t, const char *path, const char *authority)
{
    memset(t, 0, sizeof *t);
    t->state = WS_HANDSHAKE;
    t->path = path;
    t->authority = authority;
    t->pool_used = WS_MASK_POOL; /* empty: drawn at first use */
    t->msg_op = ADIEU_WS_OP_CONT;
    adieu_ws_frame_parser_init(&t->parser, ADIEU_WS_CLIENT);
}

/* A fresh masking key. RFC 6455 §5.3: unpredictable, from a strong source of entropy, and
 * not derivable from the previous one; keys drawn together from getrandom(2) are all that. */
static int ws_mask_key(ws_transport_t *t, uint8_t key[4])
{
    if (t->pool_used + 4 > WS_MASK_POOL) {
        int err = fill_random(t->pool, sizeof t->pool);
        if (err < 0)
            return err;
        t->pool_used = 0;
    }
    memcpy(key, t->pool + t->pool_used, 4);
    t->pool_used += 4;
    return 0;
}

/* Appends one masked frame (a client's frames always are: RFC 6455 §5.1) to out. */
static int ws_put_frame(ws_transport_t *t, adieu_buf_t *out, adieu_ws_opcode_t op,
                        const uint8_t *payload, size_t len)
{
    uint8_t key[4];
    int err = ws_mask_key(t, key);
    if (err < 0)
        return err;
    uint8_t *p = adieu_buf_reserve(out, ADIEU_WS_MAX_HEADER + len);
    if (!p)
        return ADIEU_ENOMEM;
    int n = adieu_ws_frame_header_masked(p, op, true, len, key);
    if (n < 0)
        return n;
    if (len > 0)
        memcpy(p + n, payload, len);
    adieu_ws_mask(p + n, len, key, 0);
    adieu_buf_commit(out, (size_t)n + len);
    return 0;
}

/* Queues a close frame: code 0 for one without a status code. */
static int ws_queue_close(ws_transport_t *t, unsigned code, const char *reason)
{
    uint8_t payload[ADIEU_WS_MAX_CONTROL];
    size_t len = 0;
    if (code != 0) {
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        size_t r = reason ? strlen(reason) : 0;
        len = 2 + (r < sizeof payload - 2 ? r : sizeof payload - 2);
        memcpy(payload + 2, reason ? reason : "", len - 2);
    }
    t->close_sent = true;
    return ws_put_frame(t, &t->control, ADIEU_WS_OP_CLOSE, payload, len);
}

/* Fails the connection (RFC 6455 §7.1.7): a close frame with code, then input discarded.
 * why is a short static phrase; it is also the close reason. */
static int ws_fail(ws_transport_t *t, unsigned code, int err, const char *why)
{
    snprintf(t->why, sizeof t->why, "%s (closing with %u)", why, code);
    t->state = WS_FAILED;
    if (!t->close_sent)
        ws_queue_close(t, code, why); /* NOTE: best effort: the TCP close follows anyway */
    return err;
}

static size_t base64_encode(const uint8_t *in, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? abc[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* The upgrade request (RFC 6455 §4.1): a fresh random 16-byte key each time. */
static int ws_open(void *self, adieu_buf_t *out)
{
    ws_transport_t *t = self;
    uint8_t nonce[16];
    int err = fill_random(nonce, sizeof nonce);
    if (err < 0)
        return err;
    base64_encode(nonce, sizeof nonce, t->key);
    size_t cap = 256 + strlen(t->path) + strlen(t->authority);
    char *p = (char *)adieu_buf_reserve(out, cap);
    if (!p)
        return ADIEU_ENOMEM;
    int n = snprintf(p, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     t->path, t->authority, t->key);
    assert(n > 0 && (size_t)n < cap);
    adieu_buf_commit(out, (size_t)n);
    return 0;
}

/* Fails the handshake with a formatted reason; no close frame (the connection never
 * opened: RFC 6455 §4.1, "_Fail the WebSocket Connection_" before it is established). */
static int ws_refuse(ws_transport_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int ws_refuse(ws_transport_t *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof t->why, fmt, ap);
    va_end(ap);
    t->state = WS_FAILED;
    return ADIEU_EPROTO;
}

/* Parses `HTTP/1.x SP 3DIGIT SP reason-phrase` (RFC 9112 §4). */
static bool parse_status_line(const char *s, size_t n, int *status, const char **reason,
                              size_t *reason_len)
{
    if (n < 13 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' || s[8] != ' ' ||
        s[12] != ' ')
        return false;
    *status = 0;
    for (size_t i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *status = *status * 10 + (s[i] - '0');
    }
    for (size_t i = 13; i < n; i++)
        if ((unsigned char)s[i] < 0x20 ? s[i] != '\t' : s[i] == 0x7f)
            return false;
    *reason = s + 13;
    *reason_len = n - 13;
    return true;
}

/* Checks the header fields of a 101 (RFC 6455 §4.1, the client's checks 2-6). */
static int ws_check_headers(ws_transport_t *t, const adieu_http_request_t *req)
{
    if (!adieu_http_list_has(req, "Upgrade", "websocket"))
        return ws_refuse(t, "the 101 answer has no \"Upgrade: websocket\"");
    if (!adieu_http_list_has(req, "Connection", "upgrade"))
        return ws_refuse(t, "the 101 answer has no \"Connection: Upgrade\"");
    char want[ADIEU_HANDSHAKE_ACCEPT_LEN + 1];
    if (adieu_handshake_accept_key(t->key, strlen(t->key), want) < 0)
        return ws_refuse(t, "cannot compute Sec-WebSocket-Accept (libcrypto failed)");
    const adieu_http_header_t *h = adieu_http_header_find(req, "Sec-WebSocket-Accept");
    if (!h || adieu_http_header_count(req, "Sec-WebSocket-Accept") != 1 ||
        h->value_len != ADIEU_HANDSHAKE_ACCEPT_LEN ||
        memcmp(h->value, want, ADIEU_HANDSHAKE_ACCEPT_LEN) != 0)
        return ws_refuse(t, "the 101 answer has a missing or wrong Sec-WebSocket-Accept");
    /* §4.1 items 5 and 6: nothing was offered, so nothing may be selected. */
    if (adieu_http_header_find(req, "Sec-WebSocket-Extensions"))
        return ws_refuse(t, "the server selected an extension that was not offered");
    if (adieu_http_header_find(req, "Sec-WebSocket-Protocol"))
        return ws_refuse(t, "the server selected a subprotocol that was not offered");
    return 0;
}

/* Parses the header block of the answer with the project's strict request-head parser:
 * the status line is checked by the caller, and a request line put in its place. */
static int ws_parse_headers(ws_transport_t *t, const char *fields, size_t len)
{
    static const char line[] = "GET / HTTP/1.1\r\n";
    size_t n = sizeof line - 1 + len;
    char *buf = malloc(n);
    if (!buf)
        return ws_refuse(t, "out of memory");
    memcpy(buf, line, sizeof line - 1);
    memcpy(buf + sizeof line - 1, fields, len);
    adieu_http_parser_t p;
    adieu_http_parser_init(&p, n);
    adieu_http_header_t headers[ADIEU_HTTP_MAX_HEADERS];
    adieu_http_request_t req;
    size_t head_len;
    int r = adieu_http_parse(&p, buf, n, headers, ADIEU_HTTP_MAX_HEADERS, &req, &head_len);
    if (r == 1)
        r = ws_check_headers(t, &req);
    else
        r = ws_refuse(t, "malformed header in the 101 answer: %s", adieu_http_parser_detail(&p));
    free(buf);
    return r;
}

/* The whole head is in t->head: is it a valid 101 for our key? */
static int ws_check_answer(ws_transport_t *t)
{
    const char *h = (const char *)adieu_buf_head(&t->head);
    size_t n = adieu_buf_size(&t->head), eol = 0;
    while (h[eol] != '\r' || h[eol + 1] != '\n')
        eol++; /* the head ends in CR LF CR LF: found at the latest there */
    int status;
    const char *reason;
    size_t reason_len;
    char text[SAMPLE_BYTES + 4];
    if (!parse_status_line(h, eol, &status, &reason, &reason_len)) {
        sample((const uint8_t *)h, eol, text);
        return ws_refuse(t, "not an HTTP/1.1 answer: %s", text);
    }
    if (status != 101) {
        sample((const uint8_t *)reason, reason_len, text);
        return ws_refuse(t, "the server answered %d %s instead of 101 Switching Protocols", status,
                         text);
    }
    int r = ws_parse_headers(t, h + eol + 2, n - eol - 2);
    if (r < 0)
        return r;
    t->state = WS_OPEN;
    adieu_buf_free(&t->head);
    return DECODE_OPEN;
}

/* Gathers the answer to the upgrade up to its blank line; the bytes after it are frames. */
static int ws_read_head(ws_transport_t *t, const uint8_t *in, size_t len, size_t *consumed)
{
    size_t have = adieu_buf_size(&t->head);
    size_t take = len < WS_HEAD_MAX - have ? len : WS_HEAD_MAX - have;
    if (adieu_buf_append(&t->head, in, take) < 0)
        return ws_refuse(t, "out of memory");
    const uint8_t *h = adieu_buf_head(&t->head);
    size_t n = have + take;
    for (size_t i = t->head_scanned; i + 4 <= n; i++) {
        if (memcmp(h + i, "\r\n\r\n", 4) == 0) {
            *consumed = i + 4 - have;
            t->head.len = t->head.off + i + 4;
            return ws_check_answer(t);
        }
    }
    if (n == WS_HEAD_MAX)
        return ws_refuse(t, "the answer to the upgrade is over %u bytes", WS_HEAD_MAX);
    t->head_scanned = n >= 3 ? n - 3 : 0;
    *consumed = take;
    return DECODE_MORE;
}

/* The fragments gathered so far; never a null pointer, even before the first one. */
static const uint8_t *ws_msg_data(const ws_transport_t *t)
{
    return adieu_buf_size(&t->msg) > 0 ? adieu_buf_head(&t->msg) : (const uint8_t *)"";
}

/* A whole message: for TEXT, its UTF-8 must not end inside a character (§8.1). */
static int ws_deliver(ws_transport_t *t, const uint8_t *data, size_t len, decoded_t *out)
{
    if (t->msg_op == ADIEU_WS_OP_TEXT && !adieu_utf8_complete(&t->utf8))
        return ws_fail(t, 1007, ADIEU_EUTF8, "text message ends inside a UTF-8 sequence");
    t->msg_op = ADIEU_WS_OP_CONT;
    out->data = data;
    out->len = len;
    return DECODE_MESSAGE;
}

/* The server's close frame (§5.5.1): checked, echoed unless ours went first. */
static int ws_on_close(ws_transport_t *t, decoded_t *out)
{
    unsigned code = 1005; /* §7.1.5: no status code received */
    if (t->ctrl_len == 1)
        return ws_fail(t, 1002, ADIEU_EPROTO, "close frame with a 1-byte payload");
    if (t->ctrl_len >= 2) {
        code = (unsigned)t->ctrl[0] << 8 | t->ctrl[1];
        if (!adieu_ws_close_code_valid(code))
            return ws_fail(t, 1002, ADIEU_EPROTO, "close frame with an invalid code");
        if (!adieu_utf8_valid(t->ctrl + 2, t->ctrl_len - 2))
            return ws_fail(t, 1007, ADIEU_EUTF8, "close reason is not valid UTF-8");
    }
    t->state = WS_CLOSED;
    int err = t->close_sent ? 0 : ws_queue_close(t, code == 1005 ? 0 : code, NULL);
    out->code = code;
    out->data = t->ctrl + (t->ctrl_len >= 2 ? 2 : 0);
    out->len = t->ctrl_len >= 2 ? t->ctrl_len - 2 : 0;
    return err < 0 ? err : DECODE_CLOSE;
}

static int ws_on_control(ws_transport_t *t, decoded_t *out)
{
    switch (t->frame_op) {
    case ADIEU_WS_OP_PING:
        /* §5.5.2: a pong with the same payload; none after our close (§5.5.1). */
        return t->close_sent ? DECODE_MORE
                             : ws_put_frame(t, &t->control, ADIEU_WS_OP_PONG, t->ctrl, t->ctrl_len);
    case ADIEU_WS_OP_PONG:
        return DECODE_MORE; /* §5.5.3: an unsolicited pong needs no answer */
    default:
        return ws_on_close(t, out);
    }
}

static int ws_on_header(ws_transport_t *t, const adieu_ws_frame_event_t *ev, decoded_t *out)
{
    t->frame_op = ev->opcode;
    if (adieu_ws_opcode_is_control(ev->opcode)) {
        t->ctrl_len = 0;
        /* An empty payload has no PAYLOAD event: the frame is complete now. */
        return ev->frame_len == 0 ? ws_on_control(t, out) : DECODE_MORE;
    }
    /* §5.4: a continuation only inside a message, a new message only outside one. */
    if (ev->opcode == ADIEU_WS_OP_CONT && t->msg_op == ADIEU_WS_OP_CONT)
        return ws_fail(t, 1002, ADIEU_EPROTO, "continuation frame outside a message");
    if (ev->opcode != ADIEU_WS_OP_CONT && t->msg_op != ADIEU_WS_OP_CONT)
        return ws_fail(t, 1002, ADIEU_EPROTO, "new message inside a fragmented one");
    if (ev->opcode != ADIEU_WS_OP_CONT) {
        t->msg_op = ev->opcode;
        adieu_utf8_init(&t->utf8);
    }
    /* The limit holds for the running total, checked on the declared length. */
    if (ev->frame_len > MAX_REPLY_WS - adieu_buf_size(&t->msg))
        return ws_fail(t, 1009, ADIEU_ETOOBIG, "message too big");
    if (ev->frame_len == 0 && ev->fin)
        return ws_deliver(t, ws_msg_data(t), adieu_buf_size(&t->msg), out);
    return DECODE_MORE;
}

static int ws_on_payload(ws_transport_t *t, const adieu_ws_frame_event_t *ev, decoded_t *out)
{
    if (adieu_ws_opcode_is_control(ev->opcode)) {
        /* The parser holds control payloads to 125 bytes (§5.5). */
        memcpy(t->ctrl + ev->offset, ev->data, ev->len);
        t->ctrl_len = (size_t)ev->offset + ev->len;
        return ev->last ? ws_on_control(t, out) : DECODE_MORE;
    }
    /* §8.1: fail as soon as the text cannot be UTF-8, across fragments too. */
    if (t->msg_op == ADIEU_WS_OP_TEXT && adieu_utf8_feed(&t->utf8, ev->data, ev->len) < 0)
        return ws_fail(t, 1007, ADIEU_EUTF8, "invalid UTF-8 in a text message");
    bool end = ev->last && ev->fin;
    if (end && ev->offset == 0 && adieu_buf_size(&t->msg) == 0)
        return ws_deliver(t, ev->data, ev->len, out); /* a whole message in one read */
    if (adieu_buf_append(&t->msg, ev->data, ev->len) < 0)
        return ws_fail(t, 1011, ADIEU_ENOMEM, "out of memory");
    if (end)
        return ws_deliver(t, ws_msg_data(t), adieu_buf_size(&t->msg), out);
    return DECODE_MORE;
}

static int ws_read_frames(ws_transport_t *t, uint8_t *in, size_t len, size_t *consumed,
                          decoded_t *out)
{
    size_t off = 0;
    int r = DECODE_MORE;
    while (off < len && r == DECODE_MORE) {
        size_t used = 0;
        adieu_ws_frame_event_t ev;
        int p = adieu_ws_frame_parse(&t->parser, in + off, len - off, &used, &ev);
        off += used;
        if (p == 0)
            break;
        if (p < 0)
            r = ws_fail(t, 1002, ADIEU_EPROTO, t->parser.why);
        else if (ev.type == ADIEU_WS_FRAME_HEADER)
            r = ws_on_header(t, &ev, out);
        else
            r = ws_on_payload(t, &ev, out);
    }
    *consumed = off;
    return r;
}

static int ws_decode(void *self, uint8_t *in, size_t len, size_t *consumed, decoded_t *out)
{
    ws_transport_t *t = self;
    /* A message handed out of t->msg was valid until this call. */
    if (t->msg_op == ADIEU_WS_OP_CONT)
        adieu_buf_reset(&t->msg);
    *consumed = 0;
    switch (t->state) {
    case WS_HANDSHAKE:
        return ws_read_head(t, in, len, consumed);
    case WS_OPEN:
        return ws_read_frames(t, in, len, consumed, out);
    default:
        *consumed = len; /* after the close or a failure: discarded (§5.5.1, §7.1.7) */
        return DECODE_MORE;
    }
}

static int ws_encode(void *self, adieu_buf_t *out, const uint8_t *msg, size_t len)
{
    return ws_put_frame(self, out, ADIEU_WS_OP_TEXT, msg, len);
}

static int ws_at_eof(const void *self)
{
    const ws_transport_t *t = self;
    bool inside = t->state == WS_OPEN &&
                  (t->msg_op != ADIEU_WS_OP_CONT || !adieu_ws_frame_parser_idle(&t->parser));
    return inside ? ADIEU_ETRUNCATED : 0;
}

static size_t ws_max_reply(const void *self)
{
    (void)self;
    return MAX_REPLY_WS;
}

static void ws_dispose(void *self)
{
    ws_transport_t *t = self;
    adieu_buf_free(&t->head);
    adieu_buf_free(&t->msg);
    adieu_buf_free(&t->control);
}

static int ws_take_control(void *self, adieu_buf_t *out)
{
    ws_transport_t *t = self;
    size_t n = adieu_buf_size(&t->control);
    if (n == 0)
        return 0;
    int err = adieu_buf_append(out, adieu_buf_head(&t->control), n);
    adieu_buf_reset(&t->control);
    return err;
}

static int ws_close(void *self, unsigned code, const char *reason)
{
    ws_transport_t *t = self;
    if (t->close_sent || t->state != WS_OPEN)
        return ADIEU_EINVALID_STATE;
    return ws_queue_close(t, code, reason);
}

static const char *ws_why(const void *self)
{
    const ws_transport_t *t = self;
    return t->why;
}

static const transport_ops_t ws_ops = {
    .encode = ws_encode,
    .decode = ws_decode,
    .at_eof = ws_at_eof,
    .max_reply = ws_max_reply,
    .dispose = ws_dispose,
    .open = ws_open,
    .take_control = ws_take_control,
    .close = ws_close,
    .why = ws_why,
};

/* ---------------------------------------------------------------------------------------
 * The session: one connection driven by libuv.
 * ------------------------------------------------------------------------------------- */

/* A ws:// URL taken apart (RFC 6455 §3). */
typedef struct {
    char host[256];      /* for the lookup: an IPv6 address without its brackets */
    char authority[300]; /* for the Host header: host[:port] as written */
    char path[2048];     /* the resource name: path and query, "/" at least */
} ws_url_t;

typedef struct {
    const char *host;
    unsigned port;
    unsigned prefix_bytes;
    double timeout_s;
    uint64_t timeout_ms; /* 0: wait forever */
    const char *file;    /* NULL in ws mode without FILE: lines from stdin */
    const char *url;     /* ws mode: the URL as given */
    ws_url_t ws;
} options_t;

typedef enum {
    PHASE_RESOLVING,  /* waiting for getaddrinfo */
    PHASE_CONNECTING, /* waiting for the TCP connect to one of the addresses */
    PHASE_HANDSHAKE,  /* the transport's opening handshake: waiting for its answer */
    PHASE_RUNNING,    /* sending and reading replies; the timer is the reply timeout */
    PHASE_CLOSING,    /* FIN or close frame queued: reading on until the server's EOF or the
                         linger timer */
    PHASE_DONE        /* the socket is closed */
} phase_t;

/* How the run ended; the first ending wins. */
typedef enum {
    END_NONE = 0,
    END_ANSWERED,    /* every message answered */
    END_NO_CONNECT,  /* resolve or connect failed (err) */
    END_HANDSHAKE,   /* the opening handshake failed (why) */
    END_PEER_EOF,    /* the server closed between replies */
    END_PEER_RESET,  /* the server reset the connection (err) */
    END_PEER_CLOSE,  /* the server's close frame (close_code, close_reason) */
    END_TRUNCATED,   /* the server closed inside a reply frame */
    END_IO_ERROR,    /* another read error (err) */
    END_BAD_REPLY,   /* the transport refused the reply stream (err, an adieu code) */
    END_TIMEOUT,     /* no reply progress for --timeout */
    END_INTERRUPTED, /* SIGINT or SIGTERM (signum) */
    END_INPUT_DONE,  /* lines mode: stdin ended and every line was sent */
    END_BAD_INPUT    /* lines mode: stdin could not be read (err), or a line was too long */
} end_t;

typedef struct {
    uv_write_t req;
    adieu_buf_t out;
    size_t msgs; /* messages whose frames this write carries */
} write_t;

/* Lines mode: stdin, read as a stream (terminal, pipe, socket) or as a file. */
typedef struct {
    uv_handle_type type; /* UV_TTY, UV_NAMED_PIPE, UV_TCP or UV_FILE */
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_tty_t tty;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } h;
    uv_fs_t fs;
    bool live;        /* h initialised and not yet closed */
    bool reading;     /* stream: uv_read_start on; file: a read in flight */
    bool eof;         /* stdin ended */
    int fd_flags;     /* fd 0's status flags at start (libuv makes it non-blocking) */
    adieu_buf_t text; /* bytes read and not yet sent */
    size_t scanned;   /* leading bytes of text known to hold no newline */
    size_t line_no;   /* lines taken from text */
    size_t lines;     /* lines handed to the transport */
    size_t replies;   /* replies printed */
    uint8_t chunk[READ_BYTES];
} input_t;

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
    replay_t *replay; /* the file's messages, or NULL in lines mode */
    input_t *input;   /* lines mode: stdin, or NULL */
    const transport_ops_t *ops;
    void *transport;

    phase_t phase;
    end_t end;
    int err;             /* the libuv or adieu error behind end, 0 if none */
    int signum;          /* for END_INTERRUPTED */
    bool tcp_live;       /* tcp initialised and its close callback not yet run */
    int write_err;       /* a write failed: send nothing more; the read side reports why */
    size_t queued;       /* bytes handed to uv_write and not yet completed */
    size_t sent;         /* messages whose write completed */
    size_t shown;        /* unmatched replies reported */
    char why[200];       /* END_HANDSHAKE, END_BAD_INPUT: what went wrong */
    unsigned close_code; /* END_PEER_CLOSE */
    char close_reason[SAMPLE_BYTES + 4]; /* END_PEER_CLOSE: sanitised */

    bool bar;        /* draw a progress bar on stderr */
    int bar_width;   /* characters drawn, 0 when erased */
    uint64_t bar_ms; /* when it was last drawn */

    uint8_t rbuf[READ_BYTES];
} session_t;

static void on_tcp_closed(uv_handle_t *h);
static void on_timer(uv_timer_t *t);
static void session_pump(session_t *s);
static void session_abort(session_t *s);

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

static void input_close(session_t *s)
{
    /* NOTE: a file read in flight cannot be stopped; its callback comes later and only
     * cleans up (the phase is DONE). */
    if (s->input && s->input->live)
        close_handle(&s->input->h.handle, NULL);
}

/* Closes the handles left once the socket is gone; the loop then runs out. */
static void session_finish(session_t *s)
{
    s->phase = PHASE_DONE;
    if (s->addrs) {
        uv_freeaddrinfo(s->addrs);
        s->addrs = NULL;
    }
    input_close(s);
    close_handle((uv_handle_t *)&s->timer, NULL);
    close_handle((uv_handle_t *)&s->sigint, NULL);
    close_handle((uv_handle_t *)&s->sigterm, NULL);
}

/* ---- stdin, lines mode ---- */

/* Sets *len to the length of the first complete line of text (without its newline), or
 * returns false. At the end of stdin, what is left is the last line. */
static bool input_has_line(input_t *in, size_t *len)
{
    const uint8_t *p = adieu_buf_head(&in->text);
    size_t n = adieu_buf_size(&in->text);
    const uint8_t *nl = n > in->scanned ? memchr(p + in->scanned, '\n', n - in->scanned) : NULL;
    if (nl) {
        *len = (size_t)(nl - p);
        return true;
    }
    in->scanned = n;
    *len = n;
    return in->eof && n > 0;
}

/* The next line to send, or false. The line stays valid until text is next appended to.
 * Lines that are not UTF-8 cannot be text messages: they are reported and skipped. */
static bool input_next_line(input_t *in, const uint8_t **data, size_t *len)
{
    size_t n;
    while (input_has_line(in, &n)) {
        const uint8_t *p = adieu_buf_head(&in->text);
        size_t used = n < adieu_buf_size(&in->text) ? n + 1 : n;
        in->line_no++;
        in->scanned = 0;
        adieu_buf_consume(&in->text, used); /* NOTE: the bytes stay where they are */
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (!adieu_utf8_valid(p, n)) {
            say("stdin line %zu is not valid UTF-8: not sent", in->line_no);
            continue;
        }
        *data = p;
        *len = n;
        in->lines++;
        return true;
    }
    return false;
}

static void input_start_reading(session_t *s);

/* After a read from stdin: n bytes in in->chunk, or the end of stdin, or an error. */
static void input_on_data(session_t *s, ssize_t n, bool at_end)
{
    input_t *in = s->input;
    if (s->phase == PHASE_DONE)
        return;
    int err = 0;
    size_t len;
    if (at_end)
        in->eof = true;
    else if (n < 0)
        err = (int)n;
    else if (adieu_buf_append(&in->text, in->chunk, (size_t)n) < 0)
        err = UV_ENOMEM;
    if (err < 0) {
        snprintf(s->why, sizeof s->why, "cannot read stdin: %s (%s)", uv_err_name(err),
                 uv_strerror(err));
    } else if (!input_has_line(in, &len) && len >= MAX_LINE) {
        snprintf(s->why, sizeof s->why, "stdin line %zu is over %u bytes", in->line_no + 1,
                 MAX_LINE);
        err = ADIEU_ETOOBIG;
    }
    if (err < 0 && session_end(s, END_BAD_INPUT, err))
        session_abort(s);
    session_pump(s);
}

static void on_input_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    session_t *s = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)s->input->chunk, sizeof s->input->chunk);
}

static void on_input_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    if (nread != 0)
        input_on_data(stream->data, nread, nread == UV_EOF);
}

static void on_input_fs(uv_fs_t *req)
{
    session_t *s = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    s->input->reading = false;
    input_on_data(s, n, n == 0);
}

/* Reads while the session may still send and not too much is waiting; a line longer than
 * that is read on until its end (or MAX_LINE). */
static void input_start_reading(session_t *s)
{
    input_t *in = s->input;
    if (s->phase == PHASE_DONE)
        return; /* the handle is closed or closing */
    size_t len;
    bool want = s->end == END_NONE && !in->eof &&
                (adieu_buf_size(&in->text) < INPUT_HIGH || !input_has_line(in, &len));
    int err = 0;
    if (in->type == UV_FILE) {
        if (want && !in->reading) {
            /* Offset -1: read(2) at the current position, as a shell redirection expects. */
            uv_buf_t b = uv_buf_init((char *)in->chunk, sizeof in->chunk);
            in->fs.data = s;
            err = uv_fs_read(&s->loop, &in->fs, 0, &b, 1, -1, on_input_fs);
            in->reading = err == 0;
        }
    } else if (in->live && want != in->reading) {
        err = want ? uv_read_start(&in->h.stream, on_input_alloc, on_input_read)
                   : uv_read_stop(&in->h.stream);
        in->reading = want && err == 0;
    }
    if (err < 0) {
        snprintf(s->why, sizeof s->why, "cannot read stdin: %s (%s)", uv_err_name(err),
                 uv_strerror(err));
        if (session_end(s, END_BAD_INPUT, err))
            session_abort(s);
    }
}

/* Opens stdin as what it is. Returns 0, or a libuv error after which in->live says whether
 * the handle must still be closed. */
static int input_open(session_t *s, input_t *in)
{
    in->fd_flags = fcntl(STDIN_FILENO, F_GETFL);
    in->type = uv_guess_handle(STDIN_FILENO);
    int err;
    switch (in->type) {
    case UV_FILE: /* a regular file or a character device such as /dev/null */
        return 0;
    case UV_TTY:
        err = uv_tty_init(&s->loop, &in->h.tty, STDIN_FILENO, 1);
        break;
    case UV_NAMED_PIPE: /* a pipe or a unix socket */
        err = uv_pipe_init(&s->loop, &in->h.pipe, 0);
        break;
    case UV_TCP:
        err = uv_tcp_init(&s->loop, &in->h.tcp);
        break;
    default:
        return UV_EBADF; /* closed, a datagram socket or something else */
    }
    if (err < 0)
        return err;
    in->live = true;
    in->h.handle.data = s;
    if (in->type == UV_NAMED_PIPE)
        return uv_pipe_open(&in->h.pipe, STDIN_FILENO);
    if (in->type == UV_TCP)
        return uv_tcp_open(&in->h.tcp, STDIN_FILENO);
    return 0;
}

/* Puts fd 0's status flags back as they were: libuv made a pipe non-blocking, and the
 * process that gave it to us may share it. */
static void input_restore(const input_t *in)
{
    if (in->fd_flags >= 0 && in->type != UV_TTY)
        fcntl(STDIN_FILENO, F_SETFL, in->fd_flags);
}

/* Lines mode, after each pump: at the end of stdin, close (code 1000, RFC 6455 §7.4.1);
 * otherwise read on if there is room. */
static void session_start_closing(session_t *s, uint64_t linger_ms, unsigned code,
                                  const char *reason);

static void input_after_pump(session_t *s)
{
    input_t *in = s->input;
    size_t len;
    if (s->phase == PHASE_RUNNING && in->eof && !input_has_line(in, &len) &&
        session_end(s, END_INPUT_DONE, 0)) {
        session_start_closing(s, LINGER_DONE_MS, 1000, NULL);
        return;
    }
    input_start_reading(s);
}

/* The next message to send, from the file or from stdin. */
static bool session_next_message(session_t *s, const uint8_t **data, size_t *len)
{
    return s->replay ? replay_next(s->replay, data, len) : input_next_line(s->input, data, len);
}

static bool session_has_more(session_t *s)
{
    size_t len;
    return s->replay ? s->replay->next < s->replay->count : input_has_line(s->input, &len);
}

/* ---- closing ---- */

static void on_shutdown(uv_shutdown_t *req, int status)
{
    session_t *s = req->data;
    /* The FIN could not be sent (the server is gone or the socket is closing): stop
     * waiting for an EOF that will not come. */
    if (status < 0 && status != UV_ECANCELED)
        session_close_tcp(s);
}

static int session_write_control(session_t *s);

/* The proper close: stop sending; then a FIN after what is queued, or with WebSocket a close
 * frame (code 0: none of ours, the server's is being echoed); read on until the server's
 * EOF, for at most linger_ms. */
static void session_start_closing(session_t *s, uint64_t linger_ms, unsigned code,
                                  const char *reason)
{
    s->phase = PHASE_CLOSING;
    uv_timer_start(&s->timer, on_timer, linger_ms, 0);
    if (s->write_err < 0) {
        session_close_tcp(s);
        return;
    }
    if (s->ops->close) {
        /* RFC 6455 §7.1.1: the server closes TCP first; the client waits for it. Our close
         * may already be out (after a failure, or as the echo): then only wait. */
        if (code != 0)
            (void)s->ops->close(s->transport, code, reason);
        if (session_write_control(s) < 0)
            session_close_tcp(s);
        return;
    }
    s->shutdown_req.data = s;
    if (uv_shutdown(&s->shutdown_req, (uv_stream_t *)&s->tcp, on_shutdown) < 0)
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
    case PHASE_HANDSHAKE: /* not open yet: nothing to close but the socket */
        session_close_tcp(s);
        break;
    case PHASE_RUNNING:
        session_start_closing(s, LINGER_ABORT_MS, 1001, "going away");
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
    case PHASE_HANDSHAKE:
        snprintf(s->why, sizeof s->why, "no answer to the upgrade request within %g s",
                 s->opt->timeout_s);
        session_end(s, END_HANDSHAKE, UV_ETIMEDOUT);
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

static write_t *write_new(void)
{
    write_t *w = malloc(sizeof *w);
    if (w) {
        adieu_buf_init(&w->out);
        w->msgs = 0;
    }
    return w;
}

/* Hands w to libuv. Returns 0, or a negative code: nothing is queued then and w is freed. */
static int session_write(session_t *s, write_t *w)
{
    /* NOTE: not uv_buf_init(), whose length is an unsigned int: one 4-byte-prefixed
     * message may be larger. */
    uv_buf_t b;
    b.base = (char *)adieu_buf_head(&w->out);
    b.len = adieu_buf_size(&w->out);
    w->req.data = s;
    int err = uv_write(&w->req, (uv_stream_t *)&s->tcp, &b, 1, on_write);
    if (err < 0) {
        adieu_buf_free(&w->out);
        free(w);
        return err;
    }
    s->queued += b.len;
    return 0;
}

/* Writes what the transport owes the server besides messages (the upgrade request, pongs, a
 * close frame), after what is queued. open selects the upgrade request. */
static int session_write_owed(session_t *s, bool open)
{
    int (*take)(void *, adieu_buf_t *) = open ? s->ops->open : s->ops->take_control;
    if (!take || !s->tcp_live || uv_is_closing((uv_handle_t *)&s->tcp) || s->write_err < 0)
        return 0;
    write_t *w = write_new();
    if (!w)
        return ADIEU_ENOMEM;
    int err = take(s->transport, &w->out);
    if (err == 0 && adieu_buf_size(&w->out) > 0)
        return session_write(s, w);
    adieu_buf_free(&w->out);
    free(w);
    return err;
}

static int session_write_control(session_t *s)
{
    return session_write_owed(s, false);
}

/* Gathers up to BATCH_BYTES of messages in one buffer and writes it. Returns 0 or a
 * negative code (nothing is queued then). */
static int session_send_batch(session_t *s)
{
    write_t *w = write_new();
    if (!w)
        return ADIEU_ENOMEM;
    const uint8_t *msg;
    size_t len;
    int err = 0;
    while (err == 0 && adieu_buf_size(&w->out) < BATCH_BYTES &&
           session_next_message(s, &msg, &len)) {
        err = s->ops->encode(s->transport, &w->out, msg, len);
        w->msgs++;
    }
    /* Lines mode may have found only lines it cannot send: nothing to write then. */
    if (err == 0 && adieu_buf_size(&w->out) > 0)
        return session_write(s, w);
    adieu_buf_free(&w->out);
    free(w);
    return err;
}

/* Keeps up to MAX_QUEUED bytes in libuv while there is something to send. */
static void session_pump(session_t *s)
{
    while (s->phase == PHASE_RUNNING && s->end == END_NONE && s->write_err == 0 &&
           !uv_is_closing((uv_handle_t *)&s->tcp) && s->queued < MAX_QUEUED &&
           session_has_more(s)) {
        int err = session_send_batch(s);
        if (err < 0) {
            /* The socket refused the write at once: the read side will say why. */
            s->write_err = err;
        }
    }
    if (s->input)
        input_after_pump(s);
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
    session_start_closing(s, LINGER_DONE_MS, 1000, NULL);
}

static void session_on_message(session_t *s, const uint8_t *data, size_t len)
{
    if (!s->replay) {
        /* Lines mode: each reply on a line of its own, as it came. */
        s->input->replies++;
        fwrite(data, 1, len, stdout);
        putchar('\n');
        return;
    }
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

/* The server's close frame: the transport queued its echo; wait for the TCP close. */
static void session_on_close_frame(session_t *s, const decoded_t *m)
{
    s->close_code = m->code;
    sample(m->data, m->len, s->close_reason);
    if (s->phase == PHASE_RUNNING) {
        session_end(s, END_PEER_CLOSE, 0);
        session_start_closing(s, LINGER_DONE_MS, 0, NULL);
    }
}

/* The transport refused what the server sent. */
static void session_on_decode_error(session_t *s, int err)
{
    if (s->phase == PHASE_HANDSHAKE) {
        snprintf(s->why, sizeof s->why, "%s", s->ops->why(s->transport));
        session_end(s, END_HANDSHAKE, err);
        session_close_tcp(s);
    } else if (s->ops->close && s->phase == PHASE_RUNNING) {
        /* The transport queued a close frame with the code for the fault (RFC 6455
         * §7.1.7): send it, then wait briefly for the server's close. */
        session_end(s, END_BAD_REPLY, err);
        session_start_closing(s, LINGER_ABORT_MS, 0, NULL);
    } else {
        session_end(s, END_BAD_REPLY, err);
        session_close_tcp(s);
    }
}

static void session_opened(session_t *s);

static void session_on_bytes(session_t *s, uint8_t *data, size_t len)
{
    if (s->phase == PHASE_RUNNING && s->replay && s->opt->timeout_ms > 0)
        uv_timer_start(&s->timer, on_timer, s->opt->timeout_ms, 0);
    size_t off = 0;
    while (off < len && !uv_is_closing((uv_handle_t *)&s->tcp)) {
        size_t used = 0;
        decoded_t m = {NULL, 0, 0};
        int r = s->ops->decode(s->transport, data + off, len - off, &used, &m);
        off += used;
        if (r == DECODE_MORE)
            break;
        if (r < 0) {
            session_on_decode_error(s, r);
            break;
        }
        if (r == DECODE_MESSAGE)
            session_on_message(s, m.data, m.len);
        else if (r == DECODE_OPEN)
            session_opened(s);
        else
            session_on_close_frame(s, &m);
    }
    int err = session_write_control(s); /* pongs, the echo of a close */
    if (err < 0 && s->write_err == 0)
        s->write_err = err;
    progress_draw(s);
    if (s->input)
        fflush(stdout);
}

/* The read side ended: EOF, reset or another error. */
static void session_on_read_end(session_t *s, int err)
{
    if (s->phase == PHASE_HANDSHAKE) {
        snprintf(s->why, sizeof s->why,
                 "the server closed the connection during the opening "
                 "handshake (%s)",
                 err == UV_EOF ? "EOF" : uv_err_name(err));
        session_end(s, END_HANDSHAKE, err);
    } else if (s->phase == PHASE_RUNNING) {
        /* After our FIN or close frame this is the server's answer to it, whatever its
         * form. */
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

/* The transport is open: send. */
static void session_opened(session_t *s)
{
    s->phase = PHASE_RUNNING;
    /* Lines mode waits for stdin as long as it takes: its timeout was for connecting. */
    if (s->opt->timeout_ms > 0 && s->replay)
        uv_timer_start(&s->timer, on_timer, s->opt->timeout_ms, 0);
    else
        uv_timer_stop(&s->timer);
    progress_draw(s);
    if (s->replay && replay_complete(s->replay) && session_end(s, END_ANSWERED, 0)) {
        session_answered(s); /* an empty file: nothing to send */
        return;
    }
    session_pump(s);
}

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
    s->phase = s->ops->open ? PHASE_HANDSHAKE : PHASE_RUNNING;
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
    if (!s->ops->open) {
        session_opened(s);
        return;
    }
    err = session_write_owed(s, true);
    if (err < 0) {
        snprintf(s->why, sizeof s->why, "cannot send the upgrade request: %s", adieu_strerror(err));
        session_end(s, END_HANDSHAKE, err);
        session_close_tcp(s);
    }
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

/* "after N of M responses"; in lines mode "after N of M replies" (M lines sent). */
static const char *session_progress(const session_t *s, char *buf, size_t cap)
{
    if (s->replay)
        snprintf(buf, cap, "after %zu of %zu responses", s->replay->answered, s->replay->count);
    else
        snprintf(buf, cap, "after %zu of %zu replies", s->input->replies, s->input->lines);
    return buf;
}

/* Says how the server ended the session with its close frame. */
static void report_close_frame(const session_t *s, const char *after)
{
    if (s->close_code == 1005)
        say("server closed the connection (close frame without a status code) %s", after);
    else if (s->close_reason[0] == '\0')
        say("server closed the connection (close %u) %s", s->close_code, after);
    else
        say("server closed the connection (close %u \"%s\") %s", s->close_code, s->close_reason,
            after);
}

/* Says on stderr why the run stopped short.
 * NOTE: uv_err_name() and uv_strerror() allocate (and leak) a string for a code libuv does
 * not know, so they are only given libuv codes, never adieu ones. */
static void report_cause(const session_t *s)
{
    char after[96];
    session_progress(s, after, sizeof after);
    switch (s->end) {
    case END_PEER_EOF:
        say("server closed the connection (EOF%s) %s", s->ops->close ? ", no close frame" : "",
            after);
        break;
    case END_TRUNCATED:
        say("server closed the connection (EOF) inside a reply frame (truncated) %s", after);
        break;
    case END_PEER_RESET:
        say("server reset the connection (%s) %s", uv_err_name(s->err), after);
        break;
    case END_PEER_CLOSE:
        report_close_frame(s, after);
        break;
    case END_IO_ERROR:
        say("connection failed: %s (%s) %s", uv_err_name(s->err), uv_strerror(s->err), after);
        break;
    case END_BAD_REPLY:
        if (s->ops->why && s->ops->why(s->transport)[0] != '\0')
            say("bad data from the server: %s %s", s->ops->why(s->transport), after);
        else if (s->err == ADIEU_ETOOBIG)
            say("server sent a reply frame over %zu bytes %s", s->ops->max_reply(s->transport),
                after);
        else
            say("cannot read the replies (out of memory) %s", after);
        break;
    case END_TIMEOUT:
        say("no reply for %g s %s", s->opt->timeout_s, after);
        break;
    default:
        break;
    }
}

static void report_no_connect(const session_t *s)
{
    const options_t *o = s->opt;
    if (o->url) {
        say("cannot connect to %s: %s (%s)", o->url, uv_err_name(s->err), uv_strerror(s->err));
        return;
    }
    bool v6 = strchr(o->host, ':') != NULL;
    say("cannot connect to %s%s%s:%u: %s (%s)", v6 ? "[" : "", o->host, v6 ? "]" : "", o->port,
        uv_err_name(s->err), uv_strerror(s->err));
}

/* Prints the outcome and returns the exit status. */
static int session_report(const session_t *s)
{
    char after[96];
    switch (s->end) {
    case END_ANSWERED:
        return RC_ANSWERED; /* reported by session_answered() */
    case END_INPUT_DONE:
        return RC_ANSWERED; /* lines mode: stdin sent, the close handshake done or tried */
    case END_NO_CONNECT:
        report_no_connect(s);
        return RC_NO_CONNECT;
    case END_HANDSHAKE:
        say("cannot connect to %s: %s", s->opt->url, s->why);
        return RC_NO_CONNECT;
    case END_BAD_INPUT:
        say("%s", s->why);
        return RC_USAGE;
    case END_INTERRUPTED:
        say("interrupted %s", session_progress(s, after, sizeof after));
        return 128 + s->signum;
    default:
        report_cause(s);
        if (!s->replay) /* lines mode: a normal close by the server is a normal end */
            return s->end == END_PEER_CLOSE && s->close_code == 1000 ? RC_ANSWERED : RC_UNANSWERED;
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

/* Loads the file, or in lines mode opens stdin and starts reading it. Returns false after
 * printing one line. */
static bool session_load(session_t *s, replay_t *replay, input_t *in, size_t max_message)
{
    if (s->opt->file) {
        s->replay = replay;
        return replay_load(replay, s->opt->file, max_message);
    }
    s->input = in;
    int err = input_open(s, in);
    if (err < 0) {
        say("cannot read stdin: %s (%s)", uv_err_name(err), uv_strerror(err));
        return false;
    }
    input_start_reading(s);
    if (s->end != END_NONE) {
        say("%s", s->why);
        return false;
    }
    return true;
}

/* Runs the whole exchange over the transport given (owned by the caller, disposed here);
 * returns the exit status. */
static int run_session(const options_t *opt, const transport_ops_t *ops, void *transport,
                       size_t max_message)
{
    session_t *s = calloc(1, sizeof *s);
    input_t *in = opt->file ? NULL : calloc(1, sizeof *in);
    if (!s || (!opt->file && !in)) {
        say("out of memory");
        free(s);
        free(in);
        ops->dispose(transport);
        return RC_NO_CONNECT;
    }
    s->opt = opt;
    s->ops = ops;
    s->transport = transport;
    if (in)
        in->fd_flags = -1; /* nothing to restore until input_open() */
    replay_t replay;
    memset(&replay, 0, sizeof replay); /* zeroed is empty: replay_free() is safe on it */
    int rc, err = session_init(s);
    if (err < 0) {
        say("cannot start the event loop: %s (%s)", uv_err_name(err), uv_strerror(err));
        rc = RC_NO_CONNECT;
    } else if (!session_load(s, &replay, in, max_message)) {
        session_finish(s);
        session_close_loop(s);
        rc = RC_USAGE;
    } else {
        s->bar = opt->file && isatty(STDERR_FILENO) && replay.count > PROGRESS_MIN_MESSAGES;
        session_connect(s);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        progress_erase(s);
        rc = session_report(s);
        session_close_loop(s);
    }
    if (in) {
        input_restore(in);
        adieu_buf_free(&in->text);
        free(in);
    }
    replay_free(&replay);
    ops->dispose(transport);
    free(s);
    return rc;
}

static int run_frame(const options_t *opt)
{
    frame_transport_t frame;
    frame_init(&frame, opt->prefix_bytes);
    return run_session(opt, &frame_ops, &frame, frame_max_message(opt->prefix_bytes));
}

static int run_ws(const options_t *opt)
{
    ws_transport_t *ws = malloc(sizeof *ws);
    if (!ws) {
        say("out of memory");
        return RC_NO_CONNECT;
    }
    ws_init(ws, opt->ws.path, opt->ws.authority);
    /* A WebSocket message has no length limit of its own: the server sets one. */
    int rc = run_session(opt, &ws_ops, ws, SIZE_MAX);
    free(ws);
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

/* The options that take a value, matched on the first len characters of name. ws mode
 * takes --timeout only: the URL says where to connect. */
static bool is_valued_option(const char *name, size_t len, bool ws)
{
    static const char *const names[] = {"--timeout", "--host", "--port", "--prefix-bytes"};
    size_t count = ws ? 1 : sizeof names / sizeof names[0];
    for (size_t i = 0; i < count; i++)
        if (strlen(names[i]) == len && strncmp(names[i], name, len) == 0)
            return true;
    return false;
}

/* Takes one operand: FILE in frame mode; URL, then FILE, in ws mode. Returns -1 to go on,
 * or the bad-flags status. */
static int take_operand(options_t *o, const char *a, bool ws)
{
    if (ws && !o->url) {
        o->url = a;
        return -1;
    }
    if (o->file)
        return usage_error("more than one FILE: '%s'", a);
    o->file = a;
    return -1;
}

/* Parses a mode's arguments (after "frame" or "ws"). Returns -1 to go on, or the exit
 * status: 0 after --help, 2 after a message and the usage. */
static int parse_args(int argc, char **argv, options_t *o, bool ws)
{
    bool options_done = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || a[1] == '\0') {
            int rc = take_operand(o, a, ws);
            if (rc >= 0)
                return rc;
        } else if (strcmp(a, "--") == 0) {
            options_done = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage_text, stdout);
            return RC_ANSWERED;
        } else {
            const char *eq = strchr(a, '=');
            size_t name_len = eq ? (size_t)(eq - a) : strlen(a);
            if (!is_valued_option(a, name_len, ws))
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
    if (ws && !o->url)
        return usage_error("missing URL");
    if (!ws && !o->file)
        return usage_error("missing FILE.json");
    return -1;
}

/* ---- ws:// URLs (RFC 6455 §3) ---- */

static bool url_error(const char *url, const char *what)
{
    say("bad URL '%s': %s", url, what);
    return false;
}

/* HOST of a URL, IPv6 in brackets: copies the name to o->ws.host and sets *port_text to
 * what follows its ':' (NULL when there is none). */
static bool parse_host(const char *url, const char *a, size_t n, options_t *o,
                       const char **port_text)
{
    const char *host = a, *host_end, *after, *end = a + n;
    if (n > 0 && a[0] == '[') {
        host_end = memchr(a, ']', n);
        if (!host_end)
            return url_error(url, "no ']' after the IPv6 address");
        host = a + 1;
        after = host_end + 1;
    } else {
        const char *colon = memchr(a, ':', n);
        host_end = after = colon ? colon : end;
        for (const char *p = a; p < host_end; p++)
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                  (*p >= '0' && *p <= '9') || strchr("-._~", *p)))
                return url_error(url, "bad character in the host name");
    }
    size_t len = (size_t)(host_end - host);
    if (len == 0 || len >= sizeof o->ws.host)
        return url_error(url, len == 0 ? "no host" : "host name too long");
    memcpy(o->ws.host, host, len);
    o->ws.host[len] = '\0';
    unsigned char addr[16];
    if (host != a && uv_inet_pton(AF_INET6, o->ws.host, addr) != 0)
        return url_error(url, "not an IPv6 address between [ and ]");
    if (after < end && *after != ':')
        return url_error(url, "unexpected text after the IPv6 address");
    *port_text = after < end ? after + 1 : NULL;
    return true;
}

/* The authority: HOST[:PORT]; no user information. */
static bool parse_authority(const char *url, const char *a, size_t n, options_t *o)
{
    if (memchr(a, '@', n))
        return url_error(url, "user information (user@) is not supported");
    if (n >= sizeof o->ws.authority)
        return url_error(url, "host name too long");
    const char *port_text;
    if (!parse_host(url, a, n, o, &port_text))
        return false;
    unsigned long port = 80; /* RFC 6455 §3 */
    char digits[8];
    size_t plen = port_text ? (size_t)(a + n - port_text) : 0;
    if (port_text) {
        snprintf(digits, sizeof digits, "%.*s", (int)(plen < 7 ? plen : 7), port_text);
        if (plen > 5 || !parse_uint(digits, 1, 65535, &port))
            return url_error(url, "bad port number");
    }
    memcpy(o->ws.authority, a, n);
    o->ws.authority[n] = '\0';
    o->host = o->ws.host;
    o->port = (unsigned)port;
    return true;
}

/* Takes ws://HOST[:PORT][/path][?query] apart. Returns false after one line. */
static bool parse_ws_url(const char *url, options_t *o)
{
    const char *sep = strstr(url, "://");
    size_t scheme_len = sep ? (size_t)(sep - url) : 0;
    if (sep && adieu_http_ieq(url, scheme_len, "wss"))
        return url_error(url, "wss:// (WebSocket over TLS) is not supported; use ws://");
    if (!sep || !adieu_http_ieq(url, scheme_len, "ws"))
        return url_error(url, "expected ws://HOST[:PORT][/path]");
    const char *auth = sep + 3;
    size_t auth_len = strcspn(auth, "/?#");
    const char *rest = auth + auth_len;
    if (!parse_authority(url, auth, auth_len, o))
        return false;
    /* RFC 6455 §3: no fragment; the resource name is sent as it is in the request line. */
    for (const char *p = rest; *p; p++) {
        if (*p == '#')
            return url_error(url, "a fragment (#...) is not allowed in a WebSocket URL");
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return url_error(url, "space, control or non-ASCII character in the path");
    }
    /* "ws://h" and "ws://h?q" have an empty path: "/" (§3). */
    size_t slash = rest[0] == '/' ? 0 : 1, len = strlen(rest);
    if (slash + len >= sizeof o->ws.path)
        return url_error(url, "path too long");
    o->ws.path[0] = '/';
    memcpy(o->ws.path + slash, rest, len + 1);
    return true;
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

/* Opens /dev/null on any of fds 0-2 that is closed: libuv would otherwise take it for the
 * loop's own descriptors, and then refuse (abort) to close a "stdio" descriptor at exit. A
 * closed stdin then reads as empty. */
static void ensure_stdio(void)
{
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++) {
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF && open("/dev/null", O_RDWR) != fd)
            abort(); /* open() returns the lowest free descriptor: fd itself */
    }
}

int main(int argc, char **argv)
{
    ensure_stdio();
    if (argc < 2) {
        fputs(usage_text, stderr);
        return RC_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage_text, stdout);
        return RC_ANSWERED;
    }
    bool ws = strcmp(argv[1], "ws") == 0;
    if (!ws && strcmp(argv[1], "frame") != 0) {
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
    int rc = parse_args(argc - 2, argv + 2, &opt, ws);
    if (rc >= 0)
        return rc;
    if (ws && !parse_ws_url(opt.url, &opt))
        return RC_USAGE;

    ignore_sigpipe();
    rc = ws ? run_ws(&opt) : run_frame(&opt);
    fflush(stdout);
    return rc;
}
