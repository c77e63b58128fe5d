/*
 * api_callbacks.c — POST or GET /v1/callbacks/{supplier}: a supplier's
 * asynchronous notification, its fields in the body or in the query string
 * (handed to the plugin as perkhub_callback.query). No bearer token: the supplier's plugin checks
 * the signature. What happens next is fulfil's business (callbacks.c): a verified callback that
 * matches one of our attempts triggers a confirming order query and is answered with the body the
 * supplier expects; anything else is refused with a JSON error and changes nothing.
 * With replication, a standby forwards the callback to the leader (below).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http/api.h"
#include "repl/repl.h"
#include "supply/fulfil.h"

/* ---- a callback reaching a standby (replication) ----------------------------
 * Only the leader may act on a callback (its confirming query is supplier I/O,
 * its outcome a write): a standby hands the request as it came to the leader
 * its lease names and relays the answer, so a supplier that calls any node is
 * heard once. Marked with X-Perkhub-Forwarded so it never travels twice; no
 * known leader, or none answering, is 503 (the supplier calls again). */

#define FORWARD_HEADER  "X-Perkhub-Forwarded"
#define FORWARD_TIMEOUT 5L /* seconds: a supplier's callback waits this at most */

typedef struct fwd_buf {
    char *p;
    size_t n;
} fwd_buf;

static size_t fwd_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    fwd_buf *b = arg;
    size_t n = size * nmemb;
    if (b->n + n > (1u << 20))
        return 0; /* a supplier's acknowledgement is a word, not a megabyte */
    char *g = realloc(b->p, b->n + n + 1);
    if (!g)
        return 0;
    memcpy(g + b->n, ptr, n);
    b->p = g;
    b->n += n;
    b->p[b->n] = 0;
    return n;
}

/* The request's headers but those of its transport (curl sets its own). */
static int hop_header(const char *name, size_t len)
{
    static const char *const hop[] = {"Host",   "Content-Length", "Connection", "Transfer-Encoding",
                                      "Expect", "Keep-Alive"};
    for (size_t i = 0; i < sizeof hop / sizeof hop[0]; i++)
        if (strlen(hop[i]) == len && !strncasecmp(name, hop[i], len))
            return 1;
    return 0;
}

static int forward(ph_req *r, const char *leader)
{
    size_t nh;
    char **headers = ph_req_headers(r, &nh);
    char *query = ph_req_query_string(r);
    CURL *c = curl_easy_init();
    char url[1024];
    struct curl_slist *hl = NULL;
    fwd_buf b = {0};
    int ok = headers && query && c &&
             snprintf(url, sizeof url, "%s%s%s%s", leader, r->path, query[0] ? "?" : "", query) <
                 (int)sizeof url;
    for (size_t i = 0; ok && i < nh; i++) { /* "Name: value" lines */
        const char *colon = strchr(headers[i], ':');
        if (colon && !hop_header(headers[i], (size_t)(colon - headers[i])))
            ok = (hl = curl_slist_append(hl, headers[i])) != NULL;
    }
    long status = 0;
    if (ok && (hl = curl_slist_append(hl, FORWARD_HEADER ": 1")) != NULL) {
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, FORWARD_TIMEOUT);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwd_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        if (r->body_len) {
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        }
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    }
    char *ct = NULL;
    if (status && c)
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    /* the supplier gets the leader's word; the content type from a fixed list (static) */
    const char *type = ct && !strncasecmp(ct, "application/json", 16) ? "application/json"
                       : ct && !strncasecmp(ct, "text/xml", 8)        ? "text/xml"
                                                                      : "text/plain; charset=utf-8";
    curl_slist_free_all(hl);
    if (c)
        curl_easy_cleanup(c);
    ph_req_headers_free(headers);
    free(query);
    if (status < 200 || status > 599 || status == 503) {
        free(b.p);
        return ph_req_fail(r, PH_EUNAVAIL,
                           &(ph_err){PH_EUNAVAIL, "replication: this node is a standby and the "
                                                  "leader did not take the callback; call again"});
    }
    if (!b.p && !(b.p = strdup("")))
        return ph_req_fail(r, PH_ENOMEM, NULL);
    return ph_req_text(r, (unsigned)status, b.p, b.n, type);
}

static int send_reply(ph_req *r, ph_callback_reply *cr)
{
    if (cr->error[0]) {
        free(cr->body);
        return ph_req_error(r, cr->status, cr->error, "%s", cr->message);
    }
    /* The supplier expects its own body ("success", "ok"), not our JSON:
     * carried as a JSON string and sent raw by http_api.c. */
    r->raw_content_type = cr->content_type;
    json_t *body = json_string(cr->body ? cr->body : "");
    free(cr->body);
    r->raw_body = 1;
    return ph_req_json(r, cr->status, body);
}

int ph_api_callback(ph_req *r)
{
    if (r->env->repl && ph_repl_role(r->env->repl) != PH_REPL_LEADER) {
        char leader[512];
        ph_repl_leader_url(r->env->repl, leader, sizeof leader);
        if (leader[0] && !ph_req_header(r, FORWARD_HEADER))
            return forward(r, leader);
        return ph_req_fail(r, PH_EUNAVAIL,
                           &(ph_err){PH_EUNAVAIL, "replication: this node is not the leader and "
                                                  "knows of none; call again"});
    }
    size_t nh;
    char **headers = ph_req_headers(r, &nh);
    char *query = ph_req_query_string(r);
    if (!headers || !query) {
        ph_req_headers_free(headers);
        free(query);
        return ph_req_fail(r, PH_ENOMEM, NULL);
    }
    const char *ct = ph_req_header(r, "Content-Type");
    struct perkhub_callback cb = {.method = r->method,
                                  .query = query,
                                  .content_type = ct ? ct : "",
                                  .body = r->body ? r->body : "",
                                  .body_len = r->body_len,
                                  .headers = (const char *const *)headers,
                                  .nheaders = nh};
    ph_callback_reply cr;
    int rc = ph_fulfil_callback(r->env->fulfil, r->seg[0], &cb, &cr);
    ph_req_headers_free(headers);
    free(query);
    if (rc != PH_OK)
        return ph_req_fail(r, rc, NULL);
    return send_reply(r, &cr);
}
