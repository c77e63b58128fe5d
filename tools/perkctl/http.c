/*
 * http.c — the libcurl easy wrapper behind pkh_send(). See http.h.
 */
#include "http.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

_Static_assert(sizeof(((pkh_response *)0)->error) >= CURL_ERROR_SIZE,
               "pkh_response.error must hold a curl error buffer");

/* The largest answer we keep. The API's biggest bodies are an import's list of
 * bad lines and a page of events, far below this; the cap only stops a broken
 * or hostile server from making perkctl eat the machine's memory. */
#define PKH_MAX_BODY ((size_t)64 << 20)

/* State shared with the body callback. */
typedef struct pkh_sink {
    pkh_response *resp;
    FILE *out; /* req->out_file */
    size_t cap;
    int too_big;
} pkh_sink;

/* Grows the body buffer by copying rather than realloc(): realloc may leave
 * the old bytes — which can be card codes — in freed memory. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    pkh_sink *s = ud;
    pkh_response *r = s->resp;
    size_t n = size * nmemb;

    if (s->out && r->status == 200) { /* on_header set it: a download, to its file */
        if (fwrite(data, 1, n, s->out) != n) {
            r->out_failed = 1;
            r->out_errno = errno;
            return 0;
        }
        r->out_bytes += (long long)n;
        return n;
    }

    if (r->body_len + n + 1 > s->cap) {
        if (r->body_len + n + 1 > PKH_MAX_BODY) {
            s->too_big = 1;
            return 0; /* makes curl fail with CURLE_WRITE_ERROR */
        }
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < r->body_len + n + 1)
            cap *= 2;
        char *nb = malloc(cap);
        if (!nb)
            return 0;
        if (r->body) {
            memcpy(nb, r->body, r->body_len);
            explicit_bzero(r->body, s->cap);
            free(r->body);
        }
        r->body = nb;
        s->cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

/* Copies the value of header `name` from the raw line into out when the line
 * is that header; the name match is case-insensitive as HTTP requires. */
static int header_value(const char *line, size_t len, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vl = (size_t)(end - v);
    if (vl >= outlen)
        vl = outlen - 1;
    memcpy(out, v, vl);
    out[vl] = '\0';
    return 1;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud)
{
    pkh_response *r = ud;
    size_t n = size * nmemb;
    char flag[16];

    /* A new status line starts a new header block (after "100 Continue"):
     * only the final response's headers count. */
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        r->request_id[0] = '\0';
        r->repl_seq[0] = '\0';
        r->replayed = 0;
        const char *sp = memchr(data, ' ', n); /* the status, for on_body's download */
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
    } else if (header_value(data, n, "X-Perkhub-Repl-Seq", r->repl_seq, sizeof r->repl_seq)) {
    } else if (header_value(data, n, "Idempotent-Replay", flag, sizeof flag)) {
        r->replayed = strcasecmp(flag, "true") == 0;
    } else {
        header_value(data, n, "X-Request-Id", r->request_id, sizeof r->request_id);
    }
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    FILE *f = ud;
    size_t n = fread(buf, size, nmemb, f);
    if (n == 0 && ferror(f))
        return CURL_READFUNC_ABORT;
    return n;
}

/* Called by curl at least about once a second during a transfer. A pending
 * SIGINT/SIGTERM can only exist when the caller blocked it on purpose. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    int *interrupted = ud;
    sigset_t pending;
    if (sigpending(&pending) == 0 &&
        (sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1)) {
        *interrupted = 1;
        return 1;
    }
    return 0;
}

/* Builds base_url + path + "?k=v&..." with every key and value escaped.
 * Returns a malloc'd string, or NULL when out of memory. */
static char *build_url(CURL *h, const pkh_conf *conf, const pkh_request *req)
{
    char *url = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&url, &len);
    if (!m)
        return NULL;
    int ok = fputs(conf->base_url, m) >= 0 && fputs(req->path, m) >= 0;
    char sep = '?';
    for (size_t i = 0; ok && i < req->nquery; i++) {
        if (!req->query[i].value)
            continue;
        char *k = curl_easy_escape(h, req->query[i].key, 0);
        char *v = curl_easy_escape(h, req->query[i].value, 0);
        ok = k && v && fprintf(m, "%c%s=%s", sep, k, v) > 0;
        curl_free(k);
        curl_free(v);
        sep = '&';
    }
    if (fclose(m) != 0 || !ok) {
        free(url);
        return NULL;
    }
    return url;
}

int pkh_send(const pkh_conf *conf, const pkh_request *req, pkh_response *resp)
{
    memset(resp, 0, sizeof *resp);

    int rc = PKH_ENOMEM, interrupted = 0;
    char *url = NULL, *auth = NULL, *ctype = NULL;
    struct curl_slist *headers = NULL, *h2;
    pkh_sink sink = {.resp = resp, .out = req->out_file};
    CURL *h = curl_easy_init();
    if (!h)
        goto done;
    if (!(url = build_url(h, conf, req)))
        goto done;

    if (!(h2 = curl_slist_append(headers, "Accept: application/json")))
        goto done;
    headers = h2;
    if (conf->token) {
        if (asprintf(&auth, "Authorization: Bearer %s", conf->token) < 0) {
            auth = NULL;
            goto done;
        }
        if (!(h2 = curl_slist_append(headers, auth)))
            goto done;
        headers = h2;
    }
    if (req->content_type) {
        if (asprintf(&ctype, "Content-Type: %s", req->content_type) < 0) {
            ctype = NULL;
            goto done;
        }
        if (!(h2 = curl_slist_append(headers, ctype)))
            goto done;
        headers = h2;
    }

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "perkctl/1");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, conf->timeout_s);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, resp->error);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &interrupted);
    if (conf->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, conf->cacert);
    if (conf->cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, conf->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, conf->key);
    }

    if (req->body_file) {
        /* Streamed, so a million-line import never sits in memory. */
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, req->body_file);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_file_size);
        curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    } else if (req->body || strcmp(req->method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body ? req->body : "");
    }
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req->method);

    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (resp->body)
        resp->json = json_loadb(resp->body, resp->body_len, 0, NULL);

    if (cc == CURLE_OK) {
        rc = PKH_OK;
    } else if (resp->status >= 400 && json_is_object(resp->json)) {
        /* The server refused before reading the whole upload and closed the
         * connection; its error is the answer, not the broken pipe. */
        rc = PKH_OK;
    } else if (interrupted) {
        rc = PKH_EINTR;
    } else {
        if (sink.too_big)
            snprintf(resp->error, sizeof resp->error, "response larger than %zu MiB",
                     PKH_MAX_BODY >> 20);
        else if (resp->out_failed)
            snprintf(resp->error, sizeof resp->error, "cannot write the download: %s",
                     strerror(resp->out_errno));
        else if (resp->error[0] == '\0')
            snprintf(resp->error, sizeof resp->error, "%s", curl_easy_strerror(cc));
        rc = PKH_ETRANSFER;
    }

done:
    if (h) {
        /* The error buffer lives in resp; curl must not write it later. */
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
        curl_easy_cleanup(h);
    }
    curl_slist_free_all(headers);
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    free(ctype);
    free(url);
    if (rc == PKH_ENOMEM)
        snprintf(resp->error, sizeof resp->error, "out of memory");
    return rc;
}

void pkh_response_free(pkh_response *resp)
{
    json_decref(resp->json);
    if (resp->body) {
        explicit_bzero(resp->body, resp->body_len);
        free(resp->body);
    }
    memset(resp, 0, sizeof *resp);
}
