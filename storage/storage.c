/* storage.c - opening a URI, key rules, and the calls that dispatch to the local or S3 backend. */
#include "storage/storage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "storage/storage_internal.h"

/* ---- small helpers shared by the module ---- */

int lt_stg_buf_add(lt_stg_buf *b, const void *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1) {
            if (cap > SIZE_MAX / 2) return -1;
            cap *= 2;
        }
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int lt_stg_buf_puts(lt_stg_buf *b, const char *s) {
    return lt_stg_buf_add(b, s, strlen(s));
}

int lt_stg_buf_printf(lt_stg_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    int rc = lt_stg_buf_add(b, s, (size_t)n);
    free(s);
    return rc;
}

void lt_stg_buf_free(lt_stg_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *lt_stg_strf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    return n < 0 ? NULL : s;
}

void lt_stg_event(lt_storage *s, lt_storage_event_kind kind, const char *key, int attempt, int delay_ms,
                  int64_t bytes, const char *message) {
    if (!s->opts.on_event) return;
    lt_storage_event ev = {kind, key ? key : "", attempt, delay_ms, bytes, message ? message : ""};
    s->opts.on_event(s->opts.event_ctx, &ev);
}

/* ---- options, open, close ---- */

void lt_storage_opts_init(lt_storage_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_retries = 5;
    o->retry_base_ms = 200;
    o->retry_max_ms = 20000;
    o->connect_timeout_ms = 10000;
    o->request_timeout_ms = 0;
    o->stall_timeout_s = 60;
    o->parallel = 8;
    o->multipart_threshold = (int64_t)16 << 20;
    o->part_size = (int64_t)8 << 20;
    o->list_page_size = 1000;
}

static lt_status check_opts(const lt_storage_opts *o, lt_err *err) {
    if (o->max_retries < 0 || o->max_retries > 100)
        return lt_errorf(err, LT_ERR_ARG, "storage: max_retries must be in 0..100, got %d", o->max_retries);
    if (o->retry_base_ms < 0 || o->retry_max_ms < o->retry_base_ms)
        return lt_errorf(err, LT_ERR_ARG, "storage: need 0 <= retry_base_ms <= retry_max_ms, got %d and %d",
                         o->retry_base_ms, o->retry_max_ms);
    if (o->connect_timeout_ms < 0 || o->request_timeout_ms < 0 || o->stall_timeout_s < 0)
        return lt_errorf(err, LT_ERR_ARG, "storage: timeouts must be >= 0");
    if (o->parallel < 1 || o->parallel > 256)
        return lt_errorf(err, LT_ERR_ARG, "storage: parallel must be in 1..256, got %d", o->parallel);
    if (o->part_size < 1024 || o->part_size > ((int64_t)5 << 30))
        return lt_errorf(err, LT_ERR_ARG, "storage: part_size must be in 1 KiB..5 GiB, got %lld",
                         (long long)o->part_size);
    if (o->multipart_threshold < 1)
        return lt_errorf(err, LT_ERR_ARG, "storage: multipart_threshold must be > 0, got %lld",
                         (long long)o->multipart_threshold);
    if (o->list_page_size < 1 || o->list_page_size > 1000)
        return lt_errorf(err, LT_ERR_ARG, "storage: list_page_size must be in 1..1000, got %d",
                         o->list_page_size);
    return LT_OK;
}

/* Copies the string options so the caller's may go away. */
static int own_strings(lt_storage *s) {
    const char **fields[6] = {&s->opts.cache_dir,     &s->opts.access_key_id, &s->opts.secret_access_key,
                              &s->opts.session_token, &s->opts.region,        &s->opts.endpoint_url};
    if (!s->opts.cache_dir) s->opts.cache_dir = getenv("LATHE_STORAGE_CACHE");
    if (s->opts.cache_dir && !s->opts.cache_dir[0]) s->opts.cache_dir = NULL;
    for (int i = 0; i < 6; i++) {
        if (!*fields[i]) continue;
        s->owned[i] = strdup(*fields[i]);
        if (!s->owned[i]) return -1;
        *fields[i] = s->owned[i];
    }
    return 0;
}

static int has_scheme(const char *uri, const char *scheme) {
    size_t n = strlen(scheme);
    return strncmp(uri, scheme, n) == 0 && strncmp(uri + n, "://", 3) == 0;
}

