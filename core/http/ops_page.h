/*
 * ops_page.h — the ops page (web/ops.html) as compiled into the binary, and the
 * Content-Security-Policy that lets exactly its own inline script and style
 * run. Both generated at build time by web/embed.cmake from web/ops.html (the
 * policy carries the SHA-256 of the page's one <script> and one <style>), so
 * the page and its policy cannot drift apart.
 *
 * Ownership: static, read-only data; any thread.
 */
#ifndef PH_OPS_PAGE_H
#define PH_OPS_PAGE_H

#include <stddef.h>

extern const unsigned char ph_ops_page_html[]; /* the page's bytes, then a NUL */
extern const size_t ph_ops_page_len;           /* bytes of the page, without the NUL */
extern const char ph_ops_page_csp[];           /* the Content-Security-Policy value */

#endif
