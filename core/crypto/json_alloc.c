/*
 * json_alloc.c — jansson's side of the wiping allocator (wipe_alloc.h): kept
 * apart from wipe_alloc.c so that what only wipes does not link jansson.
 */
#include "crypto/wipe_alloc.h"

#include <jansson.h>

void ph_json_alloc_install(void)
{
    json_set_alloc_funcs(ph_wipe_malloc, ph_wipe_free);
}

void ph_json_free(void *p)
{
    json_free_t jfree;
    json_get_alloc_funcs(NULL, &jfree);
    if (p)
        jfree(p);
}
