/*
 * wipe_alloc.h — wiping memory, and an allocator whose blocks are wiped when
 * they are freed, for a library that keeps our secrets in memory of its own.
 *
 * jansson holds every string it parses or prints (request and response bodies,
 * codes, accounts, tokens) in blocks it allocates and frees itself; freed
 * unwiped, they stay in the heap and in a core dump. ph_json_alloc_install()
 * hands jansson ph_wipe_malloc and ph_wipe_free: every block it frees is
 * zeroed first, the memory json_dumps returns included.
 *
 * Consequence for every caller: what jansson returns (json_dumps) is freed
 * with ph_json_free, never free(): the pointer is a header's length past what
 * malloc returned, so free() on it is an invalid free (glibc aborts, ASan and
 * valgrind report it).
 * ph_json_free is right whether the allocator is installed or not.
 *
 * Self-contained (wipe_alloc.c: libc only; json_alloc.c: jansson's side), so
 * perkctl compiles both files in as well.
 * Thread-safe: no state; ph_json_alloc_install sets jansson's process-wide
 * functions and must run before any jansson call and any thread (the first
 * statement of main).
 */
#ifndef PH_WIPE_ALLOC_H
#define PH_WIPE_ALLOC_H

#include <stddef.h>

/* Zeroes n bytes in a way the compiler cannot drop. NULL or 0 is a no-op. */
void ph_wipe(void *buf, size_t n);

/* malloc with the block's size kept in a header in front of it; the block is
 * aligned for any type (max_align_t), as malloc's. NULL when out of memory.
 * Free it with ph_wipe_free only. */
void *ph_wipe_malloc(size_t size);

/* Wipes the whole block (header included) and frees it. NULL is a no-op. A
 * pointer that ph_wipe_malloc did not return is a bug (asserted). */
void ph_wipe_free(void *p);

/* The size a block was allocated with (its bytes the caller may use). */
size_t ph_wipe_size(const void *p);

/* What ph_wipe_free does, with release(base, len) in place of free(base): base
 * and len are the whole underlying block, already wiped and still allocated;
 * release must free it. For tests, to look at a block after it was wiped
 * without reading freed memory. NULL p is a no-op. */
typedef void (*ph_wipe_release_fn)(void *base, size_t len);
void ph_wipe_free_to(void *p, ph_wipe_release_fn release);

/* Makes ph_wipe_malloc / ph_wipe_free jansson's allocator (json_set_alloc_funcs).
 * Once, at the start of main, before anything else calls jansson: a block
 * allocated before it would be freed through the wrong function. */
void ph_json_alloc_install(void);

/* Frees memory that jansson returned to its caller (json_dumps) with the free
 * function jansson has now, the wiping one in perkhubd and perkctl. NULL is a
 * no-op. */
void ph_json_free(void *p);

#endif
