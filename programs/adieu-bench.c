/* SPDX-License-Identifier: MIT */
/*
 * adieu-bench: the load generator of SPEC section 3, for length-prefixed TCP and WebSocket.
 *
 *   adieu-bench ws|frame [options]        (usage_text lists the options)
 *
 * It must outrun the fastest server it measures on one core, so it is raw epoll with no
 * work per message beyond what the wire needs:
 *  - all the frames a connection may send are built in one buffer and handed over in one
 *    send(); framed messages are identical, so they go straight from a shared template;
 *    WebSocket frames need a fresh mask each (RFC 6455 §5.3), applied a word at a time;
 *  - each read goes into one big per-thread buffer and is parsed in place by a streaming
 *    parser whose state is a few bytes per connection, with a fast path for a whole echo
 *    of the expected shape;
 *  - send times sit in a per-connection ring (echoes come back in order) and latencies in a
 *    log-linear histogram in a fixed array: nothing is allocated per message.
 *
 * Each thread owns an epoll instance and a block of the connections. A run has three
 * phases: setup (connect and upgrade, at most CONNECTING_MAX in progress at once), load
 * (after a barrier, so every thread starts together; the first --warmup seconds are not
 * counted), and close (every connection ends properly: a close handshake or a FIN, then
 * the server's EOF, each bounded in time). Nothing here is shared between threads while
 * they run except the stop time and the interrupt flag.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#define NS_PER_MS 1000000ull
#define NS_PER_S 1000000000ull

#define DEFAULT_WS_PORT 9000u
#define DEFAULT_FRAME_PORT 10999u
#define MAX_PORTS 64
#define MAX_HOST 255
#define MAX_PATH 512
#define MAX_CONNECTIONS 1000000ul
#define MAX_THREADS 64ul
/* The server's default --max-message: larger payloads would only measure a refusal. */
#define MAX_SIZE (16ul * 1024 * 1024)
#define MAX_PIPELINE 65536ul
/* connections x pipeline: the send-time rings cost 8 bytes per message in flight. */
#define MAX_IN_FLIGHT (1ul << 22)

/* One read takes up to this much; a full buffer is read again at once. */
#define RBUF_BYTES (256u * 1024)
/* Edge-triggered: a level-triggered epoll re-polls every socket it reported on the next
 * call, a cost that shows in the profile at 100 connections. Reads go on until a short one,
 * which on a TCP socket means its queue was empty at that moment. */
#define EV_IN (EPOLLIN | EPOLLRDHUP | EPOLLET)
/* Frames built for one send(): a whole pipeline of small messages fits many times over. */
#define WBUF_BYTES (256u * 1024)
#define MAX_EVENTS 256
/* Connects and upgrades in progress at once during setup, over all threads: enough to open
 * 10,000 connections in well under a second without flooding the listen backlog. */
#define CONNECTING_MAX 500u

#define SETUP_TIMEOUT_NS (10 * NS_PER_S)
/* After our close frame or FIN, how long the server has to close; the same bound applies to
 * the echoes still in flight when the load stops. */
#define CLOSE_TIMEOUT_NS (2 * NS_PER_S)
/* churn: a failed slot waits this long before it connects again, so a dead server is not
 * hammered in a tight loop. */
#define BACKOFF_NS (10 * NS_PER_MS)
/* Deadlines, retries and the interrupt flag are checked this often at least. */
#define SWEEP_NS (20 * NS_PER_MS)

/* The server's answer to the upgrade request: status line, headers, blank line. */
#define HS_MAX 2048
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24
#define WS_ACCEPT_LEN 28

enum { WS_OP_CONT = 0x0, WS_OP_TEXT = 0x1, WS_OP_BINARY = 0x2 };
enum { WS_OP_CLOSE = 0x8, WS_OP_PING = 0x9, WS_OP_PONG = 0xA };
/* RFC 6455 §5.5: control frame payloads are at most 125 bytes. */
#define WS_CONTROL_MAX 125

enum { RC_DONE = 0, RC_NO_CONNECT = 1, RC_USAGE = 2 };

typedef enum { PROTO_WS, PROTO_FRAME } proto_t;
typedef enum { MODE_ECHO, MODE_CHURN, MODE_IDLE } bench_mode_t;

typedef struct {
    proto_t proto;
    bench_mode_t mode;
    const char *host;
    uint16_t ports[MAX_PORTS];
    unsigned nports;
    const char *path;
    unsigned connections;
    size_t size;
    unsigned pipeline;
    double duration_s;
    double warmup_s;
    bool text;
    unsigned prefix_bytes;
    unsigned threads;
    bool json;
} options_t;

static const char usage_text[] =
    "usage: adieu-bench ws|frame [options]\n"
    "\n"
    "Load generator for adieu-server and its peers over WebSocket (ws) or length-prefixed\n"
    "TCP (frame). Prints messages/s, MB/s (payload bytes received / 1e6 per second) and\n"
    "latency percentiles, or one JSON object with --json.\n"
    "\n"
    "  --host H                 server address (default 127.0.0.1)\n"
    "  --port P[,P2...]         server port (default 9000 for ws, 10999 for frame); a list\n"
    "                           spreads the connections round-robin over several servers\n"
    "  --path PATH              ws: request path (default /)\n"
    "  --connections N          connections (default 100)\n"
    "  --size BYTES             payload size (default 16)\n"
    "  --pipeline N             echo: messages in flight per connection (default 1)\n"
    "  --duration S             measured seconds, fractions allowed (default 5)\n"
    "  --warmup S               seconds of load before measuring (default 1; idle: unused)\n"
    "  --binary | --text        ws: message opcode (default binary); text payloads are ASCII\n"
    "  --prefix-bytes 2|4       frame: length prefix size (default 2)\n"
    "  --threads N              generator threads, each with its own epoll and share of the\n"
    "                           connections (default 1)\n"
    "  --mode echo|churn|idle   what each connection does (default echo):\n"
    "      echo   keep --pipeline messages in flight; each echo sends the next message;\n"
    "             latency is send to echo\n"
    "      churn  loop: connect, (upgrade), one message and its echo, clean close; messages\n"
    "             counts connections completed, latency is connect to closed\n"
    "      idle   open the connections, send nothing, hold them for --duration and answer\n"
    "             the server's close; messages counts connections opened\n"
    "  --json                   print exactly one JSON object on stdout instead of the table\n"
    "  -h, --help               show this help\n"
    "\n"
    "Every connection ends properly: ws sends close 1000 and waits (2 s at most) for the\n"
    "server's close and FIN; frame shuts down its side and reads until EOF.\n"
    "\n"
    "Exit status: 0 the run completed (failed connections are counted under errors);\n"
    "1 no connection could be established; 2 bad flags.\n";

/* ---------------------------------------------------------------------------------------
 * Flags
 * ------------------------------------------------------------------------------------- */

static int bad_flag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints one line naming the problem, then the usage text; returns exit status 2. */
static int bad_flag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("adieu-bench: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage_text);
    return RC_USAGE;
}

static int parse_ulong(const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    if (*s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (unsigned long)v;
    return 0;
}

static int parse_seconds(const char *s, double *out)
{
    if ((*s < '0' || *s > '9') && *s != '.')
        return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0 || v > 1e6)
        return -1;
    *out = v;
    return 0;
}

static int parse_ports(const char *s, options_t *o)
{
    o->nports = 0;
    while (o->nports < MAX_PORTS) {
        char *end;
        if (*s < '0' || *s > '9')
            return -1;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno != 0 || v == 0 || v > 65535 || (*end != ',' && *end != '\0'))
            return -1;
        o->ports[o->nports++] = (uint16_t)v;
        if (*end == '\0')
            return 0;
        s = end + 1;
    }
    return -1;
}

