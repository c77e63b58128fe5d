/*
 * sim_form.c — protocol 3, the form-encoded, MD5-signed protocol of the example
 * adapter (plugins/example, docs/sdk.md §0), at POST /form/<recharge|card|query|balance>.
 * A minimal mode: requests and replies are forms signed with
 * sign = MD5(the non-empty fields but sign, sorted, "k=v&k=v", "&key=<key>") in
 * upper-case hex, the key being the gateway's app secret and merchant_id its app
 * key; orders live with the gateway's (same catalog ids, stock, balance and
 * completion; /_sim/truth lists them under "gateway"). No faults, no notify.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "supsim.h"

#define FORM_MAX 24

typedef struct form {
    char *k[FORM_MAX], *v[FORM_MAX];
    size_t n;
} form;

static void form_free(form *f)
{
    for (size_t i = 0; i < f->n; i++)
        free(f->k[i]), free(f->v[i]);
    f->n = 0;
}

static int hexval(char c)
{
    return isdigit((unsigned char)c)    ? c - '0'
           : isxdigit((unsigned char)c) ? (tolower((unsigned char)c) - 'a' + 10)
                                        : -1;
}

/* Form-decodes n bytes into a new string, or NULL (bad escape, %00). */
static char *decode(const char *s, size_t n)
{
    char *o = malloc(n + 1), *w = o;
    for (size_t i = 0; o && i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi | lo) == 0) {
                free(o);
                return NULL;
            }
            *w++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *w++ = s[i] == '+' ? ' ' : s[i];
        }
    }
    if (o)
        *w = '\0';
    return o;
}

/* 0, or -1 for a body that is not a form of at most FORM_MAX fields. */
static int form_parse(const char *body, size_t len, form *f)
{
    f->n = 0;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && body[j] != '&')
            j++;
        const char *eq = memchr(body + i, '=', j - i);
        if (j > i && (!eq || f->n == FORM_MAX))
            return form_free(f), -1;
        if (j > i) {
            f->k[f->n] = decode(body + i, (size_t)(eq - (body + i)));
            f->v[f->n] = decode(eq + 1, (size_t)(body + j - eq - 1));
            f->n++;
            if (!f->k[f->n - 1] || !f->v[f->n - 1])
                return form_free(f), -1;
        }
        i = j + 1;
    }
    return 0;
}

static const char *form_get(const form *f, const char *key)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->k[i], key))
            return f->v[i];
    return NULL;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The signature of pairs k[i]=v[i] (sign excepted) into out (33 bytes). */
