/* sigv4.c - AWS Signature Version 4: canonical request, string to sign, signing key chain.
 * https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html */
#include "storage/sigv4.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "storage/storage_internal.h"

static void hex_encode(const unsigned char *in, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void lt_sigv4_sha256_hex(const void *data, size_t len, char out[65]) {
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    hex_encode(md, sizeof md, out);
}

static void hmac_sha256(const void *key, size_t key_len, const char *msg, unsigned char out[32]) {
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out, &n);
}

static int is_unreserved(unsigned char c) {
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int buf_encode(lt_stg_buf *b, const char *s, int keep_slash) {
    static const char digits[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (is_unreserved(*p) || (keep_slash && *p == '/')) {
            if (lt_stg_buf_add(b, p, 1)) return -1;
        } else {
            char esc[3] = {'%', digits[*p >> 4], digits[*p & 15]};
            if (lt_stg_buf_add(b, esc, 3)) return -1;
        }
    }
    return 0;
}

char *lt_sigv4_uri_encode(const char *s, int keep_slash) {
    lt_stg_buf b = {0};
    if (buf_encode(&b, s, keep_slash) || lt_stg_buf_add(&b, "", 0)) {
        lt_stg_buf_free(&b);
        return NULL;
    }
    return b.data;
}

typedef struct {
    char *name;  /* encoded */
    char *value; /* encoded */
} enc_pair;

static int cmp_enc_pair(const void *a, const void *b) {
    const enc_pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

char *lt_sigv4_canonical_query(const lt_sigv4_pair *q, size_t n) {
    enc_pair *v = calloc(n ? n : 1, sizeof *v);
    lt_stg_buf b = {0};
    int ok = v != NULL && lt_stg_buf_add(&b, "", 0) == 0;
    for (size_t i = 0; ok && i < n; i++) {
        v[i].name = lt_sigv4_uri_encode(q[i].name, 0);
        v[i].value = lt_sigv4_uri_encode(q[i].value ? q[i].value : "", 0);
        ok = v[i].name && v[i].value;
    }
    if (ok) qsort(v, n, sizeof *v, cmp_enc_pair);
    for (size_t i = 0; ok && i < n; i++)
        ok = lt_stg_buf_printf(&b, "%s%s=%s", i ? "&" : "", v[i].name, v[i].value) == 0;
    for (size_t i = 0; v && i < n; i++) {
        free(v[i].name);
        free(v[i].value);
    }
    free(v);
    if (!ok) {
        lt_stg_buf_free(&b);
        return NULL;
    }
    return b.data;
}

typedef struct {
    char name[128];    /* lower-cased */
    const char *value; /* as given */
} hdr_ref;

static int cmp_hdr(const void *a, const void *b) {
    return strcmp(((const hdr_ref *)a)->name, ((const hdr_ref *)b)->name);
}

/* Header value per the spec: trimmed, runs of spaces squeezed to one. */
static int buf_trimmed(lt_stg_buf *b, const char *v) {
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    for (size_t i = 0; i < n; i++) {
        if ((v[i] == ' ' || v[i] == '\t') && i > 0 && (v[i - 1] == ' ' || v[i - 1] == '\t')) continue;
        char c = v[i] == '\t' ? ' ' : v[i];
        if (lt_stg_buf_add(b, &c, 1)) return -1;
    }
    return 0;
}

/* Builds the canonical request into creq and the signed-header list into signed_hdrs. Returns 0, -1 on
 * no memory, -2 on a malformed request. */
static int build_canonical(const lt_sigv4_request *r, lt_stg_buf *creq, lt_stg_buf *signed_hdrs) {
    if (!r->method || !r->path || r->path[0] != '/' || !r->payload_hash || r->n_headers > 64) return -2;
    hdr_ref h[64];
    for (size_t i = 0; i < r->n_headers; i++) {
        size_t len = strlen(r->headers[i].name);
        if (len == 0 || len >= sizeof h[i].name || !r->headers[i].value) return -2;
        for (size_t k = 0; k <= len; k++)
            h[i].name[k] = (char)tolower((unsigned char)r->headers[i].name[k]);
        h[i].value = r->headers[i].value;
    }
    qsort(h, r->n_headers, sizeof h[0], cmp_hdr);
    char *query = lt_sigv4_canonical_query(r->query, r->n_query);
    if (!query) return -1;
    int bad = lt_stg_buf_printf(creq, "%s\n", r->method) || buf_encode(creq, r->path, 1) ||
              lt_stg_buf_printf(creq, "\n%s\n", query);
    free(query);
    /* Repeated header names are signed once, their values joined with ','. */
    for (size_t i = 0; !bad && i < r->n_headers; i++) {
        int repeat = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
        int last = i + 1 == r->n_headers || strcmp(h[i].name, h[i + 1].name) != 0;
        if (!repeat) {
            bad = lt_stg_buf_printf(creq, "%s:", h[i].name) ||
                  lt_stg_buf_printf(signed_hdrs, "%s%s", signed_hdrs->len ? ";" : "", h[i].name);
        } else {
            bad = lt_stg_buf_puts(creq, ",");
        }
        bad = bad || buf_trimmed(creq, h[i].value) || (last && lt_stg_buf_puts(creq, "\n"));
    }
    bad = bad || lt_stg_buf_add(signed_hdrs, "", 0) ||
          lt_stg_buf_printf(creq, "\n%s\n%s", signed_hdrs->data, r->payload_hash);
    return bad ? -1 : 0;
}

char *lt_sigv4_canonical_request(const lt_sigv4_request *r) {
    lt_stg_buf creq = {0}, sh = {0};
    int rc = build_canonical(r, &creq, &sh);
    lt_stg_buf_free(&sh);
    if (rc) {
        lt_stg_buf_free(&creq);
        return NULL;
    }
    return creq.data;
}

lt_status lt_sigv4_authorization(const lt_sigv4_request *r, char *out, size_t cap, lt_err *err) {
    if (!r->amz_date || strlen(r->amz_date) != 16 || !r->region || !r->service || !r->access_key_id ||
        !r->secret_access_key)
        return lt_errorf(err, LT_ERR_ARG, "sigv4: incomplete request (date, region, service or credentials)");
    lt_stg_buf creq = {0}, sh = {0};
    int rc = build_canonical(r, &creq, &sh);
    if (rc) {
        lt_stg_buf_free(&creq);
        lt_stg_buf_free(&sh);
        return rc == -1 ? lt_errorf(err, LT_ERR_NOMEM, "sigv4: out of memory")
                        : lt_errorf(err, LT_ERR_ARG, "sigv4: malformed request (method, path or headers)");
    }
    char creq_hash[65];
    lt_sigv4_sha256_hex(creq.data, creq.len, creq_hash);
    lt_stg_buf_free(&creq);

    char date[9];
    memcpy(date, r->amz_date, 8);
    date[8] = '\0';
    char *scope = lt_stg_strf("%s/%s/%s/aws4_request", date, r->region, r->service);
    char *to_sign = scope ? lt_stg_strf("AWS4-HMAC-SHA256\n%s\n%s\n%s", r->amz_date, scope, creq_hash) : NULL;
    char *k_secret = lt_stg_strf("AWS4%s", r->secret_access_key);
    lt_status st = LT_OK;
    if (!scope || !to_sign || !k_secret) {
        st = lt_errorf(err, LT_ERR_NOMEM, "sigv4: out of memory");
        goto done;
    }
    unsigned char k[32], sig[32];
    hmac_sha256(k_secret, strlen(k_secret), date, k);
    hmac_sha256(k, 32, r->region, k);
    hmac_sha256(k, 32, r->service, k);
    hmac_sha256(k, 32, "aws4_request", k);
    hmac_sha256(k, 32, to_sign, sig);
    char sig_hex[65];
    hex_encode(sig, 32, sig_hex);
    int n = snprintf(out, cap, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                     r->access_key_id, scope, sh.data, sig_hex);
    if (n < 0 || (size_t)n >= cap) st = lt_errorf(err, LT_ERR_ARG, "sigv4: authorization buffer too small");
    /* The derived keys are as good as the secret for a day: don't leave them on the stack or heap. */
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(k_secret, strlen(k_secret));
done:
    free(scope);
    free(to_sign);
    free(k_secret);
    lt_stg_buf_free(&sh);
    return st;
}