/* A request-target we can put on the request line as it is. */
static bool path_ok(const char *p)
{
    if (p[0] != '/' || strlen(p) > MAX_PATH)
        return false;
    for (; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return false;
    return true;
}

/* Applies one flag that takes a value; returns 0, or exit status 2 after saying why. */
static int set_flag(options_t *o, const char *name, const char *v)
{
    unsigned long n;
    if (strcmp(name, "--host") == 0) {
        if (*v == '\0' || strlen(v) > MAX_HOST)
            return bad_flag("--host: bad host '%s'", v);
        o->host = v;
    } else if (strcmp(name, "--port") == 0) {
        if (parse_ports(v, o) < 0)
            return bad_flag("--port: expected P[,P2...] with ports 1-65535, got '%s'", v);
    } else if (strcmp(name, "--path") == 0) {
        if (!path_ok(v))
            return bad_flag("--path: expected /..., printable, no spaces, got '%s'", v);
        o->path = v;
    } else if (strcmp(name, "--connections") == 0) {
        if (parse_ulong(v, 1, MAX_CONNECTIONS, &n) < 0)
            return bad_flag("--connections: expected 1-%lu, got '%s'", MAX_CONNECTIONS, v);
        o->connections = (unsigned)n;
    } else if (strcmp(name, "--size") == 0) {
        if (parse_ulong(v, 0, MAX_SIZE, &n) < 0)
            return bad_flag("--size: expected 0-%lu bytes, got '%s'", MAX_SIZE, v);
        o->size = n;
    } else if (strcmp(name, "--pipeline") == 0) {
        if (parse_ulong(v, 1, MAX_PIPELINE, &n) < 0)
            return bad_flag("--pipeline: expected 1-%lu, got '%s'", MAX_PIPELINE, v);
        o->pipeline = (unsigned)n;
    } else if (strcmp(name, "--duration") == 0) {
        if (parse_seconds(v, &o->duration_s) < 0 || o->duration_s <= 0)
            return bad_flag("--duration: expected seconds > 0, got '%s'", v);
    } else if (strcmp(name, "--warmup") == 0) {
        if (parse_seconds(v, &o->warmup_s) < 0)
            return bad_flag("--warmup: expected seconds >= 0, got '%s'", v);
    } else if (strcmp(name, "--prefix-bytes") == 0) {
        if (strcmp(v, "2") != 0 && strcmp(v, "4") != 0)
            return bad_flag("--prefix-bytes: expected 2 or 4, got '%s'", v);
        o->prefix_bytes = (unsigned)(v[0] - '0');
    } else if (strcmp(name, "--threads") == 0) {
        if (parse_ulong(v, 1, MAX_THREADS, &n) < 0)
            return bad_flag("--threads: expected 1-%lu, got '%s'", MAX_THREADS, v);
        o->threads = (unsigned)n;
    } else if (strcmp(name, "--mode") == 0) {
        if (strcmp(v, "echo") == 0)
            o->mode = MODE_ECHO;
        else if (strcmp(v, "churn") == 0)
            o->mode = MODE_CHURN;
        else if (strcmp(v, "idle") == 0)
            o->mode = MODE_IDLE;
        else
            return bad_flag("--mode: expected echo, churn or idle, got '%s'", v);
    } else {
        return bad_flag("unknown flag %s", name);
    }
    return 0;
}

static bool takes_value(const char *name)
{
    static const char *const names[] = {
        "--host",     "--port",   "--path",         "--connections", "--size", "--pipeline",
        "--duration", "--warmup", "--prefix-bytes", "--threads",     "--mode"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

/* Checks what no single flag can; fills in the defaults that depend on the protocol. */
static int check_options(options_t *o, bool have_proto)
{
    if (!have_proto)
        return bad_flag("the protocol is missing: ws or frame");
    if (o->nports == 0) {
        o->ports[0] = (uint16_t)(o->proto == PROTO_WS ? DEFAULT_WS_PORT : DEFAULT_FRAME_PORT);
        o->nports = 1;
    }
    if (o->proto == PROTO_FRAME && o->prefix_bytes == 2 && o->size > 0xffff)
        return bad_flag("--size %zu does not fit a 2-byte prefix (use --prefix-bytes 4)", o->size);
    /* What the modes really keep in flight, which is also what the output reports. */
    if (o->mode == MODE_CHURN)
        o->pipeline = 1;
    else if (o->mode == MODE_IDLE)
        o->pipeline = 0;
    if ((unsigned long)o->connections * o->pipeline > MAX_IN_FLIGHT)
        return bad_flag("--connections x --pipeline is over %lu", MAX_IN_FLIGHT);
    if (o->threads > o->connections)
        o->threads = o->connections;
    return 0;
}

/* Returns 0 (options set), 1 (--help) or 2 (bad flags, already reported). */
static int parse_args(int argc, char **argv, options_t *o)
{
    *o = (options_t){.host = "127.0.0.1",
                     .path = "/",
                     .connections = 100,
                     .size = 16,
                     .pipeline = 1,
                     .duration_s = 5,
                     .warmup_s = 1,
                     .prefix_bytes = 2,
                     .threads = 1};
    bool have_proto = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-') {
            if (have_proto)
                return bad_flag("unexpected argument '%s'", a);
            if (strcmp(a, "ws") != 0 && strcmp(a, "frame") != 0)
                return bad_flag("unknown protocol '%s': expected ws or frame", a);
            o->proto = strcmp(a, "ws") == 0 ? PROTO_WS : PROTO_FRAME;
            have_proto = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return 1;
        } else if (strcmp(a, "--binary") == 0 || strcmp(a, "--text") == 0) {
            o->text = strcmp(a, "--text") == 0;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else {
            /* --flag VALUE or --flag=VALUE */
            char name[32];
            const char *eq = strchr(a, '=');
            size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
            if (nlen >= sizeof name)
                return bad_flag("unknown flag %s", a);
            memcpy(name, a, nlen);
            name[nlen] = '\0';
            if (!takes_value(name))
                return bad_flag("unknown flag %s", name);
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (v == NULL)
                return bad_flag("%s needs a value", name);
            int rc = set_flag(o, name, v);
            if (rc != 0)
                return rc;
        }
    }
    return check_options(o, have_proto);
}

/* ---------------------------------------------------------------------------------------
 * Time, randomness, latency histogram
 * ------------------------------------------------------------------------------------- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* xorshift64*: masking keys and Sec-WebSocket-Keys only need to be unpredictable to the
 * server's code, not to an attacker, and this is a few cycles per key. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Log-linear buckets in the manner of HdrHistogram: values below 2*HIST_SUB are exact, and
 * each further power of two is cut into HIST_SUB buckets, so a bucket is at most 1/128 of
 * its value wide (better than 2 significant digits) over the whole uint64 range, in a fixed
 * array of 58 KiB per thread. */
#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS (HIST_SUB * (64 - HIST_SUB_BITS + 1))

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max;
} hist_t;

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned shift = (unsigned)(63 - __builtin_clzll(v)) - HIST_SUB_BITS;
    return HIST_SUB * shift + (unsigned)(v >> shift);
}

/* The highest value that falls in bucket idx. */
static uint64_t hist_upper(unsigned idx)
{
    if (idx < 2 * HIST_SUB)
        return idx;
    unsigned shift = idx / HIST_SUB - 1;
    uint64_t top = idx % HIST_SUB + HIST_SUB;
    return ((top + 1) << shift) - 1;
}

static void hist_record(hist_t *h, uint64_t v)
{
    h->counts[hist_index(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(hist_t *into, const hist_t *h)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->counts[i] += h->counts[i];
    into->total += h->total;
    if (h->max > into->max)
        into->max = h->max;
}

/* The value at percentile p (0-100) in microseconds; 0 for an empty histogram. */
static double hist_percentile_us(const hist_t *h, double p)
{
    if (h->total == 0)
        return 0;
    uint64_t want = (uint64_t)ceil((double)h->total * p / 100.0);
    if (want < 1)
        want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t v = hist_upper(i);
            return (double)(v < h->max ? v : h->max) / 1e3;
        }
    }
    return (double)h->max / 1e3;
}

/* ---------------------------------------------------------------------------------------
 * Wire helpers
 * ------------------------------------------------------------------------------------- */

