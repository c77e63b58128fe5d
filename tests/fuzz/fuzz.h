/*
 * fuzz.h — what every libFuzzer harness in tests/fuzz shares: the entry points
 * libFuzzer calls, the invariant check that turns a broken property into a crash
 * (with a reproducer saved by libFuzzer), and a cursor that splits one input
 * into the parts a harness needs (a mode byte, then a body).
 *
 * Harnesses hold no state between inputs except what LLVMFuzzerInitialize builds
 * once (a plugin instance, a keyring): libFuzzer's interface is a plain function
 * and gives no context pointer to hang it on.
 */
#ifndef PH_FUZZ_H
#define PH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A property that must hold for every input: when it does not, say which and
 * abort, so libFuzzer keeps the input as a crash reproducer. */
#define FZ_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz invariant broken at %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Reads an input front to back. Reads past the end give 0 / empty parts. */
typedef struct fz_cursor {
    const uint8_t *p;
    size_t left;
} fz_cursor;

static inline unsigned fz_byte(fz_cursor *c)
{
    if (!c->left)
        return 0;
    c->left--;
    return *c->p++;
}

/* The next part up to (not including) the byte sep, or the rest of the input when
 * there is no sep; the cursor moves past the sep. */
static inline const char *fz_part(fz_cursor *c, char sep, size_t *len)
{
    const char *s = (const char *)c->p;
    const uint8_t *at = c->left ? memchr(c->p, (unsigned char)sep, c->left) : NULL;
    size_t n = at ? (size_t)(at - c->p) : c->left;
    *len = n;
    c->p += n + (at != NULL);
    c->left -= n + (at != NULL);
    return s;
}

/* A NUL-terminated heap copy of n bytes at s (the caller frees); aborts when out of
 * memory, which libFuzzer's -rss_limit_mb reports on its own anyway. */
static inline char *fz_strndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d)
        abort();
    if (n)
        memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

#endif
