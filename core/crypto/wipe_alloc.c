/*
 * wipe_alloc.c — wiping, and the allocator that wipes on free (wipe_alloc.h).
 *
 * A block is [header | the caller's bytes]. free() gets no size, so the header
 * keeps it, with a check word (the size mixed with a constant) that tells a
 * block of ours from any other pointer and from one already freed (the header
 * is wiped with the rest). The header is rounded up to max_align_t's alignment
 * so the caller's bytes stay as aligned as malloc's.
 *
 * libc only: jansson's side is json_alloc.c, so that code which only wipes
 * (the plugin test kit's archive, through the host table) links no jansson.
 */
#include "crypto/wipe_alloc.h"

#include <assert.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct wipe_hdr {
    size_t size;  /* the caller's bytes */
    size_t check; /* size ^ WIPE_CHECK */
};

#define WIPE_CHECK ((size_t)0x7068776970656421ull) /* "phwiped!" */
#define WIPE_ALIGN alignof(max_align_t)
#define WIPE_HDR   ((sizeof(struct wipe_hdr) + WIPE_ALIGN - 1) / WIPE_ALIGN * WIPE_ALIGN)

static_assert(WIPE_HDR % alignof(max_align_t) == 0, "the block must stay aligned");
static_assert(WIPE_HDR >= sizeof(struct wipe_hdr), "the header must fit");

void ph_wipe(void *buf, size_t n)
{
    if (buf && n)
        explicit_bzero(buf, n);
}

void *ph_wipe_malloc(size_t size)
{
    if (size > SIZE_MAX - WIPE_HDR)
        return NULL;
    unsigned char *base = malloc(WIPE_HDR + size);
    if (!base)
        return NULL;
    struct wipe_hdr h = {.size = size, .check = size ^ WIPE_CHECK};
    memcpy(base, &h, sizeof h);
    return base + WIPE_HDR;
}

/* The header of p, checked: p must be a live block of ours. */
static struct wipe_hdr header_of(const void *p)
{
    struct wipe_hdr h;
    memcpy(&h, (const unsigned char *)p - WIPE_HDR, sizeof h);
    assert(h.check == (h.size ^ WIPE_CHECK) && "not a live ph_wipe_malloc block");
    return h;
}

size_t ph_wipe_size(const void *p)
{
    return header_of(p).size;
}

void ph_wipe_free_to(void *p, ph_wipe_release_fn release)
{
    if (!p)
        return;
    unsigned char *base = (unsigned char *)p - WIPE_HDR;
    size_t len = WIPE_HDR + header_of(p).size;
    ph_wipe(base, len);
    release(base, len);
}

static void release_free(void *base, size_t len)
{
    (void)len;
    free(base);
}

void ph_wipe_free(void *p)
{
    ph_wipe_free_to(p, release_free);
}