static uint64_t be_read(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static void be_write(uint8_t *p, uint64_t v, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* A WebSocket frame header without the masking key (RFC 6455 §5.2, minimal length form). */
static size_t ws_head(uint8_t out[10], unsigned op, size_t len, bool masked)
{
    uint8_t m = masked ? 0x80 : 0;
    out[0] = (uint8_t)(0x80 | op);
    if (len < 126) {
        out[1] = (uint8_t)(m | len);
        return 2;
    }
    if (len <= 0xffff) {
        out[1] = m | 126;
        be_write(out + 2, len, 2);
        return 4;
    }
    out[1] = m | 127;
    be_write(out + 2, len, 8);
    return 10;
}

/* dst = src XOR the repeated 4-byte key, 8 bytes at a time. key is in wire byte order (as it
 * was copied into the frame), so the result does not depend on the host's endianness. */
static void mask_copy(uint8_t *dst, const uint8_t *src, size_t len, uint32_t key)
{
    uint8_t k[8];
    memcpy(k, &key, 4);
    memcpy(k + 4, &key, 4);
    uint64_t k64;
    memcpy(&k64, k, 8);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= k64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < len; i++)
        dst[i] = src[i] ^ k[i & 3];
}

/* Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2), computed here rather than with the
 * library's helper so that a fault in the server's computation cannot hide itself. */
static void ws_accept_for(const char key[WS_KEY_LEN], char out[WS_ACCEPT_LEN + 1])
{
    unsigned char in[WS_KEY_LEN + sizeof WS_GUID - 1];
    memcpy(in, key, WS_KEY_LEN);
    memcpy(in + WS_KEY_LEN, WS_GUID, sizeof WS_GUID - 1);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(in, sizeof in, digest);
    EVP_EncodeBlock((unsigned char *)out, digest, SHA_DIGEST_LENGTH);
}

/* ---------------------------------------------------------------------------------------
 * Run, threads and connections
 * ------------------------------------------------------------------------------------- */

/* Everything the threads share: set up by main before they start, read-only afterwards,
 * except stop_ns (brought forward by an interrupt) and the times main sets between the two
 * barriers (the barriers order those writes before the threads read them). */
typedef struct {
    options_t opt;
    struct sockaddr_storage addrs[MAX_PORTS];
    socklen_t addr_lens[MAX_PORTS];
    char host_header[MAX_HOST + 3]; /* an IPv6 literal in brackets */
    unsigned opcode;                /* ws: the data opcode sent and expected back */
    uint8_t *payload;
    size_t flen;      /* one message as the client sends it: header, mask key, payload */
    uint8_t head[10]; /* its header (ws: before the mask key; frame: the prefix) */
    size_t head_len;
    uint8_t echo_head[10]; /* the header the server's echo has (no mask) */
    size_t echo_head_len;
    size_t echo_flen;
    uint8_t *tpl; /* frame: tpl_frames identical messages back to back */
    unsigned tpl_frames;
    pthread_barrier_t ready, go;
    uint64_t t_measure;
    bool abort; /* set by main between the barriers when nothing could connect */
    _Atomic uint64_t stop_ns;
} run_t;

typedef enum {
    CS_IDLE,         /* no socket yet */
    CS_CONNECTING,   /* non-blocking connect in progress: waits for EPOLLOUT */
    CS_UPGRADING,    /* ws: request sent, waits for the 101 */
    CS_OPEN,         /* ready: messages flow (echo, churn) or nothing does (idle) */
    CS_CLOSING,      /* we sent close 1000 or a FIN: waits for the server's close and EOF */
    CS_PEER_CLOSING, /* ws: the server sent a close, we answered it: waits for its EOF */
    CS_BACKOFF,      /* churn: the attempt failed, connects again at the deadline */
    CS_DONE,         /* finished for good */
    CS_COUNT
} conn_state_t;

typedef enum { ERR_CONNECT, ERR_UPGRADE, ERR_CLOSED, ERR_ECHO, ERR_TIMEOUT, ERR_COUNT } err_kind_t;

static const char *const err_names[ERR_COUNT] = {"connect", "upgrade", "closed", "bad_echo",
                                                 "timeout"};

/* Control output waiting for the residue to drain: a frame is never cut by another. */
enum { CTL_PONG = 1, CTL_CLOSE = 2, CTL_FIN = 4 };

typedef struct {
    char accept[WS_ACCEPT_LEN + 1]; /* what Sec-WebSocket-Accept must say */
    size_t len;
    char buf[HS_MAX];
} handshake_t;

struct worker;

typedef struct {
    struct worker *w;
    int fd;
    uint32_t gen;   /* bumped at every close, so stale epoll events are recognised */
    uint32_t index; /* in the worker's array, with gen in the epoll data */
    uint16_t port_idx;
    uint8_t state;
    uint8_t ctl_pending;
    bool want_out;       /* EPOLLOUT is armed */
    bool res_msg;        /* the residue holds message frames, not control bytes */
    bool close_received; /* ws: the server's close frame arrived */
    bool failed;         /* this attempt has been counted as an error */
    uint16_t close_code; /* ws: the code our close frame carries (0: no code) */
    uint64_t t_start;    /* churn: when this connection's cycle began */
    uint64_t deadline;   /* 0: none; else the sweep acts on it (timeout or retry) */
    /* Output that send() did not take, kept for EPOLLOUT. */
    uint8_t *res;
    size_t res_off, res_len, res_cap;
    size_t partial;   /* bytes of the current message frame already handed over */
    unsigned to_send; /* messages allowed out but not built yet */
    /* Send times of the messages handed over and not echoed yet, oldest first. */
    uint64_t *ts;
    uint32_t ts_head, ts_count, ts_mask;
    /* Input: the streaming parser of the server's frames. */
    uint8_t hdr[14];
    uint8_t hdr_have;
    uint8_t fr_op;
    bool fr_fin;
    bool in_payload;
    uint64_t fr_left; /* payload bytes of the current frame still to come */
    uint8_t msg_op;   /* ws: opcode of the message being received, 0 between messages */
    uint64_t msg_len; /* payload bytes of the current message so far */
    uint8_t ctl_len;  /* ws: the control frame being received */
    uint8_t pong_len; /* ws: the pong owed, sent after the residue */
    uint8_t ctl[WS_CONTROL_MAX];
    uint8_t pong[WS_CONTROL_MAX];
    handshake_t *hs;
} conn_t;

typedef struct {
    uint64_t messages; /* echoes (churn: connections completed) in the measured window */
    uint64_t bytes;    /* their payload bytes */
    uint64_t opened;   /* connections established (ws: upgraded) */
    uint64_t closed_by_server;
    uint64_t errors;
    uint64_t err_kind[ERR_COUNT];
} stats_t;

typedef struct worker {
    run_t *run;
    pthread_t thread;
    int ep;
    conn_t *conns;
    unsigned nconns;
    unsigned first_index; /* of conns[0] among all connections */
    unsigned next_start;  /* setup: the next connection to open */
    unsigned max_pending; /* setup: connects and upgrades in progress at once */
    unsigned in_state[CS_COUNT];
    bool loading;                /* the load phase has begun */
    bool stopping;               /* the load phase is over */
    uint64_t t_measure, stop_ns; /* copies of the run's, read on the hot path */
    uint64_t next_sweep;
    uint64_t load_end;
    uint8_t *rbuf;
    uint8_t *wbuf;
    size_t wcap;
    uint64_t rng;
    stats_t st;
    char first_err[256];
    hist_t hist;
} worker_t;

/* Set by SIGINT/SIGTERM; the threads bring the stop time forward when they see it. */
static atomic_int interrupted;

static unsigned worker_live(const worker_t *w)
{
    return w->nconns - w->in_state[CS_DONE] - w->in_state[CS_IDLE];
}

static unsigned worker_pending(const worker_t *w)
{
    return w->in_state[CS_CONNECTING] + w->in_state[CS_UPGRADING];
}

static void conn_set_state(conn_t *c, conn_state_t s)
{
    c->w->in_state[c->state]--;
    c->w->in_state[s]++;
    c->state = (uint8_t)s;
}

static int conn_watch(conn_t *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)c->gen << 32 | c->index};
    return epoll_ctl(c->w->ep, op, c->fd, &ev);
}

/* Counts one error for this attempt (once, whatever follows) and keeps the first message. */
static void conn_note_error(conn_t *c, err_kind_t kind, int err, const char *what)
{
    worker_t *w = c->w;
    if (c->failed)
        return;
    c->failed = true;
    w->st.errors++;
    w->st.err_kind[kind]++;
    if (w->first_err[0] != '\0')
        return;
    char why[128] = "";
    if (err != 0 && strerror_r(err, why, sizeof why) != 0)
        snprintf(why, sizeof why, "errno %d", err);
    snprintf(w->first_err, sizeof w->first_err, "%s:%u: %s%s%s", w->run->opt.host,
             (unsigned)w->run->opt.ports[c->port_idx], what, err ? ": " : "", why);
}

/* Closes the socket; epoll forgets it with its last descriptor. */
static void conn_drop(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->gen++;
    c->want_out = false;
    c->deadline = 0;
}

/* Ends this attempt as failed. Returns -1, which every caller passes up: the connection (or
 * this incarnation of a churn slot) is gone and must not be touched again. */
static int conn_fail(conn_t *c, err_kind_t kind, int err, const char *what)
{
    worker_t *w = c->w;
    conn_note_error(c, kind, err, what);
    conn_drop(c);
    if (w->run->opt.mode == MODE_CHURN && w->loading && !w->stopping) {
        conn_set_state(c, CS_BACKOFF);
        c->deadline = now_ns() + BACKOFF_NS;
        return -1;
    }
    conn_set_state(c, CS_DONE);
    return -1;
}

/* ---------------------------------------------------------------------------------------
 * Output: one send() per batch; what the socket does not take waits for EPOLLOUT.
 * ------------------------------------------------------------------------------------- */

static int conn_want_out(conn_t *c, bool on)
{
    if (c->want_out == on)
        return 0;
    if (conn_watch(c, EV_IN | (on ? EPOLLOUT : 0), EPOLL_CTL_MOD) < 0)
        return conn_fail(c, ERR_CLOSED, errno, "epoll_ctl");
    c->want_out = on;
    return 0;
}

/* One send(): the bytes taken (0 when the socket buffer is full), or -1 once failed. */
static ssize_t conn_send(conn_t *c, const uint8_t *data, size_t len)
{
    for (;;) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return conn_fail(c, ERR_CLOSED, errno, "send");
    }
}

/* Keeps the bytes send() did not take. The residue is empty when this is called, and holds
 * one kind of bytes at a time, so the message bytes in it can be timed when they go. */
static int conn_keep(conn_t *c, const uint8_t *data, size_t len, bool msgs)
{
    if (c->res_cap < len) {
        uint8_t *p = realloc(c->res, len);
        if (p == NULL)
            return conn_fail(c, ERR_CLOSED, ENOMEM, "buffer");
        c->res = p;
        c->res_cap = len;
    }
    memcpy(c->res, data, len);
    c->res_off = 0;
    c->res_len = len;
    c->res_msg = msgs;
    return conn_want_out(c, true);
}

static int conn_send_raw(conn_t *c, const uint8_t *data, size_t len)
{
    ssize_t n = conn_send(c, data, len);
    if (n < 0)
        return -1;
    if ((size_t)n < len)
        return conn_keep(c, data + n, len - (size_t)n, false);
    return 0;
}

/* n message bytes were handed to the socket at time t: each frame they complete is in
 * flight from now on (its echo is timed from t). */
