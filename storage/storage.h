/* storage.h - one interface over local directories and S3 buckets.
 *
 * A storage handle is opened on a URI that names a root; every key is a '/'-separated path relative to that
 * root:
 *   /data/runs, ./runs, file:///data/runs   a local directory (keys are files below it)
 *   s3://bucket, s3://bucket/some/prefix    an S3 bucket, or a prefix inside it (path-style requests)
 *
 * S3 is configured the way the AWS tools are: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 * AWS_REGION (or AWS_DEFAULT_REGION; default us-east-1), AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (MinIO,
 * NHN Cloud Object Storage, s3rver, ...; default https://s3.<region>.amazonaws.com). Fields of
 * lt_storage_opts override the environment. Credentials never appear in error messages or events.
 *
 * Errors: every call returns an lt_status and fills err. The worker retries a job only on a transient
 * failure, so the status says which kind it was (see lt_storage_is_transient):
 *   LT_ERR_IO      transient: HTTP 5xx, 429, 408, timeouts, refused or dropped connections, local disk errors
 *   LT_ERR_FORMAT  permanent: 403, 404 ("not found: <key>"), other 4xx, malformed responses
 *   LT_ERR_ARG     permanent: a bad URI, key or option; a key that would escape a root or the cache
 *   LT_ERR_NOMEM   out of memory
 * S3 requests are already retried inside (opts.max_retries, exponential backoff with jitter) before a
 * transient error is returned.
 *
 * A handle is not thread-safe: use one per thread. Transfers inside one call run in parallel (curl multi). */
#ifndef LT_STORAGE_H
#define LT_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct lt_storage lt_storage;

typedef enum { LT_STORAGE_LOCAL = 0, LT_STORAGE_S3, LT_STORAGE_KIND_COUNT } lt_storage_kind;

typedef enum {
    LT_STORAGE_EV_RETRY = 0,  /* a transient failure; the request is tried again after delay_ms */
    LT_STORAGE_EV_DOWNLOADED, /* an object was downloaded (bytes) */
    LT_STORAGE_EV_CACHE_HIT,  /* an object came from the ETag cache without a download */
    LT_STORAGE_EV_UPLOADED,   /* an object was uploaded (bytes) */
    LT_STORAGE_EV_COUNT
} lt_storage_event_kind;

/* What an event callback sees; every pointer is valid only during the call. */
typedef struct {
    lt_storage_event_kind kind;
    const char *key;     /* key relative to the storage root ("" for a listing) */
    int attempt;         /* RETRY: the attempt that failed, from 1 */
    int delay_ms;        /* RETRY: wait before the next attempt */
    int64_t bytes;       /* DOWNLOADED/UPLOADED/CACHE_HIT: object size */
    const char *message; /* one line for a log; never holds credentials */
} lt_storage_event;

typedef void (*lt_storage_event_fn)(void *ctx, const lt_storage_event *ev);

/* Options; fill with lt_storage_opts_init() and change what you need. Strings are copied by open. */
typedef struct {
    const char *cache_dir;       /* S3 download cache keyed by ETag; NULL: $LATHE_STORAGE_CACHE, else none */
    int max_retries;             /* retries after the first attempt on transient failures (default 5) */
    int retry_base_ms;           /* first backoff; doubles per retry, jittered (default 200) */
    int retry_max_ms;            /* cap on one backoff, also on Retry-After (default 20000) */
    int connect_timeout_ms;      /* TCP+TLS connect (default 10000) */
    int request_timeout_ms;      /* whole request including the body; 0 = no limit (default 0) */
    int stall_timeout_s;         /* abort a transfer that moves nothing for this long; 0 = off (default 60) */
    int parallel;                /* concurrent transfers in one call (default 8) */
    int64_t multipart_threshold; /* objects at least this big upload in parts and download in ranged
                                    parallel pieces (default 16 MiB) */
    int64_t part_size;           /* part size (default 8 MiB; AWS needs >= 5 MiB except the last part) */
    int list_page_size;          /* max-keys per ListObjectsV2 page, 1..1000 (default 1000) */
    const char *access_key_id;   /* NULL: $AWS_ACCESS_KEY_ID; none at all: unsigned (anonymous) requests */
    const char *secret_access_key; /* NULL: $AWS_SECRET_ACCESS_KEY */
    const char *session_token;     /* NULL: $AWS_SESSION_TOKEN */
    const char *region;            /* NULL: $AWS_REGION, $AWS_DEFAULT_REGION, else "us-east-1" */
    const char *endpoint_url;      /* NULL: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, else AWS */
    lt_storage_event_fn on_event;  /* optional progress/log hook */
    void *event_ctx;               /* passed to on_event */
} lt_storage_opts;

/* Counters since open; every HTTP attempt counts as a request. */
typedef struct {
    int64_t requests;           /* HTTP requests sent, retries included */
    int64_t retries;            /* attempts repeated after a transient failure */
    int64_t objects_downloaded; /* objects fetched over the network (or copied, for local roots) */
    int64_t bytes_downloaded;
    int64_t objects_uploaded;
    int64_t bytes_uploaded;
    int64_t cache_hits; /* objects served from the ETag cache (or already in place) */
} lt_storage_stats;

