/* s3.h - S3 backend internals shared by s3.c (operations) and s3_http.c (signed requests over curl multi,
 * with retries). Not part of the public API. */
#ifndef LT_STORAGE_S3_H
#define LT_STORAGE_S3_H

#include <curl/curl.h>

#include "storage/sigv4.h"
#include "storage/storage_internal.h"

struct lt_s3 {
    char *endpoint;   /* "scheme://authority" without a trailing '/' */
    char *authority;  /* host[:port], sent (and signed) as the Host header */
    char *base_path;  /* path of the endpoint URL without a trailing '/'; usually "" */
    char *bucket;     /* bucket name */
    char *root;       /* key prefix of the storage root: "" or "dir/" */
    char *region;     /* signing region */
    char *access_key; /* NULL: anonymous requests */
    char *secret_key; /* set when access_key is */
    char *token;      /* session token or NULL */
    char *origin;     /* "endpoint/bucket": identifies objects in the cache */
    CURLM *multi;     /* one multi handle, so connections are reused across calls */
};

/* lt_s3_job.state of a finished job. */
#define LT_S3_JOB_DONE 3

/* One HTTP request, retried by lt_stg_s3_run until it succeeds, fails permanently or runs out of retries.
 * The caller fills the request part (zero the rest) and keeps every pointer alive until the run ends. */
typedef struct {
    /* request */
    const char *method;     /* "GET", "HEAD", "PUT", "POST", "DELETE" */
    const char *key;        /* key relative to the storage root, for messages and events */
    const char *object;     /* full object key in the bucket; NULL for a bucket-level request */
    lt_sigv4_pair query[6]; /* (n_query) raw query pairs */
    size_t n_query;
    char range[64];           /* "bytes=a-b" or "" */
    const char *if_match;     /* ETag the object must still have (GET), or NULL */
    const char *content_type; /* or NULL */
    const void *body;         /* (body_len) request body in memory, or NULL */
    const char *body_path;    /* or a slice [body_off, body_off + body_len) of this file */
    int64_t body_off;
    size_t body_len;
    /* response sink for 2xx bodies (at most one; none discards) */
    lt_stg_buf *out_mem; /* append here (reset on each attempt) */
    int out_fd;          /* or pwrite here from out_off on (set -1 when unused) */
    int64_t out_off;
    const char *out_path;    /* or create/truncate this file on each attempt (not fsync'd) */
    int64_t expect_len;      /* body length that must arrive, or -1 */
    int body_may_hold_error; /* a 200 may carry <Error> (CompleteMultipartUpload): buffer and check it */
    /* results */
    long http;                      /* last HTTP status */
    char etag[LT_STORAGE_ETAG_MAX]; /* ETag response header without quotes */
    int64_t content_length;         /* Content-Length, -1 when absent */
    int64_t total_size;             /* object size from Content-Range or Content-Length, -1 when unknown */
    int64_t mtime;                  /* Last-Modified, unix seconds, -1 when absent */
    lt_status st;                   /* LT_OK or the final failure */
    char msg[768];                  /* the final failure, credentials scrubbed */
    /* engine state */
    int state;       /* 0 pending, 1 active, 2 waiting to retry, 3 done */
    int attempt;     /* attempts started */
    int64_t wake_ms; /* when a waiting job may start again */
    CURL *easy;
    struct curl_slist *hdrs;
    char *url;
    unsigned char *file_body; /* body_path slice, loaded on the first attempt */
    char payload_hash[65];
    lt_stg_buf errbody; /* body of a non-2xx response, capped */
    int sink_fd;        /* fd written by this attempt (out_fd or the opened out_path) */
    int64_t sink_pos;   /* next write offset */
    int64_t received;   /* body bytes of this attempt */
    int sink_errno;     /* errno of a failed local write */
    int range_ignored;  /* a ranged GET got a 2xx other than 206 */
    int retry_after_s;  /* Retry-After header, 0 when absent */
    char curl_err[CURL_ERROR_SIZE];
} lt_s3_job;

/* Zeroes job and sets the fields that need a non-zero "unused" value. */
void lt_stg_s3_job_init(lt_s3_job *job, const char *method, const char *key, const char *object);

/* Runs jobs, up to opts.parallel at a time. Returns LT_OK when all succeeded; otherwise stops at the first
 * permanent failure (or a transient one that ran out of retries), aborts the rest and returns its status
 * and message. Every job's st/msg says how it ended (LT_ERR_CANCELLED for aborted ones). Also the
 * request/retry counters and RETRY events. */
lt_status lt_stg_s3_run(lt_storage *s, lt_s3_job *jobs, size_t n, lt_err *err);

/* A ListObjectsV2 page request for prefix (relative to the root; full = root + prefix), at most max_keys
 * keys, after token (NULL: the first page). The page goes to body (emptied). Every string must outlive
 * the job. */
void lt_stg_s3_list_job(lt_s3_job *job, const char *prefix, const char *full, const char *max_keys,
                        const char *token, lt_stg_buf *body);
/* Calls fn for each object of a page (keys relative to the root; folder markers skipped) until it returns
 * non-zero. *next: the continuation token (malloc'd), or NULL when the page was the last or fn stopped. */
lt_status lt_stg_s3_list_parse(lt_storage *s, const lt_stg_buf *body, lt_storage_list_fn fn, void *ctx,
                               char **next, lt_err *err);

/* Frees what a finished job still holds (response buffers). */
void lt_stg_s3_job_free(lt_s3_job *job);

/* Replaces every occurrence of the access key, secret key and session token in msg by "[redacted]". */
void lt_stg_s3_scrub(const lt_s3 *s3, char *msg, size_t cap);

#endif