static void conn_sent(conn_t *c, size_t n, uint64_t t)
{
    size_t flen = c->w->run->flen;
    size_t total = c->partial + n;
    size_t done = total / flen;
    c->partial = total % flen;
    for (size_t i = 0; i < done; i++)
        c->ts[(c->ts_head + c->ts_count++) & c->ts_mask] = t;
}

/* Builds n masked WebSocket messages in the thread's buffer. */
static void ws_build(worker_t *w, unsigned n)
{
    const run_t *r = w->run;
    uint8_t *p = w->wbuf;
    for (unsigned i = 0; i < n; i++) {
        memcpy(p, r->head, r->head_len);
        p += r->head_len;
        uint32_t key = (uint32_t)rng_next(&w->rng);
        memcpy(p, &key, 4);
        p += 4;
        mask_copy(p, r->payload, r->opt.size, key);
        p += r->opt.size;
    }
}

/* Sends as many of the allowed messages as one batch holds, in one send(). */
static int conn_send_messages(conn_t *c)
{
    worker_t *w = c->w;
    const run_t *r = w->run;
    unsigned n;
    const uint8_t *data;
    if (r->opt.proto == PROTO_FRAME) {
        n = c->to_send < r->tpl_frames ? c->to_send : r->tpl_frames;
        data = r->tpl;
    } else {
        size_t fit = w->wcap / r->flen;
        n = c->to_send < fit ? c->to_send : (unsigned)fit;
        ws_build(w, n);
        data = w->wbuf;
    }
    size_t len = (size_t)n * r->flen;
    uint64_t t = now_ns();
    ssize_t sent = conn_send(c, data, len);
    if (sent < 0)
        return -1;
    c->to_send -= n;
    conn_sent(c, (size_t)sent, t);
    if ((size_t)sent < len)
        return conn_keep(c, data + sent, len - (size_t)sent, true);
    return 0;
}

/* A masked control frame (RFC 6455 §5.5, §5.3) into out; returns its length. */
static size_t ws_control_frame(worker_t *w, uint8_t out[6 + WS_CONTROL_MAX], unsigned op,
                               const uint8_t *payload, size_t len)
{
    size_t h = ws_head(out, op, len, true);
    uint32_t key = (uint32_t)rng_next(&w->rng);
    memcpy(out + h, &key, 4);
    mask_copy(out + h + 4, payload, len, key);
    return h + 4 + len;
}

/* Sends the control output owed, in order: a pong, our close frame, the FIN. */
static int conn_flush_control(conn_t *c)
{
    uint8_t f[6 + WS_CONTROL_MAX];
    if (c->ctl_pending & CTL_PONG) {
        c->ctl_pending &= (uint8_t)~CTL_PONG;
        size_t n = ws_control_frame(c->w, f, WS_OP_PONG, c->pong, c->pong_len);
        if (conn_send_raw(c, f, n) < 0)
            return -1;
        if (c->res_len > 0)
            return 0;
    }
    if (c->ctl_pending & CTL_CLOSE) {
        c->ctl_pending &= (uint8_t)~CTL_CLOSE;
        uint8_t code[2] = {(uint8_t)(c->close_code >> 8), (uint8_t)c->close_code};
        size_t n = ws_control_frame(c->w, f, WS_OP_CLOSE, code, c->close_code ? 2 : 0);
        if (conn_send_raw(c, f, n) < 0)
            return -1;
        if (c->res_len > 0)
            return 0;
    }
    if (c->ctl_pending & CTL_FIN) {
        c->ctl_pending &= (uint8_t)~CTL_FIN;
        if (shutdown(c->fd, SHUT_WR) < 0)
            return conn_fail(c, ERR_CLOSED, errno, "shutdown");
    }
    return 0;
}

/* Sends what is owed: the residue first, then control output, then the messages allowed.
 * Returns -1 when the connection ended meanwhile. */
static int conn_flush(conn_t *c)
{
    if (c->res_len > 0) {
        uint64_t t = now_ns();
        ssize_t n = conn_send(c, c->res + c->res_off, c->res_len);
        if (n < 0)
            return -1;
        if (c->res_msg)
            conn_sent(c, (size_t)n, t);
        c->res_off += (size_t)n;
        c->res_len -= (size_t)n;
        if (c->res_len > 0)
            return conn_want_out(c, true);
    }
    if (c->ctl_pending) {
        if (conn_flush_control(c) < 0)
            return -1;
        if (c->res_len > 0)
            return 0;
    }
    while (c->to_send > 0 && c->state == CS_OPEN) {
        if (conn_send_messages(c) < 0)
            return -1;
        if (c->res_len > 0)
            return 0;
    }
    return conn_want_out(c, false);
}

/* ---------------------------------------------------------------------------------------
 * Connection lifecycle
 * ------------------------------------------------------------------------------------- */

static int conn_start(conn_t *c, uint64_t now);

/* Ends this attempt after a proper close. A churn slot whose cycle completed is counted and
 * starts its next cycle at once while the load runs. Returns -1 like conn_fail(). */
static int conn_end(conn_t *c, uint64_t now, bool completed)
{
    worker_t *w = c->w;
    conn_drop(c);
    if (w->run->opt.mode == MODE_CHURN) {
        if (completed && !c->failed && now >= w->t_measure && now < w->stop_ns) {
            hist_record(&w->hist, now - c->t_start);
            w->st.messages++;
            w->st.bytes += w->run->opt.size;
        }
        /* NOTE: now, not only the stopping flag, which the thread sets a little later:
         * after the stop a slot finishes its cycle and starts no other. */
        if (w->loading && !w->stopping && now < w->stop_ns) {
            conn_start(c, now);
            return -1;
        }
    }
    conn_set_state(c, CS_DONE);
    return -1;
}

/* Starts what the load phase asks of an open connection. */
static int conn_load_start(conn_t *c)
{
    const options_t *o = &c->w->run->opt;
    if (o->mode == MODE_IDLE)
        return 0;
    c->to_send = o->mode == MODE_ECHO ? o->pipeline : 1;
    return conn_flush(c);
}

/* The connection is ready (frame: connected; ws: upgraded). */
static int conn_ready(conn_t *c)
{
    worker_t *w = c->w;
    conn_set_state(c, CS_OPEN);
    c->deadline = 0;
    w->st.opened++;
    if (w->run->opt.mode != MODE_CHURN) {
        free(c->hs);
        c->hs = NULL;
    }
    /* During setup connections wait for the go; afterwards only churn slots open. */
    return w->loading ? conn_load_start(c) : 0;
}

/* Sends our close: ws close 1000, frame a FIN; then the server's EOF ends it. */
static int conn_close_begin(conn_t *c, uint64_t now)
{
    conn_set_state(c, CS_CLOSING);
    c->deadline = now + CLOSE_TIMEOUT_NS;
    c->to_send = 0;
    c->close_code = 1000;
    c->ctl_pending |= c->w->run->opt.proto == PROTO_WS ? CTL_CLOSE : CTL_FIN;
    return conn_flush(c);
}

static int ws_send_request(conn_t *c)
{
    worker_t *w = c->w;
    const run_t *r = w->run;
    if (c->hs == NULL && (c->hs = malloc(sizeof *c->hs)) == NULL)
        return conn_fail(c, ERR_UPGRADE, ENOMEM, "handshake buffer");
    c->hs->len = 0;
    uint8_t raw[16];
    uint64_t a = rng_next(&w->rng), b = rng_next(&w->rng);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    char key[WS_KEY_LEN + 1];
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);
    ws_accept_for(key, c->hs->accept);
    char req[MAX_PATH + MAX_HOST + 256];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     r->opt.path, r->host_header, (unsigned)r->opt.ports[c->port_idx], key);
    conn_set_state(c, CS_UPGRADING);
    return conn_send_raw(c, (const uint8_t *)req, (size_t)n);
}

static int conn_connected(conn_t *c)
{
    if (c->w->run->opt.proto == PROTO_FRAME)
        return conn_ready(c);
    return ws_send_request(c);
}

/* Resets the per-attempt state of a slot before it connects. */
static void conn_reset(conn_t *c)
{
    c->res_off = c->res_len = 0;
    c->partial = 0;
    c->to_send = 0;
    c->ts_head = c->ts_count = 0;
    c->hdr_have = 0;
    c->in_payload = false;
    c->msg_op = 0;
    c->msg_len = 0;
    c->ctl_pending = 0;
    c->close_received = false;
    c->failed = false;
}

