/*
 * sim_statement.c — POST /_sim/statement: the supplier's statement of its
 * orders in a period, as the CSV a supplier exports for reconciliation
 * (issue 11). On demand it carries one line of every mismatch kind perkhub's
 * reconciliation tells apart (README.md, "POST /_sim/statement").
 */
#include "supsim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void put_line(char **buf, size_t *len, size_t *cap, const char *ref, const char *order_no,
                     long long fen, long long unix_s, const char *status)
{
    char when[32], line[512];
    time_t t = (time_t)unix_s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int n = snprintf(line, sizeof line, "%s,%s,%lld.%02lld,%s,%s\n", ref, order_no, fen / 100,
                     fen % 100, when, status);
    if (n <= 0 || (size_t)n >= sizeof line)
        return;
    if (*len + (size_t)n + 1 > *cap) {
        size_t c = (*cap + (size_t)n + 1) * 2;
        char *g = realloc(*buf, c);
        if (!g)
            return;
        *buf = g;
        *cap = c;
    }
    memcpy(*buf + *len, line, (size_t)n + 1);
    *len += (size_t)n;
}

void sim_statement_post(sim *s, const sim_request *rq, sim_reply *out)
{
    json_t *d = json_loadb(rq->body ? rq->body : "", rq->len, 0, NULL);
    const char *proto = json_string_value(json_object_get(d, "protocol"));
    json_t *jf = json_object_get(d, "from"), *jt = json_object_get(d, "to");
    int mism = json_is_true(json_object_get(d, "mismatches"));
    if (!proto || (strcmp(proto, "gateway") && strcmp(proto, "rewards")) || !json_is_integer(jf) ||
        !json_is_integer(jt)) {
        json_decref(d);
        sim_reply_json(out, 400,
                       json_pack("{s:s}", "error",
                                 "expected {protocol: gateway|rewards, from: unix s, to: unix s"
                                 "[, mismatches: true]}"));
        return;
    }
    sim_proto want = !strcmp(proto, "gateway") ? SIM_GATEWAY : SIM_REWARDS;
    long long from = json_integer_value(jf), to = json_integer_value(jt);
    json_decref(d);

    size_t len = 0, cap = 256;
    char *buf = malloc(cap);
    if (!buf) {
        sim_reply_json(out, 500, json_pack("{s:s}", "error", "out of memory"));
        return;
    }
    len = (size_t)snprintf(buf, cap, "our_ref,order_no,amount,paid_at,status\n");
    int succeeded = 0, failed = 0;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->norders; i++) {
        sim_order *o = s->orders[i];
        sim_order_settle_locked(s, o);
        if (o->proto != want || o->created_unix < from || o->created_unix >= to ||
            o->state == SIM_PROCESSING)
            continue;
        long long fen = o->amount_fen;
        if (o->state == SIM_FAILED) {
            /* mismatch: we charged for an order that failed (charged_not_succeeded) */
            if (mism && failed++ == 0)
                put_line(&buf, &len, &cap, o->ref, o->order_id, fen, o->created_unix, "SUCCESS");
            else
                put_line(&buf, &len, &cap, o->ref, o->order_id, 0, o->created_unix, "FAILED");
            continue;
        }
        int k = succeeded++;
        if (mism && k == 1) /* mismatch: a success not billed (not_billed) */
            continue;
        if (mism && k == 0) /* mismatch: another amount (amount_mismatch) */
            fen += 100;
        put_line(&buf, &len, &cap, o->ref, o->order_id, fen, o->created_unix, "SUCCESS");
        if (mism && k == 2) /* mismatch: billed twice (duplicate) */
            put_line(&buf, &len, &cap, o->ref, o->order_id, fen, o->created_unix, "SUCCESS");
    }
    pthread_mutex_unlock(&s->mu);
    if (mism) /* mismatch: a line about no order of the client's (unknown_ref) */
        put_line(&buf, &len, &cap, "not-an-order-of-yours", "X0", 100, from, "SUCCESS");
    sim_reply_text(out, 200, "text/csv", buf);
    free(buf);
}
