/* SPDX-License-Identifier: MIT */
/* adieu-server: flags and main only (SPEC sections 3 and 4). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "adieu/adieu.h"
#include "apps/apps.h"
#include "io/internal.h"

#define MAX_SUBPROTOCOLS 16

typedef struct {
    const char *ws;
    const char *frame;
    const char *app;
    adieu_config_t cfg;
    uint64_t drain_ms;
    adieu_log_level_t log_level;
    const char *subprotocols[MAX_SUBPROTOCOLS];
    unsigned nsubprotocols;
} options_t;

static const char usage_text[] =
    "usage: adieu-server [options]\n"
    "  --ws HOST:PORT|off            WebSocket + HTTP listener (default 127.0.0.1:9000)\n"
    "  --frame HOST:PORT|off         framed TCP listener (default 127.0.0.1:10999)\n"
    "  --app demo|echo               built-in application (default demo)\n"
    "  --prefix-bytes 2|4            framed length prefix (default 2)\n"
    "  --max-message BYTES           largest message accepted (default 16777216)\n"
    "  --drain-timeout SECONDS       graceful shutdown deadline (default 10)\n"
    "  --idle-timeout SECONDS        close connections silent that long (default 0: off)\n"
    "  --keepalive SECONDS           TCP keep-alive: probe after that much silence, close a\n"
    "                                peer silent twice that long (default 60; 0: off)\n"
    "  --handshake-timeout SECONDS   time for a complete upgrade request (default 10)\n"
    "  --max-header BYTES            HTTP request line + headers (default 8192)\n"
    "  --max-connections N           open connections at once (default 10000)\n"
    "  --subprotocol NAME            WebSocket subprotocol to accept (repeatable)\n"
    "  --log-level debug|info|warn|error   (default info)\n"
    "  --help, --version\n";

static int bad_flag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Prints one line naming the problem, then the usage text; returns exit status 2. */
static int bad_flag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "adieu-server: ");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", usage_text);
    return 2;
}

static int parse_bytes(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > (1ull << 40))
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_seconds(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    if ((*s < '0' || *s > '9') && *s != '.')
        return -1;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0 || v > 1e7)
        return -1;
    *ms = (uint64_t)llround(v * 1000.0);
    return 0;
}

static int parse_addr_flag(const char *v, const char **out)
{
    struct sockaddr_storage ss;
    if (strcmp(v, "off") != 0 && adieu__parse_addr(v, &ss) < 0)
        return -1;
    *out = v;
    return 0;
}

/* Applies one flag with its value. Returns 0, or the exit status for a bad flag. */
static int apply_flag(options_t *o, const char *name, const char *v)
{
    size_t n;
    if (strcmp(name, "--ws") == 0) {
        if (parse_addr_flag(v, &o->ws) < 0)
            return bad_flag("bad address for --ws: %s", v);
    } else if (strcmp(name, "--frame") == 0) {
        if (parse_addr_flag(v, &o->frame) < 0)
            return bad_flag("bad address for --frame: %s", v);
    } else if (strcmp(name, "--app") == 0) {
        if (adieu_app_find(v) == NULL)
            return bad_flag("unknown app: %s (demo or echo)", v);
        o->app = v;
    } else if (strcmp(name, "--prefix-bytes") == 0) {
        if (strcmp(v, "2") != 0 && strcmp(v, "4") != 0)
            return bad_flag("--prefix-bytes must be 2 or 4, not %s", v);
        o->cfg.prefix_bytes = (unsigned)atoi(v);
    } else if (strcmp(name, "--max-message") == 0) {
        if (parse_bytes(v, &o->cfg.max_message) < 0)
            return bad_flag("bad byte count for --max-message: %s", v);
    } else if (strcmp(name, "--max-header") == 0) {
        if (parse_bytes(v, &o->cfg.max_header) < 0 || o->cfg.max_header == 0)
            return bad_flag("bad byte count for --max-header: %s", v);
    } else if (strcmp(name, "--max-connections") == 0) {
        if (parse_bytes(v, &n) < 0 || n == 0 || n > 10000000)
            return bad_flag("bad count for --max-connections: %s", v);
        o->cfg.max_connections = (unsigned)n;
    } else if (strcmp(name, "--drain-timeout") == 0) {
        if (parse_seconds(v, &o->drain_ms) < 0)
            return bad_flag("bad seconds for --drain-timeout: %s", v);
    } else if (strcmp(name, "--keepalive") == 0) {
        if (parse_seconds(v, &o->cfg.keepalive_ms) < 0)
            return bad_flag("bad seconds for --keepalive: %s", v);
    } else if (strcmp(name, "--idle-timeout") == 0) {
        if (parse_seconds(v, &o->cfg.idle_timeout_ms) < 0)
            return bad_flag("bad seconds for --idle-timeout: %s", v);
    } else if (strcmp(name, "--handshake-timeout") == 0) {
        if (parse_seconds(v, &o->cfg.handshake_timeout_ms) < 0)
            return bad_flag("bad seconds for --handshake-timeout: %s", v);
    } else if (strcmp(name, "--subprotocol") == 0) {
        if (*v == '\0' || o->nsubprotocols == MAX_SUBPROTOCOLS)
            return bad_flag("bad or too many --subprotocol: %s", v);
        o->subprotocols[o->nsubprotocols++] = v;
    } else if (strcmp(name, "--log-level") == 0) {
        if (adieu_log_parse_level(v, &o->log_level) < 0)
            return bad_flag("bad --log-level: %s (debug, info, warn, error)", v);
    } else {
        return bad_flag("unknown flag: %s", name);
    }
    return 0;
}