static int conn_start(conn_t *c, uint64_t now)
{
    const run_t *r = c->w->run;
    const struct sockaddr_storage *sa = &r->addrs[c->port_idx];
    conn_reset(c);
    c->t_start = now;
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return conn_fail(c, ERR_CONNECT, errno, "socket");
    c->fd = fd;
    /* We batch our own writes: Nagle would only hold back the last frame of a batch. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)sa, r->addr_lens[c->port_idx]) == 0) {
        if (conn_watch(c, EV_IN, EPOLL_CTL_ADD) < 0)
            return conn_fail(c, ERR_CONNECT, errno, "epoll_ctl");
        return conn_connected(c);
    }
    if (errno != EINPROGRESS)
        return conn_fail(c, ERR_CONNECT, errno, "connect");
    conn_set_state(c, CS_CONNECTING);
    c->deadline = now + SETUP_TIMEOUT_NS;
    if (conn_watch(c, EPOLLOUT | EPOLLET, EPOLL_CTL_ADD) < 0)
        return conn_fail(c, ERR_CONNECT, errno, "epoll_ctl");
    return 0;
}

static int conn_on_connect(conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err != 0)
        return conn_fail(c, ERR_CONNECT, err, "connect");
    if (conn_watch(c, EV_IN, EPOLL_CTL_MOD) < 0)
        return conn_fail(c, ERR_CONNECT, errno, "epoll_ctl");
    return conn_connected(c);
}

/* ---------------------------------------------------------------------------------------
 * Input: the 101, then the server's frames, parsed in place.
 * ------------------------------------------------------------------------------------- */

static int conn_input(conn_t *c, const uint8_t *p, size_t len, uint64_t now);

/* An echo arrived complete at time now: time it, and let the next message go. */
static int on_echo(conn_t *c, uint64_t now)
{
    worker_t *w = c->w;
    if (c->ts_count == 0)
        return conn_fail(c, ERR_ECHO, 0, "a message that was not sent");
    uint64_t sent = c->ts[c->ts_head];
    c->ts_head = (c->ts_head + 1) & c->ts_mask;
    c->ts_count--;
    if (w->run->opt.mode == MODE_CHURN)
        return conn_close_begin(c, now);
    if (now >= w->t_measure && now < w->stop_ns) {
        hist_record(&w->hist, now - sent);
        w->st.messages++;
        w->st.bytes += w->run->opt.size;
    }
    if (!w->stopping && now < w->stop_ns) {
        c->to_send++;
        return 0;
    }
    if (c->ts_count == 0 && c->res_len == 0 && c->state == CS_OPEN)
        return conn_close_begin(c, now);
    return 0;
}

static bool header_is(const char *name, size_t nlen, const char *want)
{
    return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

/* True when a comma-separated header value holds token (case-insensitive). */
static bool has_token(const char *v, size_t vlen, const char *token)
{
    size_t tlen = strlen(token);
    const char *end = v + vlen;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *s = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tlen && strncasecmp(s, token, tlen) == 0)
            return true;
    }
    return false;
}

