/*
 * tls.c — listen.tls's files for libmicrohttpd, and the client certificate
 * check (tls.h). GnuTLS is libmicrohttpd's TLS library: the same one checks
 * the files here that will load them, so "valid here" means "loads there".
 */
#include "http/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/wipe_alloc.h"

/* A PEM file larger than this is a mistake (a certificate chain is a few KB). */
#define PEM_MAX (1u << 20)

/* The whole file as NUL-terminated text (the caller wipes and frees). */
static int pem_read(const char *setting, const char *path, char **out, ph_err *err)
{
    char ebuf[128];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return ph_err_set(err, PH_EIO, "%s: cannot read %s: %s", setting, path,
                          strerror_r(e, ebuf, sizeof ebuf));
    }
    if (!S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (off_t)PEM_MAX) {
        close(fd);
        return ph_err_set(err, PH_EINVAL,
                          "%s: %s: expected a PEM file (a regular file of 1 B..%u KB)", setting,
                          path, PEM_MAX >> 10);
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return ph_err_set(err, PH_ENOMEM, "out of memory");
    }
    while (n < cap - 1) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    if (strlen(buf) != n) { /* a NUL inside: not text, and GnuTLS would stop there */
        ph_wipe(buf, n);
        free(buf);
        return ph_err_set(err, PH_EINVAL, "%s: %s: expected a PEM file, got binary data", setting,
                          path);
    }
    *out = buf;
    return PH_OK;
}

int ph_tls_files_read(const char *cert_path, const char *key_path, const char *ca_path,
                      ph_tls_files *out, ph_err *err)
{
    memset(out, 0, sizeof *out);
    int rc;
    gnutls_certificate_credentials_t cred = NULL;
    if ((rc = pem_read("listen.tls.cert", cert_path, &out->cert, err)) ||
        (rc = pem_read("listen.tls.key", key_path, &out->key, err)) ||
        (ca_path && (rc = pem_read("listen.tls.client_ca", ca_path, &out->ca, err))))
        goto fail;
    /* the common mistakes named plainly before GnuTLS's own words */
    if (!strstr(out->cert, "-----BEGIN CERTIFICATE-----")) {
        rc = ph_err_set(
            err, PH_EINVAL,
            "listen.tls.cert: %s: no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
            cert_path);
        goto fail;
    }
    if (strstr(out->key, "-----BEGIN ENCRYPTED PRIVATE KEY-----") ||
        strstr(out->key, "Proc-Type: 4,ENCRYPTED")) {
        rc = ph_err_set(err, PH_EINVAL,
                        "listen.tls.key: %s: the key is encrypted; perkhubd takes an unencrypted "
                        "key in a 0600 file",
                        key_path);
        goto fail;
    }
    if (!strstr(out->key, "PRIVATE KEY-----")) {
        rc =
            ph_err_set(err, PH_EINVAL,
                       "listen.tls.key: %s: no PEM private key in it (no block whose label ends in "
                       "\"PRIVATE KEY\")",
                       key_path);
        goto fail;
    }
    if (gnutls_certificate_allocate_credentials(&cred) != GNUTLS_E_SUCCESS) {
        rc = ph_err_set(err, PH_ENOMEM, "out of memory");
        goto fail;
    }
    gnutls_datum_t c = {(unsigned char *)out->cert, (unsigned)strlen(out->cert)};
    gnutls_datum_t k = {(unsigned char *)out->key, (unsigned)strlen(out->key)};
    int g = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
    if (g < 0) {
        /* GnuTLS's text names the problem (a base64 error, a key mismatch), never the bytes */
        rc = ph_err_set(err, PH_EINVAL,
                        "listen.tls: the certificate %s and the key %s do not load together: %s",
                        cert_path, key_path, gnutls_strerror(g));
        goto fail;
    }
    if (out->ca) {
        gnutls_datum_t a = {(unsigned char *)out->ca, (unsigned)strlen(out->ca)};
        g = gnutls_certificate_set_x509_trust_mem(cred, &a, GNUTLS_X509_FMT_PEM);
        if (g <= 0) {
            rc = ph_err_set(err, PH_EINVAL, "listen.tls.client_ca: %s: %s", ca_path,
                            g < 0 ? gnutls_strerror(g) : "no PEM certificate in it");
            goto fail;
        }
    }
    gnutls_certificate_free_credentials(cred);
    return PH_OK;
fail:
    if (cred)
        gnutls_certificate_free_credentials(cred);
    ph_tls_files_clear(out);
    return rc;
}

void ph_tls_files_clear(ph_tls_files *f)
{
    if (f->key) {
        ph_wipe(f->key, strlen(f->key));
        free(f->key);
    }
    free(f->cert);
    free(f->ca);
    memset(f, 0, sizeof *f);
}

int ph_tls_peer_matches(struct MHD_Connection *c, const uint8_t sha256[32])
{
    const union MHD_ConnectionInfo *ci =
        c ? MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION) : NULL;
    if (!ci || !ci->tls_session)
        return 0;
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned status = 0, n = 0;
    /* against the trust list libmicrohttpd set from the client CA */
    if (gnutls_certificate_verify_peers2(s, &status) != GNUTLS_E_SUCCESS || status != 0)
        return 0;
    const gnutls_datum_t *der = gnutls_certificate_get_peers(s, &n);
    if (!der || n == 0)
        return 0;
    uint8_t got[32];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA256, der[0].data, der[0].size, got) != 0)
        return 0;
    unsigned char diff = 0;
    for (size_t i = 0; i < sizeof got; i++)
        diff |= (unsigned char)(got[i] ^ sha256[i]);
    return diff == 0;
}
