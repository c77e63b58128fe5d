/*
 * api_audit.c — the audit trail over HTTP: marking an ops request's command
 * with who did it (ph_req_audit), and reading the trail (GET /v1/audit).
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http/api.h"
#include "base/util.h"
#include "crypto/wipe_alloc.h"

/* What ph_req_audit keeps for the request's life. */
struct ph_req_audit {
    ph_audit a;
    char peer[PH_AUDIT_PEER_MAX + 1];
    char *what; /* json_dumps: ph_json_free */
};

/* Refused by the writer (no action): the record when there was no memory for
 * one, so the action fails instead of going unaudited. Immutable. */
static const ph_audit audit_oom = {.action = NULL};

/* The peer's address as text into buf, or NULL (an offline request comes
 * from this process and has none). */
static const char *req_peer(ph_req *r, char *buf, size_t len)
{
    if (!r->conn)
        return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;
    const void *addr = NULL;
    if (sa && sa->sa_family == AF_INET)
        addr = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa && sa->sa_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (!addr || !inet_ntop(sa->sa_family, addr, buf, (socklen_t)len))
        return NULL;
    return buf;
}

void ph_req_audit_free(struct ph_req_audit *a)
{
    if (!a)
        return;
    ph_json_free(a->what);
    free(a);
}

const ph_audit *ph_req_audit(ph_req *r, ph_cmd *cmd, const char *action, json_t *what)
{
    ph_req_audit_free(r->audit);
    struct ph_req_audit *a = r->audit = calloc(1, sizeof *a);
    if (a) {
        /* NULL (no JSON text) is refused by the writer as audit.what: never {} */
        a->what = what ? json_dumps(what, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        a->a = (ph_audit){.action = action,
                          .client = r->client ? r->client->name : NULL,
                          .peer = req_peer(r, a->peer, sizeof a->peer),
                          .request_id = r->reqid,
                          .what = a->what ? a->what : ""};
    }
    json_decref(what);
    const ph_audit *rec = a ? &a->a : &audit_oom;
    if (cmd)
        cmd->audit = rec;
    return rec;
}

/* A time filter: an RFC 3339 instant with its time of day (a bare date would
 * mean the end of that day in China time, ph_time_parse, a surprise for
 * `from`). 0, or -1 with the 400 set. */
static int time_arg(ph_req *r, const char *name, int64_t *ms)
{
    const char *v = ph_req_query(r, name);
    *ms = 0;
    if (!v)
        return 0;
    if (!strchr(v, 'T') || ph_time_parse(v, strlen(v), ms) || *ms <= 0)
        return ph_req_error(r, 400, "invalid_request",
                            "%s: expected an RFC 3339 time such as 2026-12-06T08:00:00Z", name),
               -1;
    return 0;
}

/* [a-z0-9_.]: the action names our code writes. */
static int action_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PH_AUDIT_ACTION_MAX)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.") == n;
}

int ph_api_audit(ph_req *r)
{
    ph_audit_filter f = {.client = ph_req_query(r, "client"), .action = ph_req_query(r, "action")};
    uint64_t after = 0, limit = 100;
    if (ph_req_page(r, &after, &limit, 1000))
        return PH_REQ_DONE;
    if (time_arg(r, "from", &f.from) || time_arg(r, "to", &f.to))
        return PH_REQ_DONE;
    if (f.from && f.to && f.to < f.from)
        return ph_req_error(r, 400, "invalid_request", "to: before from");
    if (f.client && !ph_ident_valid(f.client, PH_SKU_MAX))
        return ph_req_error(r, 400, "invalid_request", "client: expected a client name");
    if (f.action && !action_valid(f.action))
        return ph_req_error(r, 400, "invalid_request",
                            "action: expected an action name such as batch.void");
    char **list;
    size_t n;
    uint64_t next;
    int more;
    ph_err err = {0};
    int rc = ph_store_audit_list(r->env->store, &f, after, limit, 0, &list, &n, &next, &more, &err);
    if (rc)
        return ph_req_fail(r, rc, &err);
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *rec = json_loads(list[i], 0, NULL);
        if (rec)
            json_array_append_new(arr, rec);
    }
    ph_store_event_list_free(list, n);
    return ph_req_json(
        r, 200,
        json_pack("{s:o,s:I,s:b}", "audit", arr, "next_after", (json_int_t)next, "more", more));
}