/* One object of a listing. */
typedef struct {
    const char *key;  /* relative to the storage root */
    int64_t size;     /* bytes */
    const char *etag; /* S3: the ETag without quotes; local: "<size>-<mtime ns>" in hex */
    int64_t mtime;    /* last modified, unix seconds; -1 when unknown */
} lt_storage_obj;

/* A whole listing, owned by the caller; free with lt_storage_obj_list_free. */
typedef struct {
    lt_storage_obj *items; /* (n) sorted by key */
    size_t n;
} lt_storage_obj_list;

#define LT_STORAGE_ETAG_MAX 256

/* Result of lt_storage_stat. */
typedef struct {
    int64_t size;
    int64_t mtime;                  /* unix seconds; -1 when unknown */
    char etag[LT_STORAGE_ETAG_MAX]; /* as in lt_storage_obj */
} lt_storage_info;

/* Return nonzero to stop the listing early (lt_storage_list then returns LT_OK). */
typedef int (*lt_storage_list_fn)(void *ctx, const lt_storage_obj *obj);

/* Fills o with the defaults above. Can't fail. */
void lt_storage_opts_init(lt_storage_opts *o);

/* Opens a handle on uri. opts may be NULL (defaults). Makes no request: a wrong endpoint or credentials
 * show at the first call. Returns NULL and fills err on a bad URI or option (LT_ERR_ARG) or no memory. */
lt_storage *lt_storage_open(const char *uri, const lt_storage_opts *opts, lt_err *err);

/* Frees the handle; NULL is a no-op. */
void lt_storage_close(lt_storage *s);

lt_storage_kind lt_storage_get_kind(const lt_storage *s);

/* The URI the handle was opened on, as given. */
const char *lt_storage_uri(const lt_storage *s);

void lt_storage_get_stats(const lt_storage *s, lt_storage_stats *out);

/* 1 when s is a status worth retrying later (LT_ERR_IO), else 0. */
int lt_storage_is_transient(lt_status s);

/* Checks that key is a safe relative key: non-empty, at most 1024 bytes, no leading '/', no empty, "." or
 * ".." component, no backslash or control character. Returns LT_OK or LT_ERR_ARG naming the key. */
lt_status lt_storage_check_key(const char *key, lt_err *err);

/* Joins base and rel with exactly one '/' between them ("s3://b/x" + "y/z" -> "s3://b/x/y/z"; an empty
 * side returns a copy of the other). Returns a malloc'd string the caller frees, or NULL on no memory. */
char *lt_uri_join(const char *base, const char *rel);

/* Calls fn for every object whose key starts with prefix ("" for all), in key order. Keys ending in '/'
 * (S3 folder markers) and the local backend's own temporary files are left out. */
lt_status lt_storage_list(lt_storage *s, const char *prefix, lt_storage_list_fn fn, void *ctx, lt_err *err);

/* The same listing collected into out (zeroed first; on failure it is left empty). */
lt_status lt_storage_list_all(lt_storage *s, const char *prefix, lt_storage_obj_list *out, lt_err *err);
void lt_storage_obj_list_free(lt_storage_obj_list *l);

/* Size, mtime and ETag of key. A missing key is LT_ERR_FORMAT "not found: <key>". */
lt_status lt_storage_stat(lt_storage *s, const char *key, lt_storage_info *info, lt_err *err);

/* Sets *exists to 1 or 0; other failures (403, network) are returned as errors. */
lt_status lt_storage_exists(lt_storage *s, const char *key, int *exists, lt_err *err);

/* Downloads key to local_path, creating parent directories. The file appears atomically (temporary file
 * + rename); on failure local_path is left as it was. With a cache dir, an object whose ETag is cached is
 * not downloaded again and local_path becomes a hard link to the cache entry where the file system
 * allows (so replace such files, don't edit them in place). */
lt_status lt_storage_get(lt_storage *s, const char *key, const char *local_path, lt_err *err);

/* Reads key into a malloc'd buffer (*data, *len); the buffer has one extra 0 byte after the data so text
 * can be used as a string. The caller frees *data. On failure *data is NULL. */
lt_status lt_storage_get_mem(lt_storage *s, const char *key, void **data, size_t *len, lt_err *err);

/* Uploads local_path to key, in parallel parts when it is at least opts.multipart_threshold bytes (a failed
 * multipart upload is aborted). The local backend writes atomically (temporary file + rename). */
lt_status lt_storage_put(lt_storage *s, const char *key, const char *local_path, lt_err *err);
lt_status lt_storage_put_mem(lt_storage *s, const char *key, const void *data, size_t len, lt_err *err);

/* Deletes key; deleting a missing key succeeds (as on S3). */
lt_status lt_storage_delete(lt_storage *s, const char *key, lt_err *err);

/* Downloads every object under prefix (a "directory": "" for all, a '/' is added when missing) to
 * local_dir/<key without prefix>, opts.parallel at a time. With a cache dir, objects whose ETag is cached
 * are not downloaded again. A listed key that would escape local_dir fails the sync (LT_ERR_FORMAT) before
 * anything is written. Files already in local_dir that are not in the listing are left alone. */
lt_status lt_storage_sync_down(lt_storage *s, const char *prefix, const char *local_dir, lt_err *err);

/* Uploads every regular file below local_dir to prefix/<relative path>, opts.parallel at a time. Files
 * named like the local backend's temporary files are skipped. */
lt_status lt_storage_sync_up(lt_storage *s, const char *local_dir, const char *prefix, lt_err *err);

#endif
