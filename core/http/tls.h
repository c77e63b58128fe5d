/*
 * tls.h — the listener's TLS (config listen.tls): the PEM files read and checked
 * at start, and the client certificate a connection presented.
 *
 * libmicrohttpd speaks TLS through GnuTLS (MHD_USE_TLS); this module reads the
 * files config listen.tls names into memory for it, checks them with GnuTLS
 * first so that a broken file is named (MHD would only say "failed"), and
 * answers, per connection, whether a verified client certificate with a given
 * fingerprint came with it (clients[].cert_sha256).
 */
#ifndef PH_HTTP_TLS_H
#define PH_HTTP_TLS_H

#include <stdint.h>

#include "base/status.h"

struct MHD_Connection;

/* The PEM texts, NUL-terminated, owned (ph_tls_files_clear). ca is NULL when
 * no client_ca is configured. */
typedef struct ph_tls_files {
    char *cert;
    char *key; /* secret: wiped when cleared */
    char *ca;
} ph_tls_files;

/* Reads cert_path and key_path (and ca_path when not NULL) and checks that
 * they are PEM, that the key is the certificate's, and that the CA file holds
 * at least one certificate. On PH_OK *out is filled (the caller clears it); on
 * error *out is zeroed and err names the setting and the file
 * ("listen.tls.key: /etc/perkhub/tls.key: ..."): PH_EIO (cannot read),
 * PH_EINVAL (not PEM, key does not match), PH_ENOMEM. Never quotes the files'
 * contents. Any thread. */
int ph_tls_files_read(const char *cert_path, const char *key_path, const char *ca_path,
                      ph_tls_files *out, ph_err *err);

/* Wipes the key, frees everything and zeroes f. NULL members are fine. */
void ph_tls_files_clear(ph_tls_files *f);

/* Did the TLS connection c present a client certificate that chains to the
 * listener's client CA (verified now) and whose DER SHA-256 is sha256?
 * 1 yes; 0 no certificate, not verified, another one, or not TLS. The
 * comparison is in constant time. Any pool thread, for its own connection. */
int ph_tls_peer_matches(struct MHD_Connection *c, const uint8_t sha256[32]);

#endif
