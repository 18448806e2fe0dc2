/* sigv4.h - AWS Signature Version 4 for S3 requests, plus the SHA-256/HMAC helpers it needs.
 *
 * Kept apart from the HTTP code so the tests can check it against AWS's published examples: the signer
 * takes a fully described request (raw path, raw query pairs, the headers to sign, a payload hash and the
 * timestamp) and returns the Authorization header value. */
#ifndef LT_SIGV4_H
#define LT_SIGV4_H

#include <stddef.h>

#include "core/status.h"

typedef struct {
    const char *name;  /* any case; signed lower-cased */
    const char *value; /* leading/trailing spaces are trimmed and inner runs squeezed when signing */
} lt_sigv4_pair;

typedef struct {
    const char *method;         /* "GET", "PUT", ... */
    const char *path;           /* raw path, e.g. "/bucket/a b.txt"; each segment is URI-encoded once */
    const lt_sigv4_pair *query; /* (n_query) raw name/value pairs; value "" for a bare name */
    size_t n_query;
    const lt_sigv4_pair *headers; /* (n_headers) every header to sign, host and x-amz-date included */
    size_t n_headers;
    const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *amz_date;     /* "YYYYMMDDTHHMMSSZ" */
    const char *region;       /* "us-east-1" */
    const char *service;      /* "s3" */
    const char *access_key_id;
    const char *secret_access_key;
} lt_sigv4_request;

/* Writes "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..." into out (cap bytes).
 * LT_ERR_ARG on a malformed request or too small a buffer, LT_ERR_NOMEM. */
lt_status lt_sigv4_authorization(const lt_sigv4_request *r, char *out, size_t cap, lt_err *err);

/* The canonical request (for debugging and tests); malloc'd, NULL on no memory. */
char *lt_sigv4_canonical_request(const lt_sigv4_request *r);

/* URI-encodes s the SigV4 way: unreserved A-Z a-z 0-9 - . _ ~ stay, every other byte becomes %XX (upper
 * case); '/' stays when keep_slash. Returns a malloc'd string or NULL on no memory. */
char *lt_sigv4_uri_encode(const char *s, int keep_slash);

/* The canonical query string of the pairs: encoded, sorted by name then value, joined with '&'.
 * Also what goes on the wire, so the URL and the signature agree. malloc'd, NULL on no memory. */
char *lt_sigv4_canonical_query(const lt_sigv4_pair *q, size_t n);

/* Lower-case hex SHA-256 of data into out[65]. Can't fail. */
void lt_sigv4_sha256_hex(const void *data, size_t len, char out[65]);

#endif