static const char *find_crlf(const char *p, const char *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

/* Checks the server's answer to the upgrade (RFC 6455 §4.1, the client's checks). head is
 * the status line to the blank line included. Returns NULL, or why it is refused. */
static const char *hs_check(const char *head, size_t len, const char *accept, char *why, size_t cap)
{
    const char *end = head + len, *eol = find_crlf(head, end);
    size_t l0 = (size_t)(eol - head);
    if (l0 < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0 || (l0 > 12 && head[12] != ' ')) {
        int shown = l0 > 80 ? 80 : (int)l0;
        snprintf(why, cap, "upgrade refused: %.*s", shown, head);
        for (char *q = why; *q; q++)
            if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
                *q = '.';
        return why;
    }
    bool upgrade = false, connection = false, accept_ok = false;
    for (const char *line = eol + 2; line < end - 2;) {
        const char *e = find_crlf(line, end);
        const char *colon = memchr(line, ':', (size_t)(e - line));
        if (colon == NULL)
            return "malformed header line in the 101";
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        size_t vlen = (size_t)(e - v);
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (header_is(line, nlen, "Upgrade"))
            upgrade = has_token(v, vlen, "websocket");
        else if (header_is(line, nlen, "Connection"))
            connection = has_token(v, vlen, "upgrade");
        else if (header_is(line, nlen, "Sec-WebSocket-Accept"))
            accept_ok = vlen == WS_ACCEPT_LEN && memcmp(v, accept, WS_ACCEPT_LEN) == 0;
        else if (header_is(line, nlen, "Sec-WebSocket-Extensions") ||
                 header_is(line, nlen, "Sec-WebSocket-Protocol"))
            return "the 101 selects an extension or subprotocol that was not offered";
        line = e + 2;
    }
    if (!upgrade || !connection)
        return "the 101 lacks Upgrade: websocket or Connection: upgrade";
    if (!accept_ok)
        return "wrong or missing Sec-WebSocket-Accept";
    return NULL;
}

static int hs_input(conn_t *c, const uint8_t *p, size_t len, uint64_t now)
{
    handshake_t *hs = c->hs;
    size_t before = hs->len;
    size_t take = len < HS_MAX - before ? len : HS_MAX - before;
    memcpy(hs->buf + before, p, take);
    hs->len += take;
    const char *end = NULL;
    for (size_t i = before > 3 ? before - 3 : 0; i + 4 <= hs->len && end == NULL; i++)
        if (memcmp(hs->buf + i, "\r\n\r\n", 4) == 0)
            end = hs->buf + i + 4;
    if (end == NULL) {
        if (hs->len == HS_MAX)
            return conn_fail(c, ERR_UPGRADE, 0, "the upgrade answer is too long");
        return 0;
    }
    size_t head_len = (size_t)(end - hs->buf);
    char why[128];
    const char *bad = hs_check(hs->buf, head_len, hs->accept, why, sizeof why);
    if (bad != NULL)
        return conn_fail(c, ERR_UPGRADE, 0, bad);
    size_t used = head_len - before; /* bytes of p that belonged to the head */
    if (conn_ready(c) < 0)
        return -1;
    if (used < len)
        return conn_input(c, p + used, len - used, now);
    return 0;
}

/* True when p starts with the echo's expected header: at most 10 bytes, compared inline
 * because a call to memcmp per echo shows in the profile. */
static bool echo_head_at(const run_t *r, const uint8_t *p)
{
    for (size_t i = 0; i < r->echo_head_len; i++)
        if (p[i] != r->echo_head[i])
            return false;
    return true;
}

/* Framed echoes: a big-endian length prefix, then the payload (SPEC P1). */
static int frame_input(conn_t *c, const uint8_t *p, size_t len, uint64_t now)
{
    const run_t *r = c->w->run;
    const size_t pb = r->opt.prefix_bytes, size = r->opt.size;
    while (len > 0) {
        if (!c->in_payload) {
            if (c->hdr_have == 0 && len >= r->echo_flen && echo_head_at(r, p)) {
                /* The common case: a whole echo of the expected length in the buffer. */
                if (memcmp(p + pb, r->payload, size) != 0)
                    return conn_fail(c, ERR_ECHO, 0, "an echo that differs from the message");
                p += r->echo_flen;
                len -= r->echo_flen;
                if (on_echo(c, now) < 0)
                    return -1;
                continue;
            }
            size_t take = pb - c->hdr_have < len ? pb - c->hdr_have : len;
            memcpy(c->hdr + c->hdr_have, p, take);
            c->hdr_have = (uint8_t)(c->hdr_have + take);
            p += take;
            len -= take;
            if (c->hdr_have < pb)
                return 0;
            c->hdr_have = 0;
            if (be_read(c->hdr, pb) != size)
                return conn_fail(c, ERR_ECHO, 0, "an echo of the wrong length");
            c->in_payload = true;
            c->fr_left = size;
            c->msg_len = 0;
        }
        size_t take = c->fr_left < len ? (size_t)c->fr_left : len;
        if (memcmp(p, r->payload + c->msg_len, take) != 0)
            return conn_fail(c, ERR_ECHO, 0, "an echo that differs from the message");
        c->msg_len += take;
        c->fr_left -= take;
        p += take;
        len -= take;
        if (c->fr_left == 0) {
            c->in_payload = false;
            if (on_echo(c, now) < 0)
                return -1;
        }
    }
    return 0;
}

/* RFC 6455 §5.2: header length from its second byte. */
static size_t ws_header_len(uint8_t b1)
{
    unsigned n = b1 & 0x7f;
    return 2u + (n == 126 ? 2u : n == 127 ? 8u : 0u) + (b1 & 0x80 ? 4u : 0u);
}

/* Checks a complete frame header from the server; returns 1, or -1 once failed. */
static int ws_header_check(conn_t *c)
{
    const run_t *r = c->w->run;
    uint8_t b0 = c->hdr[0], b1 = c->hdr[1];
    if (b1 & 0x80) /* RFC 6455 §5.1: a client closes on a masked frame */
        return conn_fail(c, ERR_ECHO, 0, "a masked frame from the server");
    if (b0 & 0x70)
        return conn_fail(c, ERR_ECHO, 0, "RSV bits set without an extension");
    uint64_t n = b1 & 0x7f;
    if (n == 126)
        n = be_read(c->hdr + 2, 2);
    else if (n == 127)
        n = be_read(c->hdr + 2, 8);
    unsigned op = b0 & 0x0f;
    bool fin = (b0 & 0x80) != 0;
    if (op >= 8) {
        /* RFC 6455 §5.5: control frames are not fragmented and carry at most 125 bytes. */
        if (!fin || n > WS_CONTROL_MAX || op > WS_OP_PONG)
            return conn_fail(c, ERR_ECHO, 0, "a bad control frame");
        c->ctl_len = 0;
    } else {
        if (c->close_received)
            return conn_fail(c, ERR_ECHO, 0, "data after the server's close frame");
        if (op == WS_OP_CONT ? c->msg_op == 0 : (c->msg_op != 0 || op > WS_OP_BINARY))
            return conn_fail(c, ERR_ECHO, 0, "a bad fragment sequence or opcode");
        if (op != WS_OP_CONT) {
            if (op != r->opcode)
                return conn_fail(c, ERR_ECHO, 0, "an echo with the wrong opcode");
            c->msg_op = (uint8_t)op;
            c->msg_len = 0;
        }
        if (n > r->opt.size - c->msg_len)
            return conn_fail(c, ERR_ECHO, 0, "an echo longer than the message");
    }
    c->fr_op = (uint8_t)op;
    c->fr_fin = fin;
    c->fr_left = n;
    c->in_payload = true;
    return 1;
}

/* Gathers header bytes; returns 1 (complete, checked), 0 (need more) or -1 (failed). */
static int ws_header(conn_t *c, const uint8_t *p, size_t len, size_t *used)
{
    size_t u = 0;
    for (;;) {
        size_t need = c->hdr_have >= 2 ? ws_header_len(c->hdr[1]) : 2;
        if (c->hdr_have >= need)
            break;
        if (u == len) {
            *used = u;
            return 0;
        }
        size_t take = need - c->hdr_have < len - u ? need - c->hdr_have : len - u;
        memcpy(c->hdr + c->hdr_have, p + u, take);
        c->hdr_have = (uint8_t)(c->hdr_have + take);
        u += take;
    }
    *used = u;
    c->hdr_have = 0;
    return ws_header_check(c);
}

/* The server's close frame (RFC 6455 §5.5.1, §7). */
static int ws_close_in(conn_t *c, uint64_t now)
{
    worker_t *w = c->w;
    if (c->ctl_len == 1 || c->close_received)
        return conn_fail(c, ERR_ECHO, 0, "a bad or second close frame");
    c->close_received = true;
    if (c->state == CS_CLOSING)
        return 0; /* the answer to ours: its EOF follows */
    /* The server started the close: expected of a drain in idle mode, an error otherwise.
     * Either way it gets its close echoed, then it closes TCP first (RFC 6455 §7.1.1). */
    if (w->run->opt.mode != MODE_IDLE)
        conn_note_error(c, ERR_CLOSED, 0, "the server closed the connection");
    c->close_code = c->ctl_len >= 2 ? (uint16_t)be_read(c->ctl, 2) : 0;
    c->ctl_pending |= CTL_CLOSE;
    c->to_send = 0;
    conn_set_state(c, CS_PEER_CLOSING);
    c->deadline = now + CLOSE_TIMEOUT_NS;
    return 0;
}

static int ws_frame_done(conn_t *c, uint64_t now)
{
    c->in_payload = false;
    if (c->fr_op == WS_OP_PING) {
        /* RFC 6455 §5.5.2: answer with the same payload; only the latest ping needs one. */
        if (c->state == CS_OPEN) {
            memcpy(c->pong, c->ctl, c->ctl_len);
            c->pong_len = c->ctl_len;
            c->ctl_pending |= CTL_PONG;
        }
        return 0;
    }
    if (c->fr_op == WS_OP_PONG)
        return 0;
    if (c->fr_op == WS_OP_CLOSE)
        return ws_close_in(c, now);
    if (!c->fr_fin)
        return 0;
    c->msg_op = 0;
    if (c->msg_len != c->w->run->opt.size)
        return conn_fail(c, ERR_ECHO, 0, "an echo shorter than the message");
    return on_echo(c, now);
}

static int ws_input(conn_t *c, const uint8_t *p, size_t len, uint64_t now)
{
    const run_t *r = c->w->run;
    while (len > 0) {
        if (!c->in_payload) {
            if (c->hdr_have == 0 && c->msg_op == 0 && len >= r->echo_flen && echo_head_at(r, p)) {
                /* The common case: a whole unfragmented echo in the buffer. */
                if (memcmp(p + r->echo_head_len, r->payload, r->opt.size) != 0)
                    return conn_fail(c, ERR_ECHO, 0, "an echo that differs from the message");
                p += r->echo_flen;
                len -= r->echo_flen;
                if (on_echo(c, now) < 0)
                    return -1;
                continue;
            }
            size_t used;
            int rc = ws_header(c, p, len, &used);
            if (rc < 0)
                return -1;
            p += used;
            len -= used;
            if (rc == 0)
                return 0;
        }
        size_t take = c->fr_left < len ? (size_t)c->fr_left : len;
        if (c->fr_op >= 8) {
            memcpy(c->ctl + c->ctl_len, p, take);
            c->ctl_len = (uint8_t)(c->ctl_len + take);
        } else if (memcmp(p, r->payload + c->msg_len, take) != 0) {
            return conn_fail(c, ERR_ECHO, 0, "an echo that differs from the message");
        } else {
            c->msg_len += take;
        }
        c->fr_left -= take;
        p += take;
        len -= take;
        if (c->fr_left == 0 && ws_frame_done(c, now) < 0)
            return -1;
    }
    return 0;
}

static int conn_input(conn_t *c, const uint8_t *p, size_t len, uint64_t now)
{
    switch (c->state) {
    case CS_UPGRADING:
        return hs_input(c, p, len, now);
    case CS_OPEN:
    case CS_CLOSING:
    case CS_PEER_CLOSING:
        if (c->w->run->opt.proto == PROTO_WS)
            return ws_input(c, p, len, now);
        return frame_input(c, p, len, now);
    default:
        return 0;
    }
}

/* The server closed TCP. Whether that is a proper end depends on where we are. */
static int conn_eof(conn_t *c, uint64_t now)
{
    worker_t *w = c->w;
    bool ws = w->run->opt.proto == PROTO_WS;
    switch (c->state) {
    case CS_UPGRADING:
        return conn_fail(c, ERR_UPGRADE, 0, "EOF before the 101");
    case CS_OPEN:
        if (!ws && w->run->opt.mode == MODE_IDLE) {
            /* A framed server says goodbye with its FIN (a drain): close our side too. */
            w->st.closed_by_server++;
            return conn_end(c, now, false);
        }
        return conn_fail(c, ERR_CLOSED, 0,
                         ws ? "EOF without a close frame" : "the server closed the connection");
    case CS_CLOSING:
        if (ws && !c->close_received)
            return conn_fail(c, ERR_CLOSED, 0, "EOF without a close frame");
        if (c->in_payload || c->hdr_have > 0 || c->ts_count > 0)
            return conn_fail(c, ERR_ECHO, 0, "EOF with an echo missing");
        return conn_end(c, now, true);
    case CS_PEER_CLOSING:
        if (w->run->opt.mode == MODE_IDLE && !c->failed)
            w->st.closed_by_server++;
        return conn_end(c, now, false);
    default:
        return conn_end(c, now, false);
    }
}

/* Reads everything the socket has, parsing it in place, then sends everything the echoes
 * allowed in one batch. Returns -1 when the connection ended.
 * NOTE: edge-triggered, a short read ends the loop only when epoll did not report the peer's
 * FIN or an error: those may already sit behind the last data (a WebSocket close frame and
 * its FIN usually come together) and no further edge would announce them. */
static int conn_read(conn_t *c, uint32_t events)
{
    worker_t *w = c->w;
    bool to_end = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    for (;;) {
        ssize_t n = recv(c->fd, w->rbuf, RBUF_BYTES, 0);
        if (n > 0) {
            if (conn_input(c, w->rbuf, (size_t)n, now_ns()) < 0)
                return -1;
            if ((size_t)n < RBUF_BYTES && !to_end)
                break;
            continue;
        }
        if (n == 0)
            return conn_eof(c, now_ns());
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        if (errno != EINTR)
            return conn_fail(c, ERR_CLOSED, errno, "recv");
    }
    return conn_flush(c);
}

static void conn_event(conn_t *c, uint32_t events)
{
    if (c->state == CS_CONNECTING) {
        conn_on_connect(c);
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        conn_read(c, events);
    else if (events & EPOLLOUT)
        conn_flush(c);
}

/* ---------------------------------------------------------------------------------------
 * The threads
 * ------------------------------------------------------------------------------------- */

static const char *timeout_what(conn_state_t s)
{
    switch (s) {
    case CS_CONNECTING:
        return "connect timed out";
    case CS_UPGRADING:
        return "no answer to the upgrade in time";
    case CS_OPEN:
        return "echoes still missing after the load";
    default:
        return "the server did not close in time";
    }
}

/* Acts on the deadlines: retries churn slots, fails what timed out. O(connections), but at
 * most every SWEEP_NS, which even at 10,000 connections is noise. */
static void worker_sweep(worker_t *w, uint64_t now)
{
    for (unsigned i = 0; i < w->nconns; i++) {
        conn_t *c = &w->conns[i];
        if (c->deadline == 0 || now < c->deadline)
            continue;
        if (c->state == CS_BACKOFF) {
            c->deadline = 0;
            if (w->stopping)
                conn_set_state(c, CS_DONE);
            else
                conn_start(c, now);
            continue;
        }
        conn_fail(c, ERR_TIMEOUT, 0, timeout_what((conn_state_t)c->state));
    }
}

/* One epoll_wait, bounded by until and the next sweep, and the events it returns. */
static void worker_poll(worker_t *w, uint64_t until)
{
    uint64_t now = now_ns();
    uint64_t wake = until < w->next_sweep ? until : w->next_sweep;
    int timeout = wake <= now ? 0 : (int)((wake - now + NS_PER_MS - 1) / NS_PER_MS);
    struct epoll_event ev[MAX_EVENTS];
    int n = epoll_wait(w->ep, ev, MAX_EVENTS, timeout);
    for (int i = 0; i < n; i++) {
        conn_t *c = &w->conns[(uint32_t)ev[i].data.u64];
        if (c->gen == (uint32_t)(ev[i].data.u64 >> 32) && c->fd >= 0)
            conn_event(c, ev[i].events);
    }
    now = now_ns();
    if (now >= w->next_sweep) {
        worker_sweep(w, now);
        w->next_sweep = now + SWEEP_NS;
    }
}

/* Setup: every connection connects (and upgrades), at most max_pending at a time. */
static void worker_setup(worker_t *w)
{
    for (;;) {
        uint64_t now = now_ns();
        if (atomic_load(&interrupted))
            return;
        while (w->next_start < w->nconns && worker_pending(w) < w->max_pending)
            conn_start(&w->conns[w->next_start++], now);
        if (worker_pending(w) == 0 && w->next_start == w->nconns)
            return;
        worker_poll(w, now + SWEEP_NS);
    }
}

/* An interrupt ends the measured window now, for every thread. */
static void bring_stop_forward(run_t *r, uint64_t now)
{
    uint64_t cur = atomic_load(&r->stop_ns);
    while (now < cur && !atomic_compare_exchange_weak(&r->stop_ns, &cur, now))
        ;
}

static void worker_load(worker_t *w)
{
    run_t *r = w->run;
    w->t_measure = r->t_measure;
    w->stop_ns = atomic_load(&r->stop_ns);
    w->loading = true;
    uint64_t now = now_ns();
    for (unsigned i = 0; i < w->nconns; i++) {
        conn_t *c = &w->conns[i];
        if (c->state != CS_OPEN)
            continue;
        /* A churn slot's first cycle is timed from here: its connect was part of setup. */
        c->t_start = now;
        conn_load_start(c);
    }
    for (;;) {
        now = now_ns();
        if (atomic_load(&interrupted))
            bring_stop_forward(r, now);
        w->stop_ns = atomic_load_explicit(&r->stop_ns, memory_order_relaxed);
        if (now >= w->stop_ns || worker_live(w) == 0)
            break;
        worker_poll(w, w->stop_ns);
    }
    w->load_end = now < w->stop_ns ? now : w->stop_ns;
}

/* What the end of the load means for one connection. */
static void conn_stop(conn_t *c, uint64_t now)
{
    worker_t *w = c->w;
    bench_mode_t mode = w->run->opt.mode;
    switch (c->state) {
    case CS_CONNECTING:
    case CS_UPGRADING:
        if (mode == MODE_CHURN && w->loading) {
            c->deadline = now + CLOSE_TIMEOUT_NS; /* the cycle may finish, in bounded time */
            return;
        }
        /* Setup was cut short (an interrupt, or nothing connected): not the server's fault. */
        conn_drop(c);
        conn_set_state(c, CS_DONE);
        return;
    case CS_OPEN:
        c->to_send = 0;
        c->deadline = now + CLOSE_TIMEOUT_NS;
        if (mode == MODE_IDLE || (mode == MODE_ECHO && c->ts_count == 0 && c->res_len == 0))
            conn_close_begin(c, now);
        return; /* otherwise the last echo (churn: the cycle) starts the close */
    case CS_BACKOFF:
        c->deadline = 0;
        conn_set_state(c, CS_DONE);
        return;
    default:
        return;
    }
}

/* Close: every connection ends properly within the close timeouts; the rest are failed. */
static void worker_close(worker_t *w)
{
    uint64_t now = now_ns();
    w->stopping = true;
    for (unsigned i = 0; i < w->nconns; i++)
        conn_stop(&w->conns[i], now);
    /* Echoes in flight get CLOSE_TIMEOUT_NS, then the close handshake as much again. */
    uint64_t hard = now + 2 * CLOSE_TIMEOUT_NS + 2 * SWEEP_NS;
    while (worker_live(w) > 0 && now < hard) {
        worker_poll(w, hard);
        now = now_ns();
    }
    for (unsigned i = 0; i < w->nconns; i++)
        if (w->conns[i].fd >= 0)
            conn_fail(&w->conns[i], ERR_TIMEOUT, 0, timeout_what(w->conns[i].state));
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    run_t *r = w->run;
    w->next_sweep = now_ns() + SWEEP_NS;
    worker_setup(w);
    pthread_barrier_wait(&r->ready);
    pthread_barrier_wait(&r->go);
    if (!r->abort)
        worker_load(w);
    worker_close(w);
    return NULL;
}

static int worker_init(worker_t *w, run_t *r, unsigned first, unsigned count, unsigned t)
{
    const options_t *o = &r->opt;
    w->run = r;
    w->first_index = first;
    w->nconns = count;
    w->in_state[CS_IDLE] = count;
    w->max_pending = CONNECTING_MAX / o->threads ? CONNECTING_MAX / o->threads : 1;
    w->wcap = r->flen > WBUF_BYTES ? r->flen : WBUF_BYTES;
    w->ep = epoll_create1(EPOLL_CLOEXEC);
    w->conns = calloc(count, sizeof *w->conns);
    w->rbuf = malloc(RBUF_BYTES);
    w->wbuf = malloc(w->wcap);
    uint32_t ring = 1;
    while (ring < o->pipeline)
        ring <<= 1;
    uint64_t *ts = calloc((size_t)count * ring, sizeof *ts);
    if (w->ep < 0 || !w->conns || !w->rbuf || !w->wbuf || !ts) {
        free(ts);
        return -1;
    }
    for (unsigned i = 0; i < count; i++) {
        conn_t *c = &w->conns[i];
        *c = (conn_t){.w = w,
                      .fd = -1,
                      .index = i,
                      .ts = ts + (size_t)i * ring,
                      .ts_mask = ring - 1,
                      .port_idx = (uint16_t)((first + i) % o->nports)};
    }
    if (RAND_bytes((unsigned char *)&w->rng, sizeof w->rng) != 1)
        w->rng = now_ns() ^ ((uint64_t)t << 32);
    w->rng |= 1; /* xorshift must not start at 0 */
    return 0;
}

static void worker_free(worker_t *w)
{
    if (w->conns != NULL) {
        free(w->conns[0].ts);
        for (unsigned i = 0; i < w->nconns; i++) {
            free(w->conns[i].res);
            free(w->conns[i].hs);
        }
    }
    free(w->conns);
    free(w->rbuf);
    free(w->wbuf);
    if (w->ep >= 0)
        close(w->ep);
}

/* ---------------------------------------------------------------------------------------
 * Main: set up, run the threads, report.
 * ------------------------------------------------------------------------------------- */

static int resolve(run_t *r)
{
    const options_t *o = &r->opt;
    bool v6 = strchr(o->host, ':') != NULL;
    snprintf(r->host_header, sizeof r->host_header, v6 ? "[%s]" : "%s", o->host);
    for (unsigned i = 0; i < o->nports; i++) {
        char port[8];
        snprintf(port, sizeof port, "%u", (unsigned)o->ports[i]);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
        struct addrinfo *res;
        int rc = getaddrinfo(o->host, port, &hints, &res);
        if (rc != 0) {
            fprintf(stderr, "adieu-bench: cannot resolve %s: %s\n", o->host, gai_strerror(rc));
            return -1;
        }
        memcpy(&r->addrs[i], res->ai_addr, res->ai_addrlen);
        r->addr_lens[i] = res->ai_addrlen;
        freeaddrinfo(res);
    }
    return 0;
}

/* The payload and the frame shapes of both directions, built once. */
static int build_templates(run_t *r)
{
    const options_t *o = &r->opt;
    r->payload = malloc(o->size ? o->size : 1);
    if (r->payload == NULL)
        return -1;
    for (size_t i = 0; i < o->size; i++)
        r->payload[i] = o->text ? (uint8_t)('a' + i % 26) : (uint8_t)(i * 131 + 7);
    if (o->proto == PROTO_WS) {
        r->opcode = o->text ? WS_OP_TEXT : WS_OP_BINARY;
        r->head_len = ws_head(r->head, r->opcode, o->size, true);
        r->flen = r->head_len + 4 + o->size;
        r->echo_head_len = ws_head(r->echo_head, r->opcode, o->size, false);
        r->echo_flen = r->echo_head_len + o->size;
        return 0;
    }
    r->head_len = r->echo_head_len = o->prefix_bytes;
    be_write(r->head, o->size, o->prefix_bytes);
    memcpy(r->echo_head, r->head, r->head_len);
    r->flen = r->echo_flen = o->prefix_bytes + o->size;
    size_t fit = WBUF_BYTES / r->flen;
    r->tpl_frames = (unsigned)(fit < 1 ? 1 : fit < o->pipeline ? fit : o->pipeline);
    if (r->tpl_frames == 0)
        r->tpl_frames = 1;
    r->tpl = malloc(r->tpl_frames * r->flen);
    if (r->tpl == NULL)
        return -1;
    for (unsigned i = 0; i < r->tpl_frames; i++) {
        memcpy(r->tpl + i * r->flen, r->head, r->head_len);
        memcpy(r->tpl + i * r->flen + r->head_len, r->payload, o->size);
    }
    return 0;
}

/* 10,000 idle connections need as many descriptors: take the hard limit. */
static void raise_nofile(unsigned connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)connections + 32)
        fprintf(stderr,
                "adieu-bench: warning: the open-file limit (%llu) is below "
                "--connections %u; the rest will fail\n",
                (unsigned long long)rl.rlim_cur, connections);
}

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&interrupted, 1);
}

