/* SPDX-License-Identifier: MIT */
/*
 * replay: runs one fuzz harness's LLVMFuzzerTestOneInput() over saved inputs, without
 * libFuzzer, so that any compiler can build it and every `make test` replays the corpora
 * (ctest label `fuzz`, one test per harness).
 *
 *     replay_<core> PATH...
 *
 * Each PATH is a file or a directory, whose regular files are run in name order (not
 * recursively). Exits 0 when every input ran, 1 when a path is unreadable or holds no input
 * (a corpus that went missing must not pass as an empty one). A harness that finds a broken
 * invariant aborts, naming it.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Reads the whole file at path into a new buffer of exactly its size. */
static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t n = 0;
    size_t cap = 0;
    for (;;) {
        if (n == cap) {
            cap = cap == 0 ? 4096 : cap * 2;
            uint8_t *grown = realloc(buf, cap);
            if (grown == NULL) {
                fprintf(stderr, "replay: %s: out of memory\n", path);
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            break;
        }
    }
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        fprintf(stderr, "replay: %s: read error\n", path);
        free(buf);
        return NULL;
    }
    /* An exact-size copy, so that a harness reading past its input is caught under ASan
     * here as it would be under libFuzzer. */
    uint8_t *exact = fuzz_dup(buf, n);
    free(buf);
    *len = n;
    return exact;
}

static int run_file(const char *path)
{
    size_t len = 0;
    uint8_t *data = read_file(path, &len);
    if (data == NULL) {
        return -1;
    }
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

static int select_all(const struct dirent *e)
{
    return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

/* Runs every regular file of the directory dir; returns how many ran, or -1. */
static long run_dir(const char *dir)
{
    struct dirent **names = NULL;
    int count = scandir(dir, &names, select_all, alphasort);
    if (count < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    long ran = 0;
    int rc = 0;
    for (int i = 0; i < count; i++) {
        size_t len = strlen(dir) + 1 + strlen(names[i]->d_name) + 1;
        char *path = fuzz_alloc(len);
        snprintf(path, len, "%s/%s", dir, names[i]->d_name);
        struct stat st;
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(path);
            ran += rc == 0;
        }
        free(path);
        free(names[i]);
    }
    free(names);
    return rc == 0 ? ran : -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    long total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        long ran = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : (run_file(argv[i]) == 0 ? 1 : -1);
        if (ran <= 0) {
            if (ran == 0) {
                fprintf(stderr, "replay: %s: no input to run\n", argv[i]);
            }
            return 1;
        }
        printf("replay: %ld inputs from %s\n", ran, argv[i]);
        total += ran;
    }
    printf("replay: %ld inputs ran, every invariant held\n", total);
    return 0;
}