/* Root directory of a local URI: a plain path, file:///abs or file://localhost/abs. */
static lt_status local_root(const char *uri, char **root, lt_err *err) {
    const char *path = uri;
    if (has_scheme(uri, "file")) {
        path = uri + 7;
        if (strncmp(path, "localhost/", 10) == 0) path += 9;
        if (path[0] != '/')
            return lt_errorf(err, LT_ERR_ARG,
                             "storage: '%s': a file:// URI needs an absolute path "
                             "(file:///dir)",
                             uri);
    } else if (strstr(uri, "://")) {
        return lt_errorf(err, LT_ERR_ARG, "storage: '%s': unsupported scheme (use a path, file:// or s3://)",
                         uri);
    }
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    if (n == 0) return lt_errorf(err, LT_ERR_ARG, "storage: empty path");
    *root = strndup(path, n);
    return *root ? LT_OK : lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
}

lt_storage *lt_storage_open(const char *uri, const lt_storage_opts *opts, lt_err *err) {
    if (!uri || !uri[0]) {
        lt_errorf(err, LT_ERR_ARG, "storage: empty URI");
        return NULL;
    }
    lt_storage *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    if (opts)
        s->opts = *opts;
    else
        lt_storage_opts_init(&s->opts);
    if (check_opts(&s->opts, err) != LT_OK) goto err;
    if (own_strings(s) || !(s->uri = strdup(uri))) goto nomem;
    lt_rng_seed(&s->rng, (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)s, 7);
    if (has_scheme(uri, "s3")) {
        s->kind = LT_STORAGE_S3;
        if (lt_stg_s3_open(s, uri, err) != LT_OK) goto err;
    } else {
        s->kind = LT_STORAGE_LOCAL;
        if (local_root(uri, &s->root, err) != LT_OK) goto err;
    }
    return s;
nomem:
    lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory opening '%s'", uri);
err:
    lt_storage_close(s);
    return NULL;
}

void lt_storage_close(lt_storage *s) {
    if (!s) return;
    lt_stg_s3_close(s->s3);
    for (int i = 0; i < 6; i++)
        free(s->owned[i]);
    free(s->uri);
    free(s->root);
    free(s);
}

lt_storage_kind lt_storage_get_kind(const lt_storage *s) {
    return s->kind;
}

const char *lt_storage_uri(const lt_storage *s) {
    return s->uri;
}

void lt_storage_get_stats(const lt_storage *s, lt_storage_stats *out) {
    *out = s->stats;
}

int lt_storage_is_transient(lt_status s) {
    return s == LT_ERR_IO;
}

/* ---- keys and URIs ---- */

lt_status lt_storage_check_key(const char *key, lt_err *err) {
    if (!key || !key[0]) return lt_errorf(err, LT_ERR_ARG, "storage: empty key");
    size_t n = strlen(key);
    if (n > 1024) return lt_errorf(err, LT_ERR_ARG, "storage: key longer than 1024 bytes: '%.64s...'", key);
    if (key[0] == '/')
        return lt_errorf(err, LT_ERR_ARG, "storage: key '%s' is absolute (starts with '/')", key);
    for (const char *p = key; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '\\')
            return lt_errorf(err, LT_ERR_ARG, "storage: key '%s' has a backslash or control character", key);
    }
    const char *seg = key;
    while (1) {
        const char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return lt_errorf(
                err, LT_ERR_ARG,
                "storage: key '%s' has an empty, '.' or '..' component (it could escape the root)", key);
        if (!slash) break;
        seg = slash + 1;
    }
    return LT_OK;
}

char *lt_uri_join(const char *base, const char *rel) {
    if (!base || !base[0]) return strdup(rel ? rel : "");
    if (!rel || !rel[0]) return strdup(base);
    size_t bn = strlen(base);
    while (bn > 0 && base[bn - 1] == '/')
        bn--;
    /* Keep the slashes of "s3://" or of the root path "/". */
    if (bn == 0 || (bn > 0 && base[bn - 1] == ':')) bn = strlen(base);
    while (*rel == '/')
        rel++;
    int need_slash = bn > 0 && base[bn - 1] != '/';
    return lt_stg_strf("%.*s%s%s", (int)bn, base, need_slash ? "/" : "", rel);
}