/* SIGINT/SIGTERM end the run early, properly; a second one kills (SA_RESETHAND). */
static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = SIG_IGN};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

typedef struct {
    stats_t st;
    hist_t hist;
    double duration_s;
    const char *first_err;
} result_t;

static void merge_results(worker_t *ws, unsigned n, const run_t *r, result_t *out)
{
    uint64_t end = 0;
    for (unsigned t = 0; t < n; t++) {
        const stats_t *s = &ws[t].st;
        out->st.messages += s->messages;
        out->st.bytes += s->bytes;
        out->st.opened += s->opened;
        out->st.closed_by_server += s->closed_by_server;
        out->st.errors += s->errors;
        for (unsigned k = 0; k < ERR_COUNT; k++)
            out->st.err_kind[k] += s->err_kind[k];
        hist_merge(&out->hist, &ws[t].hist);
        if (ws[t].load_end > end)
            end = ws[t].load_end;
        if (out->first_err == NULL && ws[t].first_err[0] != '\0')
            out->first_err = ws[t].first_err;
    }
    out->duration_s = end > r->t_measure ? (double)(end - r->t_measure) / 1e9 : 0;
}

static const char *proto_name(proto_t p)
{
    return p == PROTO_WS ? "ws" : "frame";
}

static void print_json(const run_t *r, const result_t *res)
{
    const options_t *o = &r->opt;
    double d = res->duration_s;
    uint64_t msgs = o->mode == MODE_IDLE ? res->st.opened : res->st.messages;
    printf("{\"protocol\": \"%s\", \"connections\": %u, \"size\": %zu, \"pipeline\": %u, "
           "\"duration_s\": %.6f, \"messages\": %llu, \"messages_per_s\": %.3f, "
           "\"mbytes_per_s\": %.6f, \"latency_us\": {\"p50\": %.3f, \"p99\": %.3f, "
           "\"p999\": %.3f, \"max\": %.3f}, \"errors\": %llu}\n",
           proto_name(o->proto), o->connections, o->size, o->pipeline, d, (unsigned long long)msgs,
           d > 0 ? (double)msgs / d : 0.0, d > 0 ? (double)res->st.bytes / d / 1e6 : 0.0,
           hist_percentile_us(&res->hist, 50), hist_percentile_us(&res->hist, 99),
           hist_percentile_us(&res->hist, 99.9), (double)res->hist.max / 1e3,
           (unsigned long long)res->st.errors);
}