/* Returns -1 to go on, or an exit status. */
static int parse_flags(options_t *o, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("adieu-server %s\n", ADIEU_VERSION_STRING);
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0)
            return bad_flag("unexpected argument: %s", arg);
        char name[64];
        const char *value;
        const char *eq = strchr(arg, '=');
        if (eq != NULL) {
            snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
            value = eq + 1;
        } else {
            snprintf(name, sizeof(name), "%s", arg);
            if (i + 1 >= argc)
                return bad_flag("missing value for %s", arg);
            value = argv[++i];
        }
        int rc = apply_flag(o, name, value);
        if (rc != 0)
            return rc;
    }
    if (strcmp(o->frame, "off") == 0 && strcmp(o->ws, "off") == 0)
        return bad_flag("%s", "both listeners are off: nothing to serve");
    return -1;
}

/* SPEC section 4: the server raises its open-file soft limit to the hard limit. */
static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Closes what is left after a startup failure or a finished run. */
static int teardown(uv_loop_t *loop, adieu_server_t *server, adieu_app_ctx_t *ctx, int status)
{
    if (server != NULL && !adieu_server_done(server)) {
        adieu_server_shutdown(server, 0, NULL, NULL);
        uv_run(loop, UV_RUN_DEFAULT);
    }
    adieu_server_free(server);
    adieu_app_ctx_free(ctx);
    int rc = uv_loop_close(loop);
    if (rc != 0) {
        /* A handle left open is a bug of ours: say which, loudly. */
        adieu_log(ADIEU_LOG_ERROR, "server", "event loop not empty at exit error=%s",
                  adieu_err_name(rc));
        uv_print_all_handles(loop, stderr);
        return status == 0 ? 1 : status;
    }
    return status;
}

int main(int argc, char **argv)
{
    options_t o = {.ws = "127.0.0.1:9000",
                   .frame = "127.0.0.1:10999",
                   .app = "demo",
                   .drain_ms = 10000,
                   .log_level = ADIEU_LOG_INFO};
    adieu_config_init(&o.cfg);
    int rc = parse_flags(&o, argc, argv);
    if (rc >= 0)
        return rc;
    adieu_log_set_level(o.log_level);
    raise_nofile();

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        adieu_log(ADIEU_LOG_ERROR, "server", "cannot create the event loop");
        return 1;
    }
    adieu_app_ctx_t ctx = {0};
    adieu_server_t *server = NULL;
    o.cfg.subprotocols = o.subprotocols;
    o.cfg.num_subprotocols = o.nsubprotocols;
    rc = adieu_server_new(&loop, &o.cfg, &server);
    if (rc < 0) {
        adieu_log(ADIEU_LOG_ERROR, "server", "cannot create the server error=%s",
                  adieu_err_name(rc));
        return teardown(&loop, NULL, &ctx, 1);
    }
    adieu_log(ADIEU_LOG_INFO, "server", "starting version=%s pid=%ld", ADIEU_VERSION_STRING,
              (long)getpid());
    /* Signals are caught before the listening lines are printed: a supervisor that signals
     * as soon as it reads them must get a drain, not the default action. */
    rc = adieu_server_catch_signals(server, o.drain_ms);
    static const struct {
        adieu_proto_t proto;
        const char *name;
    } listeners[] = {{ADIEU_WEBSOCKET, "ws"}, {ADIEU_FRAMED, "frame"}};
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        adieu_proto_t proto = listeners[i].proto;
        const char *addr = proto == ADIEU_WEBSOCKET ? o.ws : o.frame;
        if (strcmp(addr, "off") == 0)
            continue;
        rc = adieu_server_listen(server, proto, addr, adieu_app_find(o.app), &ctx);
        if (rc < 0) {
            adieu_log(ADIEU_LOG_ERROR, "server",
                      "cannot listen proto=%s addr=%s error=%s msg=\"%s\"", listeners[i].name, addr,
                      adieu_err_name(rc), adieu_strerror(rc));
            return teardown(&loop, server, &ctx, 1);
        }
        adieu_log(ADIEU_LOG_INFO, "server", "listening proto=%s addr=%s app=%s", listeners[i].name,
                  adieu__server_listen_addr(server, proto), o.app);
    }
    if (rc < 0) {
        adieu_log(ADIEU_LOG_ERROR, "server", "cannot catch signals error=%s", adieu_err_name(rc));
        return teardown(&loop, server, &ctx, 1);
    }
    int status = adieu_server_run(server, o.drain_ms);
    return teardown(&loop, server, &ctx, status);
}
