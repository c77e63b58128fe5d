/*
 * api_callbacks.c — POST or GET /v1/callbacks/{supplier}: a supplier's
 * asynchronous notification, its fields in the body or in the query string
 * (handed to the plugin as perkhub_callback.query). No bearer token: the supplier's plugin checks
 * the signature. What happens next is fulfil's business (callbacks.c): a verified callback that
 * matches one of our attempts triggers a confirming order query and is answered with the body the
 * supplier expects; anything else is refused with a JSON error and changes nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "supply/fulfil.h"

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
