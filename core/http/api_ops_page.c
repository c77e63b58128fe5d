/*
 * api_ops_page.c — GET /ops: the ops page, one self-contained HTML document
 * compiled into the binary (web/ops.html, ops_page.h). It holds no data and
 * needs no token: its script reads the public API with the ops token its user
 * types, kept in the page's memory only (docs/operations.md, "The ops page").
 */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "http/ops_page.h"

/* The policy admits the page's own script and style by hash and nothing else:
 * no other script, frame, form target, plugin or image; fetches to this origin
 * only; and Trusted Types, so no string ever reaches innerHTML and its kin (the
 * page writes data with textContent only). The other headers keep the page out
 * of frames (clickjacking), from being sniffed as anything but HTML, and its
 * URL out of Referer headers. Cache-Control: no-store is on every response. */
/* clang-format off */
static const char *const page_headers[] = { /* name, value */
    "Content-Security-Policy",      ph_ops_page_csp,
    "X-Content-Type-Options",       "nosniff",
    "X-Frame-Options",              "DENY",
    "Referrer-Policy",              "no-referrer",
    "Cross-Origin-Opener-Policy",   "same-origin",
    "Cross-Origin-Resource-Policy", "same-origin",
    "Permissions-Policy",           "camera=(), microphone=(), geolocation=(), payment=()",
    NULL,
};
/* clang-format on */

int ph_api_ops_page(ph_req *r)
{
    char *copy = malloc(ph_ops_page_len + 1);
    if (!copy)
        return ph_req_fail(r, PH_ENOMEM, NULL);
    memcpy(copy, ph_ops_page_html, ph_ops_page_len + 1);
    r->headers = page_headers;
    return ph_req_text(r, 200, copy, ph_ops_page_len, "text/html; charset=utf-8");
}
