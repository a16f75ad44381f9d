/* SPDX-License-Identifier: MIT */
/*
 * A counting allocator for benchmark runs (issue 5: "no allocation per message on the
 * steady-state path, proven with a counting allocator hook"). Preloaded into any server
 * (LD_PRELOAD=build/bench/libadieu-alloc-count.so), it counts every malloc, calloc, realloc,
 * posix_memalign, aligned_alloc and memalign of the whole process (libc, libuv, adieu and the
 * application alike), and on SIGUSR2 writes the running total as one line,
 * "allocations=N\n", to the file named by ADIEU_ALLOC_COUNT_FILE (appended; default
 * stderr). bench/run signals before and after a measured phase and divides the difference
 * by the messages echoed in between.
 *
 * The counter is a relaxed atomic: libuv's thread pool may allocate from other threads. The
 * signal handler only loads it, formats digits by hand and calls write(2): all
 * async-signal-safe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_memalign(size_t align, size_t n);
extern void __libc_free(void *p);
void *memalign(size_t align, size_t n); /* <malloc.h>'s, declared here to keep to libc */

static atomic_ulong allocations;
static int out_fd = 2;

static void count(void)
{
    atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
}

void *malloc(size_t n)
{
    count();
    return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
    count();
    return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
    count();
    return __libc_realloc(p, n);
}

void free(void *p)
{
    __libc_free(p);
}

void *memalign(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
    count();
    return __libc_memalign(align, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
    count();
    if (align < sizeof(void *) || (align & (align - 1)) != 0)
        return EINVAL;
    void *p = __libc_memalign(align, n);
    if (p == NULL)
        return ENOMEM;
    *out = p;
    return 0;
}

static void report(int sig)
{
    (void)sig;
    int saved = errno;
    char line[40] = "allocations=";
    char digits[24];
    size_t nd = 0;
    unsigned long v = atomic_load_explicit(&allocations, memory_order_relaxed);
    do {
        digits[nd++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    size_t len = strlen(line);
    while (nd > 0)
        line[len++] = digits[--nd];
    line[len++] = '\n';
    ssize_t w = write(out_fd, line, len);
    (void)w;
    errno = saved;
}

__attribute__((constructor)) static void alloc_count_init(void)
{
    const char *path = getenv("ADIEU_ALLOC_COUNT_FILE");
    if (path != NULL && path[0] != '\0') {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0)
            out_fd = fd;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = report;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
}