static void form_sign(const char *key, char *const *k, char *const *v, size_t n, char out[33])
{
    char *pairs[FORM_MAX * 2];
    size_t m = 0, len = 0;
    for (size_t i = 0; i < n; i++)
        if (*v[i] && strcmp(k[i], "sign")) {
            pairs[2 * m] = k[i], pairs[2 * m + 1] = v[i];
            len += strlen(k[i]) + strlen(v[i]) + 2;
            m++;
        }
    qsort(pairs, m, 2 * sizeof *pairs, by_key);
    char *text = malloc(len + strlen(key) + 8), *w = text;
    for (size_t i = 0; text && i < m; i++)
        w += sprintf(w, "%s%s=%s", i ? "&" : "", pairs[2 * i], pairs[2 * i + 1]);
    if (text)
        sprintf(w, "&key=%s", key);
    sim_md5_hex(text ? text : "", text ? strlen(text) : 0, out);
    for (char *p = out; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    free(text);
}

/* A signed form reply of the NULL-ended pairs kv. */
static void form_reply(sim *s, sim_reply *out, const char **kv)
{
    size_t n = 0;
    while (kv[2 * n] && n < FORM_MAX)
        n++;
    char sign[33];
    char *k[FORM_MAX] = {0}, *v[FORM_MAX] = {0};
    for (size_t i = 0; i < n; i++)
        k[i] = (char *)kv[2 * i], v[i] = (char *)kv[2 * i + 1];
    form_sign(s->cfg.gw_secret, k, v, n, sign);
    char body[2048];
    size_t len = 0;
    for (size_t i = 0; i <= n && len < sizeof body; i++) {
        const char *key = i < n ? k[i] : "sign", *val = i < n ? v[i] : sign;
        len += (size_t)snprintf(body + len, sizeof body - len, "%s%s=", i ? "&" : "", key);
        for (const char *p = val; *p && len + 4 < sizeof body; p++)
            len += (size_t)(isalnum((unsigned char)*p) || strchr("-._~", *p)
                                ? snprintf(body + len, sizeof body - len, "%c", *p)
                                : snprintf(body + len, sizeof body - len, "%%%02X",
                                           (unsigned char)*p));
    }
    sim_reply_text(out, 200, "application/x-www-form-urlencoded", body);
}

static void form_code(sim *s, sim_reply *out, const char *code, const char *msg)
{
    const char *kv[] = {"code", code, "msg", msg, NULL};
    form_reply(s, out, kv);
}

static const char *form_state(const sim_order *o)
{
    return o->state == SIM_SUCCESS ? "success" : o->state == SIM_FAILED ? "failed" : "processing";
}

/* An order's answer: its state and, for a card order that succeeded, its cards. */
static void order_reply_locked(sim *s, const sim_order *o, int created, sim_reply *out)
{
    char cards[1024] = "";
    size_t len = 0;
    int card = sim_catalog[o->product].is_card;
    /* a new card order is processing until queried, as the gateway's is untreated */
    const char *state = created && card ? "processing" : form_state(o);
    for (int i = 0; card && !strcmp(state, "success") && i < o->quantity; i++)
        len += (size_t)snprintf(cards + len, sizeof cards - len, "%s%s=%s", i ? ";" : "",
                                o->codes[i].card_number[0] ? o->codes[i].card_number : "-",
                                o->codes[i].code);
    const char *kv[] = {"code",      "0",     "order_no", o->ref,  "supplier_order_no",
                        o->order_id, "state", state,      "cards", cards,
                        NULL};
    form_reply(s, out, kv);
}

static void m_order(sim *s, const form *f, int card, sim_reply *out)
{
    const char *ref = form_get(f, "order_no"), *pid = form_get(f, "product_id");
    const char *account = form_get(f, "account"), *q = form_get(f, "quantity");
    long qty = card ? (q ? strtol(q, NULL, 10) : 0) : 1;
    pthread_mutex_lock(&s->mu);
    int prod = pid ? sim_product_find(SIM_GATEWAY, pid) : -1;
    const char *code = NULL, *msg = NULL;
    if (!ref || !*ref || strlen(ref) >= 128 || qty < 1 || qty > 1000)
        code = "4000", msg = "bad request";
    else if (sim_order_find_locked(s, SIM_GATEWAY, ref))
        code = "2004", msg = "order_no already used";
    else if (prod < 0 || sim_catalog[prod].is_card != card || !s->listed[prod] || !s->on_sale[prod])
        code = "2001", msg = "product not found";
    else if (!card && (!account || strlen(account) != 11 || strspn(account, "0123456789") != 11))
        code = "2002", msg = "invalid account";
    else if (s->stock[prod] >= 0 && s->stock[prod] < qty)
        code = "2001", msg = "out of stock";
    else if (s->balance_fen < s->price_fen[prod] * qty)
        code = "2003", msg = "balance insufficient";
    sim_order *o = code ? NULL
                        : sim_order_create_locked(s, SIM_GATEWAY, ref, prod, (int)qty,
                                                  card ? NULL : account, NULL, 0);
    if (o)
        order_reply_locked(s, o, 1, out);
    pthread_mutex_unlock(&s->mu);
    if (code)
        form_code(s, out, code, msg);
    else if (!o)
        form_code(s, out, "3001", "busy");
}

static void m_query(sim *s, const form *f, sim_reply *out)
{
    const char *ref = form_get(f, "order_no");
    pthread_mutex_lock(&s->mu);
    sim_order *o = ref ? sim_order_find_locked(s, SIM_GATEWAY, ref) : NULL;
    if (o) {
        sim_order_settle_locked(s, o);
        order_reply_locked(s, o, 0, out);
    }
    pthread_mutex_unlock(&s->mu);
    if (!o)
        form_code(s, out, "4004", "no such order");
}

void sim_form_handle(sim *s, const sim_request *rq, sim_reply *out)
{
    form f;
    char sign[33];
    if (strcmp(rq->method, "POST")) {
        sim_reply_text(out, 405, "text/plain", "method not allowed\n");
        return;
    }
    if (form_parse(rq->body ? rq->body : "", rq->body ? rq->len : 0, &f)) {
        form_code(s, out, "4000", "not a form");
        return;
    }
    form_sign(s->cfg.gw_secret, f.k, f.v, f.n, sign);
    const char *got = form_get(&f, "sign"), *merchant = form_get(&f, "merchant_id");
    if (!got || strcmp(got, sign) || !merchant || strcmp(merchant, s->cfg.gw_key)) {
        form_code(s, out, "1001", "bad signature");
    } else if (!strcmp(rq->path, "/recharge") || !strcmp(rq->path, "/card")) {
        m_order(s, &f, !strcmp(rq->path, "/card"), out);
    } else if (!strcmp(rq->path, "/query")) {
        m_query(s, &f, out);
    } else if (!strcmp(rq->path, "/balance")) {
        char bal[32];
        pthread_mutex_lock(&s->mu);
        sim_yuan(s->balance_fen, bal, sizeof bal);
        pthread_mutex_unlock(&s->mu);
        const char *kv[] = {"code", "0", "balance", bal, NULL};
        form_reply(s, out, kv);
    } else {
        form_code(s, out, "4000", "unknown operation");
    }
    form_free(&f);
}