/* A prefix is a key prefix: "" is fine, otherwise no '..' or '.' component, no leading '/'. */
static lt_status check_prefix(const char *prefix, lt_err *err) {
    if (!prefix || !prefix[0]) return LT_OK;
    size_t n = strlen(prefix);
    char *tmp = strndup(prefix, n);
    if (!tmp) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    if (n > 1 && tmp[n - 1] == '/') tmp[n - 1] = '\0';
    lt_status st = strcmp(tmp, "/") == 0 ? lt_errorf(err, LT_ERR_ARG, "storage: prefix '/' is absolute")
                                         : lt_storage_check_key(tmp, err);
    free(tmp);
    return st;
}

/* ---- dispatch ---- */

lt_status lt_storage_list(lt_storage *s, const char *prefix, lt_storage_list_fn fn, void *ctx, lt_err *err) {
    if (!prefix) prefix = "";
    lt_status st = check_prefix(prefix, err);
    if (st != LT_OK) return st;
    return s->kind == LT_STORAGE_S3 ? lt_stg_s3_list(s, prefix, fn, ctx, err)
                                    : lt_stg_local_list(s, prefix, fn, ctx, err);
}

typedef struct {
    lt_storage_obj_list *out;
    size_t cap;
    int nomem;
} collect_ctx;

static int collect(void *vctx, const lt_storage_obj *o) {
    collect_ctx *c = vctx;
    lt_storage_obj_list *l = c->out;
    if (l->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        lt_storage_obj *items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            c->nomem = 1;
            return 1;
        }
        l->items = items;
        c->cap = cap;
    }
    lt_storage_obj *d = &l->items[l->n];
    d->key = strdup(o->key);
    d->etag = strdup(o->etag ? o->etag : "");
    d->size = o->size;
    d->mtime = o->mtime;
    if (!d->key || !d->etag) {
        free((char *)d->key);
        free((char *)d->etag);
        c->nomem = 1;
        return 1;
    }
    l->n++;
    return 0;
}

lt_status lt_storage_list_all(lt_storage *s, const char *prefix, lt_storage_obj_list *out, lt_err *err) {
    memset(out, 0, sizeof *out);
    collect_ctx c = {out, 0, 0};
    lt_status st = lt_storage_list(s, prefix, collect, &c, err);
    if (st == LT_OK && c.nomem) st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory listing");
    if (st != LT_OK) lt_storage_obj_list_free(out);
    return st;
}

void lt_storage_obj_list_free(lt_storage_obj_list *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->items[i].key);
        free((char *)l->items[i].etag);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

lt_status lt_storage_stat(lt_storage *s, const char *key, lt_storage_info *info, lt_err *err) {
    lt_status st = lt_storage_check_key(key, err);
    if (st != LT_OK) return st;
    memset(info, 0, sizeof *info);
    return s->kind == LT_STORAGE_S3 ? lt_stg_s3_stat(s, key, info, err)
                                    : lt_stg_local_stat(s, key, info, err);
}

lt_status lt_storage_exists(lt_storage *s, const char *key, int *exists, lt_err *err) {
    lt_storage_info info;
    lt_err e = {{0}};
    *exists = 0;
    lt_status st = lt_storage_stat(s, key, &info, &e);
    if (st == LT_OK) *exists = 1;
    if (st == LT_OK || (st == LT_ERR_FORMAT && strncmp(e.msg, "not found", 9) == 0)) return LT_OK;
    if (err) *err = e;
    return st;
}

lt_status lt_storage_get(lt_storage *s, const char *key, const char *local_path, lt_err *err) {
    lt_status st = lt_storage_check_key(key, err);
    if (st != LT_OK) return st;
    if (!local_path || !local_path[0])
        return lt_errorf(err, LT_ERR_ARG, "storage: get '%s': empty local path", key);
    return s->kind == LT_STORAGE_S3 ? lt_stg_s3_get(s, key, local_path, err)
                                    : lt_stg_local_get(s, key, local_path, err);
}

lt_status lt_storage_get_mem(lt_storage *s, const char *key, void **data, size_t *len, lt_err *err) {
    *data = NULL;
    *len = 0;
    lt_status st = lt_storage_check_key(key, err);
    if (st != LT_OK) return st;
    return s->kind == LT_STORAGE_S3 ? lt_stg_s3_get_mem(s, key, data, len, err)
                                    : lt_stg_local_get_mem(s, key, data, len, err);
}