static void print_table(const run_t *r, const result_t *res)
{
    static const char *const modes[] = {"echo", "churn", "idle"};
    static const char *const what[] = {"", " (connections completed)", " (connections opened)"};
    const options_t *o = &r->opt;
    double d = res->duration_s;
    uint64_t msgs = o->mode == MODE_IDLE ? res->st.opened : res->st.messages;
    printf("protocol        %s (%s, %s)\n", proto_name(o->proto), modes[o->mode],
           o->proto == PROTO_WS ? (o->text ? "text" : "binary")
                                : (o->prefix_bytes == 2 ? "2-byte prefix" : "4-byte prefix"));
    printf("connections     %u (%u thread%s)\n", o->connections, o->threads,
           o->threads == 1 ? "" : "s");
    printf("size            %zu B\n", o->size);
    printf("pipeline        %u\n", o->pipeline);
    printf("duration        %.3f s\n", d);
    printf("messages        %llu%s\n", (unsigned long long)msgs, what[o->mode]);
    printf("messages/s      %.1f\n", d > 0 ? (double)msgs / d : 0.0);
    printf("MB/s            %.3f (payload received)\n",
           d > 0 ? (double)res->st.bytes / d / 1e6 : 0.0);
    printf("latency p50     %.1f us\n", hist_percentile_us(&res->hist, 50));
    printf("latency p99     %.1f us\n", hist_percentile_us(&res->hist, 99));
    printf("latency p99.9   %.1f us\n", hist_percentile_us(&res->hist, 99.9));
    printf("latency max     %.1f us\n", (double)res->hist.max / 1e3);
    if (o->mode == MODE_IDLE) {
        printf("opened          %llu\n", (unsigned long long)res->st.opened);
        printf("closed by server %llu\n", (unsigned long long)res->st.closed_by_server);
    }
    printf("errors          %llu", (unsigned long long)res->st.errors);
    const char *sep = " (";
    for (unsigned k = 0; k < ERR_COUNT; k++) {
        if (res->st.err_kind[k] > 0) {
            printf("%s%s %llu", sep, err_names[k], (unsigned long long)res->st.err_kind[k]);
            sep = ", ";
        }
    }
    printf("%s\n", sep[0] == ',' ? ")" : "");
}

/* Runs the threads through the three phases; returns the number that connected. */
static uint64_t run_threads(run_t *r, worker_t *ws)
{
    const options_t *o = &r->opt;
    pthread_barrier_init(&r->ready, NULL, o->threads + 1);
    pthread_barrier_init(&r->go, NULL, o->threads + 1);
    for (unsigned t = 0; t < o->threads; t++)
        pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]);
    pthread_barrier_wait(&r->ready);
    uint64_t opened = 0;
    for (unsigned t = 0; t < o->threads; t++)
        opened += ws[t].st.opened;
    r->abort = opened == 0;
    uint64_t t0 = now_ns();
    /* idle holds the connections for --duration; warming up would only lengthen that. */
    double warmup = o->mode == MODE_IDLE ? 0 : o->warmup_s;
    r->t_measure = t0 + (uint64_t)(warmup * 1e9);
    atomic_store(&r->stop_ns, r->t_measure + (uint64_t)(o->duration_s * 1e9));
    if (o->mode == MODE_IDLE && !r->abort)
        fprintf(stderr, "adieu-bench: idle: %llu connections open, holding for %.3f s\n",
                (unsigned long long)opened, o->duration_s);
    pthread_barrier_wait(&r->go);
    for (unsigned t = 0; t < o->threads; t++)
        pthread_join(ws[t].thread, NULL);
    pthread_barrier_destroy(&r->ready);
    pthread_barrier_destroy(&r->go);
    return opened;
}

static int report(const run_t *r, worker_t *ws, uint64_t opened)
{
    result_t *res = calloc(1, sizeof *res);
    if (res == NULL)
        return RC_NO_CONNECT;
    merge_results(ws, r->opt.threads, r, res);
    if (opened == 0) {
        fprintf(stderr, "adieu-bench: cannot connect to %s\n",
                res->first_err ? res->first_err : r->opt.host);
        free(res);
        return RC_NO_CONNECT;
    }
    if (r->opt.json)
        print_json(r, res);
    else
        print_table(r, res);
    if (r->opt.mode == MODE_IDLE && r->opt.json)
        fprintf(stderr, "adieu-bench: idle: opened=%llu closed_by_server=%llu\n",
                (unsigned long long)res->st.opened, (unsigned long long)res->st.closed_by_server);
    if (res->st.errors > 0)
        fprintf(stderr, "adieu-bench: %llu error%s; the first: %s\n",
                (unsigned long long)res->st.errors, res->st.errors == 1 ? "" : "s", res->first_err);
    free(res);
    return RC_DONE;
}

int main(int argc, char **argv)
{
    static run_t run;
    int rc = parse_args(argc, argv, &run.opt);
    if (rc == 1) {
        fputs(usage_text, stdout);
        return RC_DONE;
    }
    if (rc != 0)
        return RC_USAGE;
    const options_t *o = &run.opt;
    raise_nofile(o->connections);
    install_signals();
    if (resolve(&run) < 0)
        return RC_NO_CONNECT;
    worker_t *ws = calloc(o->threads, sizeof *ws);
    if (ws == NULL || build_templates(&run) < 0) {
        fputs("adieu-bench: out of memory\n", stderr);
        return RC_NO_CONNECT;
    }
    for (unsigned t = 0; t < o->threads; t++)
        ws[t].ep = -1;
    rc = RC_DONE;
    for (unsigned t = 0; t < o->threads && rc == RC_DONE; t++) {
        unsigned first = (unsigned)((uint64_t)o->connections * t / o->threads);
        unsigned end = (unsigned)((uint64_t)o->connections * (t + 1) / o->threads);
        if (worker_init(&ws[t], &run, first, end - first, t) < 0) {
            fputs("adieu-bench: out of memory or descriptors\n", stderr);
            rc = RC_NO_CONNECT;
        }
    }
    if (rc == RC_DONE)
        rc = report(&run, ws, run_threads(&run, ws));
    for (unsigned t = 0; t < o->threads; t++)
        worker_free(&ws[t]);
    free(ws);
    free(run.payload);
    free(run.tpl);
    return rc;
}