lt_status lt_storage_put(lt_storage *s, const char *key, const char *local_path, lt_err *err) {
    lt_status st = lt_storage_check_key(key, err);
    if (st != LT_OK) return st;
    if (!local_path || !local_path[0])
        return lt_errorf(err, LT_ERR_ARG, "storage: put '%s': empty local path", key);
    return s->kind == LT_STORAGE_S3 ? lt_stg_s3_put(s, key, local_path, err)
                                    : lt_stg_local_put(s, key, local_path, err);
}

lt_status lt_storage_put_mem(lt_storage *s, const char *key, const void *data, size_t len, lt_err *err) {
    lt_status st = lt_storage_check_key(key, err);
    if (st != LT_OK) return st;
    if (!data && len) return lt_errorf(err, LT_ERR_ARG, "storage: put '%s': NULL data", key);
    return s->kind == LT_STORAGE_S3 ? lt_stg_s3_put_mem(s, key, data ? data : "", len, err)
                                    : lt_stg_local_put_mem(s, key, data ? data : "", len, err);
}

lt_status lt_storage_delete(lt_storage *s, const char *key, lt_err *err) {
    lt_status st = lt_storage_check_key(key, err);
    if (st != LT_OK) return st;
    return s->kind == LT_STORAGE_S3 ? lt_stg_s3_delete(s, key, err) : lt_stg_local_delete(s, key, err);
}

/* ---- sync for the local backend: a listing and one copy per object ---- */

typedef struct {
    lt_storage *s;
    const char *local_dir;
    size_t strip; /* bytes of prefix to drop from each key */
    lt_status st;
    lt_err *err;
} local_sync_ctx;

static int local_sync_one(void *vctx, const lt_storage_obj *o) {
    local_sync_ctx *c = vctx;
    char *dst = lt_uri_join(c->local_dir, o->key + c->strip);
    if (!dst) {
        c->st = lt_errorf(c->err, LT_ERR_NOMEM, "storage: out of memory");
        return 1;
    }
    c->st = lt_stg_local_get(c->s, o->key, dst, c->err);
    free(dst);
    return c->st != LT_OK;
}

/* "dir" -> "dir/"; "" stays "". malloc'd. */
static char *dir_prefix(const char *prefix) {
    size_t n = prefix ? strlen(prefix) : 0;
    if (n == 0) return strdup("");
    return lt_stg_strf("%s%s", prefix, prefix[n - 1] == '/' ? "" : "/");
}

lt_status lt_storage_sync_down(lt_storage *s, const char *prefix, const char *local_dir, lt_err *err) {
    if (!local_dir || !local_dir[0]) return lt_errorf(err, LT_ERR_ARG, "storage: sync_down: empty local dir");
    lt_status st = check_prefix(prefix, err);
    if (st != LT_OK) return st;
    char *dp = dir_prefix(prefix);
    if (!dp) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    if (s->kind == LT_STORAGE_S3) {
        st = lt_stg_s3_sync_down(s, dp, local_dir, err);
    } else {
        st = lt_stg_mkdirs(local_dir, err);
        local_sync_ctx c = {s, local_dir, strlen(dp), LT_OK, err};
        if (st == LT_OK) st = lt_stg_local_list(s, dp, local_sync_one, &c, err);
        if (st == LT_OK) st = c.st;
    }
    free(dp);
    return st;
}

lt_status lt_storage_sync_up(lt_storage *s, const char *local_dir, const char *prefix, lt_err *err) {
    if (!local_dir || !local_dir[0]) return lt_errorf(err, LT_ERR_ARG, "storage: sync_up: empty local dir");
    lt_status st = check_prefix(prefix, err);
    if (st != LT_OK) return st;
    char *dp = dir_prefix(prefix);
    if (!dp) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    if (s->kind == LT_STORAGE_S3) {
        st = lt_stg_s3_sync_up(s, local_dir, dp, err);
        free(dp);
        return st;
    }
    char **rel = NULL;
    size_t n = 0;
    st = lt_stg_walk(local_dir, &rel, &n, err);
    for (size_t i = 0; st == LT_OK && i < n; i++) {
        char *src = lt_uri_join(local_dir, rel[i]);
        char *key = lt_stg_strf("%s%s", dp, rel[i]);
        st = src && key ? lt_storage_put(s, key, src, err)
                        : lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
        free(src);
        free(key);
    }
    lt_stg_free_strs(rel, n);
    free(dp);
    return st;
}
