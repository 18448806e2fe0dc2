/* s3.c - the S3 backend: configuration, listing, get/put (multipart, ranged parallel downloads), delete.
 * Requests go through lt_stg_s3_run (s3_http.c); syncs are in s3_sync.c. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/s3.h"

/* ---- open / close ---- */

static const char *env_or(const char *opt, const char *a, const char *b) {
    if (opt && opt[0]) return opt;
    const char *v = a ? getenv(a) : NULL;
    if (v && v[0]) return v;
    v = b ? getenv(b) : NULL;
    return v && v[0] ? v : NULL;
}

static lt_status parse_endpoint(lt_s3 *s3, const char *url, lt_err *err) {
    const char *rest;
    if (strncmp(url, "https://", 8) == 0)
        rest = url + 8;
    else if (strncmp(url, "http://", 7) == 0)
        rest = url + 7;
    else
        return lt_errorf(err, LT_ERR_ARG,
                         "storage: endpoint URL must start with http:// or https:// (AWS_ENDPOINT_URL)");
    size_t auth_len = strcspn(rest, "/?#");
    if (auth_len == 0)
        return lt_errorf(err, LT_ERR_ARG, "storage: endpoint URL has no host (AWS_ENDPOINT_URL)");
    /* The URL is not echoed: it might carry a password. */
    if (memchr(rest, '@', auth_len))
        return lt_errorf(err, LT_ERR_ARG,
                         "storage: endpoint URL must not contain user:password@ (use "
                         "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)");
    if (rest[auth_len] == '?' || rest[auth_len] == '#')
        return lt_errorf(err, LT_ERR_ARG, "storage: endpoint URL must not have a query or fragment");
    size_t path_len = strlen(rest + auth_len);
    while (path_len > 0 && rest[auth_len + path_len - 1] == '/')
        path_len--;
    s3->endpoint = strndup(url, (size_t)(rest - url) + auth_len);
    s3->authority = strndup(rest, auth_len);
    s3->base_path = strndup(rest + auth_len, path_len);
    if (!s3->endpoint || !s3->authority || !s3->base_path)
        return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    return LT_OK;
}

static lt_status parse_s3_uri(lt_s3 *s3, const char *uri, lt_err *err) {
    const char *b = uri + 5; /* after "s3://" */
    size_t bn = strcspn(b, "/");
    if (bn == 0 || bn > 255)
        return lt_errorf(err, LT_ERR_ARG, "storage: '%s': missing or too long bucket name", uri);
    for (size_t i = 0; i < bn; i++) {
        char c = b[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '-' || c == '_'))
            return lt_errorf(err, LT_ERR_ARG, "storage: '%s': bad character '%c' in the bucket name", uri, c);
    }
    s3->bucket = strndup(b, bn);
    const char *p = b + bn;
    while (*p == '/')
        p++;
    size_t pn = strlen(p);
    while (pn > 0 && p[pn - 1] == '/')
        pn--;
    char *prefix = strndup(p, pn);
    if (!s3->bucket || !prefix) {
        free(prefix);
        return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    }
    lt_status st = pn ? lt_storage_check_key(prefix, err) : LT_OK;
    if (st == LT_OK) s3->root = lt_stg_strf("%s%s", prefix, pn ? "/" : "");
    free(prefix);
    if (st == LT_OK && !s3->root) st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    return st;
}

lt_status lt_stg_s3_open(lt_storage *s, const char *uri, lt_err *err) {
    lt_s3 *s3 = calloc(1, sizeof *s3);
    if (!s3) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    s->s3 = s3;
    lt_status st = parse_s3_uri(s3, uri, err);
    if (st != LT_OK) return st;
    const lt_storage_opts *o = &s->opts;
    const char *region = env_or(o->region, "AWS_REGION", "AWS_DEFAULT_REGION");
    const char *ak = env_or(o->access_key_id, "AWS_ACCESS_KEY_ID", NULL);
    const char *sk = env_or(o->secret_access_key, "AWS_SECRET_ACCESS_KEY", NULL);
    const char *tok = env_or(o->session_token, "AWS_SESSION_TOKEN", NULL);
    const char *ep = env_or(o->endpoint_url, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
    if (!ak != !sk)
        return lt_errorf(err, LT_ERR_ARG, "storage: %s is set but %s is not",
                         ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                         ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
    s3->region = strdup(region ? region : "us-east-1");
    s3->access_key = ak ? strdup(ak) : NULL;
    s3->secret_key = sk ? strdup(sk) : NULL;
    s3->token = tok && ak ? strdup(tok) : NULL;
    char *aws = ep ? NULL : lt_stg_strf("https://s3.%s.amazonaws.com", region ? region : "us-east-1");
    if (!s3->region || (ak && (!s3->access_key || !s3->secret_key)) || (tok && ak && !s3->token) ||
        (!ep && !aws)) {
        free(aws);
        return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    }
    st = parse_endpoint(s3, ep ? ep : aws, err);
    free(aws);
    if (st != LT_OK) return st;
    s3->origin = lt_stg_strf("%s%s/%s", s3->endpoint, s3->base_path, s3->bucket);
    if (!s3->origin) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return lt_errorf(err, LT_ERR_IO, "storage: curl_global_init failed");
    s3->multi = curl_multi_init();
    if (!s3->multi) return lt_errorf(err, LT_ERR_NOMEM, "storage: curl_multi_init failed");
    return LT_OK;
}

static void free_secret(char *p) {
    if (!p) return;
    memset(p, 0, strlen(p));
    free(p);
}

void lt_stg_s3_close(lt_s3 *s3) {
    if (!s3) return;
    if (s3->multi) {
        curl_multi_cleanup(s3->multi);
        curl_global_cleanup();
    }
    free(s3->endpoint);
    free(s3->authority);
    free(s3->base_path);
    free(s3->bucket);
    free(s3->root);
    free(s3->region);
    free_secret(s3->access_key);
    free_secret(s3->secret_key);
    free_secret(s3->token);
    free(s3->origin);
    free(s3);
}

/* ---- listing ---- */

static int64_t parse_iso8601(const char *t) {
    struct tm tm = {0};
    if (!t || sscanf(t, "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                     &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm);
}

static void strip_quotes(char *e) {
    size_t n = strlen(e);
    if (n >= 2 && e[0] == '"' && e[n - 1] == '"') {
        memmove(e, e + 1, n - 2);
        e[n - 2] = '\0';
    }
}

/* Calls fn for each <Contents> of one ListObjectsV2 page; returns 1 when fn asked to stop, -1 on a bad
 * page (message in err). */
static int list_page(lt_storage *s, const char *body, size_t len, lt_storage_list_fn fn, void *ctx,
                     lt_err *err) {
    const char *p = body, *end = body + len, *ce;
    const char *c;
    size_t rn = strlen(s->s3->root);
    while ((c = lt_stg_xml_find(p, end, "Contents", &ce)) != NULL) {
        char *key = lt_stg_xml_text(c, ce, "Key");
        char *size = lt_stg_xml_text(c, ce, "Size");
        char *etag = lt_stg_xml_text(c, ce, "ETag");
        char *mod = lt_stg_xml_text(c, ce, "LastModified");
        int rc = 0;
        if (!key || !size) {
            lt_errorf(err, LT_ERR_FORMAT,
                      "storage: malformed listing from s3://%s (an entry without Key or Size)",
                      s->s3->bucket);
            rc = -1;
        } else if (strncmp(key, s->s3->root, rn) == 0 && key[strlen(key) - 1] != '/') {
            if (etag) strip_quotes(etag);
            lt_storage_obj o = {key + rn, strtoll(size, NULL, 10), etag ? etag : "", parse_iso8601(mod)};
            rc = fn(ctx, &o) ? 1 : 0;
        }
        free(key);
        free(size);
        free(etag);
        free(mod);
        if (rc) return rc;
        p = ce;
    }
    return 0;
}

void lt_stg_s3_list_job(lt_s3_job *job, const char *prefix, const char *full, const char *max_keys,
                        const char *token, lt_stg_buf *body) {
    lt_stg_s3_job_init(job, "GET", prefix, NULL);
    job->query[0] = (lt_sigv4_pair){"list-type", "2"};
    job->query[1] = (lt_sigv4_pair){"prefix", full};
    job->query[2] = (lt_sigv4_pair){"max-keys", max_keys};
    job->n_query = 3;
    if (token) job->query[job->n_query++] = (lt_sigv4_pair){"continuation-token", token};
    body->len = 0;
    job->out_mem = body;
}

lt_status lt_stg_s3_list_parse(lt_storage *s, const lt_stg_buf *body, lt_storage_list_fn fn, void *ctx,
                               char **next, lt_err *err) {
    *next = NULL;
    const char *b = body->data ? body->data : "";
    int rc = list_page(s, b, body->len, fn, ctx, err);
    if (rc != 0) return rc < 0 ? LT_ERR_FORMAT : LT_OK;
    char *trunc = lt_stg_xml_text(b, b + body->len, "IsTruncated");
    int more = trunc && strcmp(trunc, "true") == 0;
    free(trunc);
    if (!more) return LT_OK;
    if (!(*next = lt_stg_xml_text(b, b + body->len, "NextContinuationToken")))
        return lt_errorf(err, LT_ERR_FORMAT,
                         "storage: s3://%s listing is truncated but has no continuation token",
                         s->s3->bucket);
    return LT_OK;
}

lt_status lt_stg_s3_list(lt_storage *s, const char *prefix, lt_storage_list_fn fn, void *ctx, lt_err *err) {
    char *full = lt_stg_strf("%s%s", s->s3->root, prefix);
    if (!full) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    char max_keys[16];
    snprintf(max_keys, sizeof max_keys, "%d", s->opts.list_page_size);
    char *token = NULL;
    lt_stg_buf body = {0};
    lt_status st;
    do {
        lt_s3_job job;
        lt_stg_s3_list_job(&job, prefix, full, max_keys, token, &body);
        st = lt_stg_s3_run(s, &job, 1, err);
        lt_stg_s3_job_free(&job);
        free(token);
        token = NULL;
        if (st == LT_OK) st = lt_stg_s3_list_parse(s, &body, fn, ctx, &token, err);
    } while (st == LT_OK && token);
    free(token);
    free(full);
    lt_stg_buf_free(&body);
    return st;
}

/* ---- single objects ---- */

static char *full_key(const lt_s3 *s3, const char *key) {
    return lt_stg_strf("%s%s", s3->root, key);
}

/* HEAD key: size, ETag, mtime. */
static lt_status head(lt_storage *s, const char *key, const char *full, lt_storage_info *info, lt_err *err) {
    lt_s3_job job;
    lt_stg_s3_job_init(&job, "HEAD", key, full);
    lt_status st = lt_stg_s3_run(s, &job, 1, err);
    if (st == LT_OK) {
        if (job.content_length < 0) {
            st = lt_errorf(err, LT_ERR_FORMAT, "storage: HEAD s3://%s/%s: no Content-Length in the answer",
                           s->s3->bucket, full);
        } else {
            info->size = job.content_length;
            info->mtime = job.mtime;
            snprintf(info->etag, sizeof info->etag, "%s", job.etag);
        }
    }
    lt_stg_s3_job_free(&job);
    return st;
}

lt_status lt_stg_s3_stat(lt_storage *s, const char *key, lt_storage_info *info, lt_err *err) {
    char *full = full_key(s->s3, key);
    if (!full) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_status st = head(s, key, full, info, err);
    free(full);
    return st;
}

lt_status lt_stg_s3_get_mem(lt_storage *s, const char *key, void **data, size_t *len, lt_err *err) {
    char *full = full_key(s->s3, key);
    if (!full) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_stg_buf body = {0};
    lt_s3_job job;
    lt_stg_s3_job_init(&job, "GET", key, full);
    job.out_mem = &body;
    lt_status st = lt_stg_s3_run(s, &job, 1, err);
    if (st == LT_OK && !body.data && lt_stg_buf_add(&body, "", 0))
        st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    if (st == LT_OK && job.content_length >= 0 && (int64_t)body.len != job.content_length)
        st = lt_errorf(err, LT_ERR_IO, "storage: GET s3://%s/%s: got %zu bytes, expected %lld", s->s3->bucket,
                       full, body.len, (long long)job.content_length);
    lt_stg_s3_job_free(&job);
    free(full);
    if (st != LT_OK) {
        lt_stg_buf_free(&body);
        return st;
    }
    *data = body.data;
    *len = body.len;
    s->stats.objects_downloaded++;
    s->stats.bytes_downloaded += (int64_t)body.len;
    lt_stg_event(s, LT_STORAGE_EV_DOWNLOADED, key, 0, 0, (int64_t)body.len, "downloaded");
    return LT_OK;
}

/* Downloads [0, size) of full into fd: one GET, or ranged GETs in parallel for big objects. The object
 * must keep its ETag meanwhile (If-Match), so the pieces can't come from two versions. */
static lt_status download_to_fd(lt_storage *s, const char *key, const char *full, const char *etag,
                                int64_t size, int fd, lt_err *err) {
    const lt_storage_opts *o = &s->opts;
    int64_t part = o->part_size;
    size_t n = 1;
    if (size >= o->multipart_threshold && size > part && o->parallel > 1)
        n = (size_t)((size + part - 1) / part);
    lt_s3_job *jobs = calloc(n, sizeof *jobs);
    char *quoted = etag[0] ? lt_stg_strf("\"%s\"", etag) : NULL;
    if (!jobs || (etag[0] && !quoted)) {
        free(jobs);
        free(quoted);
        return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    }
    if (n > 1 && ftruncate(fd, (off_t)size) != 0) {
        int e = errno;
        free(jobs);
        free(quoted);
        return lt_errorf(err, lt_stg_errno_status(e), "storage: can't allocate %lld bytes for '%s': %s",
                         (long long)size, key, strerror(e));
    }
    for (size_t i = 0; i < n; i++) {
        lt_s3_job *j = &jobs[i];
        lt_stg_s3_job_init(j, "GET", key, full);
        j->if_match = quoted;
        j->out_fd = fd;
        j->out_off = (int64_t)i * part;
        j->expect_len = n == 1 ? size : (i + 1 == n ? size - j->out_off : part);
        if (n > 1)
            snprintf(j->range, sizeof j->range, "bytes=%lld-%lld", (long long)j->out_off,
                     (long long)(j->out_off + j->expect_len - 1));
    }
    lt_status st = lt_stg_s3_run(s, jobs, n, err);
    for (size_t i = 0; i < n; i++)
        lt_stg_s3_job_free(&jobs[i]);
    free(jobs);
    free(quoted);
    return st;
}

lt_status lt_stg_s3_get(lt_storage *s, const char *key, const char *local_path, lt_err *err) {
    lt_s3 *s3 = s->s3;
    char *full = full_key(s3, key);
    if (!full) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    char *cdir = NULL, *cfile = NULL, *tmp = NULL;
    int fd = -1;
    lt_storage_info info;
    lt_status st = head(s, key, full, &info, err);
    if (st != LT_OK) goto done;
    /* Without an ETag there is nothing to key the cache on. */
    if (s->opts.cache_dir && info.etag[0]) {
        st = lt_stg_cache_paths(s->opts.cache_dir, s3->origin, full, info.etag, &cdir, &cfile, err);
        if (st != LT_OK) goto done;
        if (lt_stg_cache_has(cfile, info.size)) {
            st = lt_stg_link_or_copy(cfile, local_path, err);
            if (st == LT_OK) {
                s->stats.cache_hits++;
                lt_stg_event(s, LT_STORAGE_EV_CACHE_HIT, key, 0, 0, info.size, "cached");
            }
            goto done;
        }
    }
    st = lt_stg_tmp_create(cfile ? cfile : local_path, &tmp, &fd, err);
    if (st != LT_OK) goto done;
    st = download_to_fd(s, key, full, info.etag, info.size, fd, err);
    if (st == LT_OK && fsync(fd) != 0)
        st = lt_errorf(err, LT_ERR_IO, "storage: can't write '%s': %s", tmp, strerror(errno));
    close(fd);
    fd = -1;
    if (st == LT_OK && cfile) {
        st = lt_stg_cache_commit(tmp, cfile, err);
        if (st == LT_OK) st = lt_stg_link_or_copy(cfile, local_path, err);
    } else if (st == LT_OK && rename(tmp, local_path) != 0) {
        int e = errno;
        st = lt_errorf(err, lt_stg_errno_status(e), "storage: can't write '%s': %s", local_path, strerror(e));
    }
    if (st != LT_OK) {
        unlink(tmp);
        goto done;
    }
    s->stats.objects_downloaded++;
    s->stats.bytes_downloaded += info.size;
    lt_stg_event(s, LT_STORAGE_EV_DOWNLOADED, key, 0, 0, info.size, "downloaded");
done:
    if (fd >= 0) close(fd);
    free(tmp);
    free(cdir);
    free(cfile);
    free(full);
    return st;
}

/* ---- uploads ---- */

/* Best effort: a failed multipart upload would otherwise keep its parts (and their cost) on the server. */
static void abort_multipart(lt_storage *s, const char *key, const char *full, const char *upload_id) {
    lt_s3_job job;
    lt_stg_s3_job_init(&job, "DELETE", key, full);
    job.query[0] = (lt_sigv4_pair){"uploadId", upload_id};
    job.n_query = 1;
    lt_err ignored;
    lt_stg_s3_run(s, &job, 1, &ignored);
    lt_stg_s3_job_free(&job);
}

/* Multipart upload of size bytes from data (memory) or path (a file). */
static lt_status put_multipart(lt_storage *s, const char *key, const char *full, const void *data,
                               const char *path, int64_t size, lt_err *err) {
    lt_stg_buf body = {0};
    lt_s3_job init;
    lt_stg_s3_job_init(&init, "POST", key, full);
    init.query[0] = (lt_sigv4_pair){"uploads", ""};
    init.n_query = 1;
    init.out_mem = &body;
    lt_status st = lt_stg_s3_run(s, &init, 1, err);
    lt_stg_s3_job_free(&init);
    char *upload_id =
        st == LT_OK && body.data ? lt_stg_xml_text(body.data, body.data + body.len, "UploadId") : NULL;
    lt_stg_buf_free(&body);
    if (st != LT_OK) return st;
    if (!upload_id || !upload_id[0]) {
        free(upload_id);
        return lt_errorf(err, LT_ERR_FORMAT, "storage: POST s3://%s/%s?uploads: no UploadId in the answer",
                         s->s3->bucket, full);
    }
    int64_t part = s->opts.part_size;
    while ((size + part - 1) / part > 10000)
        part *= 2; /* S3 allows at most 10,000 parts */
    size_t n = (size_t)((size + part - 1) / part);
    lt_s3_job *jobs = calloc(n, sizeof *jobs);
    char(*numbers)[24] = calloc(n, sizeof *numbers);
    lt_stg_buf xml = {0};
    if (!jobs || !numbers) {
        st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        lt_s3_job *j = &jobs[i];
        lt_stg_s3_job_init(j, "PUT", key, full);
        snprintf(numbers[i], sizeof numbers[i], "%zu", i + 1);
        j->query[0] = (lt_sigv4_pair){"partNumber", numbers[i]};
        j->query[1] = (lt_sigv4_pair){"uploadId", upload_id};
        j->n_query = 2;
        int64_t off = (int64_t)i * part;
        j->body_len = (size_t)(i + 1 == n ? size - off : part);
        if (data) {
            j->body = (const char *)data + off;
        } else {
            j->body_path = path;
            j->body_off = off;
        }
    }
    st = lt_stg_s3_run(s, jobs, n, err);
    for (size_t i = 0; st == LT_OK && i < n; i++) {
        if (!jobs[i].etag[0])
            st = lt_errorf(err, LT_ERR_FORMAT, "storage: PUT s3://%s/%s part %zu: no ETag in the answer",
                           s->s3->bucket, full, i + 1);
    }
    int bad = st == LT_OK && lt_stg_buf_puts(&xml, "<CompleteMultipartUpload>");
    for (size_t i = 0; st == LT_OK && i < n; i++)
        bad = bad || lt_stg_buf_printf(&xml, "<Part><PartNumber>%zu</PartNumber><ETag>\"%s\"</ETag></Part>",
                                       i + 1, jobs[i].etag);
    bad = bad || (st == LT_OK && lt_stg_buf_puts(&xml, "</CompleteMultipartUpload>"));
    if (bad) st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    if (st == LT_OK) {
        lt_s3_job done_job;
        lt_stg_s3_job_init(&done_job, "POST", key, full);
        done_job.query[0] = (lt_sigv4_pair){"uploadId", upload_id};
        done_job.n_query = 1;
        done_job.body = xml.data;
        done_job.body_len = xml.len;
        done_job.content_type = "application/xml";
        done_job.out_mem = &body;
        done_job.body_may_hold_error = 1;
        st = lt_stg_s3_run(s, &done_job, 1, err);
        lt_stg_s3_job_free(&done_job);
        lt_stg_buf_free(&body);
    }
done:
    if (st != LT_OK) abort_multipart(s, key, full, upload_id);
    for (size_t i = 0; jobs && i < n; i++)
        lt_stg_s3_job_free(&jobs[i]);
    free(jobs);
    free(numbers);
    lt_stg_buf_free(&xml);
    free(upload_id);
    return st;
}

static lt_status put_any(lt_storage *s, const char *key, const void *data, const char *path, int64_t size,
                         lt_err *err) {
    char *full = full_key(s->s3, key);
    if (!full) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_status st;
    if (size >= s->opts.multipart_threshold) {
        st = put_multipart(s, key, full, data, path, size, err);
    } else {
        lt_s3_job job;
        lt_stg_s3_job_init(&job, "PUT", key, full);
        job.body = data;
        job.body_path = path;
        job.body_len = (size_t)size;
        st = lt_stg_s3_run(s, &job, 1, err);
        lt_stg_s3_job_free(&job);
    }
    free(full);
    if (st == LT_OK) {
        s->stats.objects_uploaded++;
        s->stats.bytes_uploaded += size;
        lt_stg_event(s, LT_STORAGE_EV_UPLOADED, key, 0, 0, size, "uploaded");
    }
    return st;
}

lt_status lt_stg_s3_put_mem(lt_storage *s, const char *key, const void *data, size_t len, lt_err *err) {
    return put_any(s, key, data, NULL, (int64_t)len, err);
}

lt_status lt_stg_s3_put(lt_storage *s, const char *key, const char *local_path, lt_err *err) {
    struct stat sb;
    if (stat(local_path, &sb) != 0) {
        int e = errno;
        return lt_errorf(err, lt_stg_errno_status(e),
                         e == ENOENT ? "not found: '%s'" : "storage: can't read '%s': %s", local_path,
                         strerror(e));
    }
    if (!S_ISREG(sb.st_mode))
        return lt_errorf(err, LT_ERR_ARG, "storage: '%s' is not a regular file", local_path);
    return put_any(s, key, NULL, local_path, (int64_t)sb.st_size, err);
}

lt_status lt_stg_s3_delete(lt_storage *s, const char *key, lt_err *err) {
    char *full = full_key(s->s3, key);
    if (!full) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    lt_s3_job job;
    lt_stg_s3_job_init(&job, "DELETE", key, full);
    lt_err e = {{0}};
    lt_status st = lt_stg_s3_run(s, &job, 1, &e);
    if (st != LT_OK && job.http == 404) st = LT_OK; /* already gone */
    if (st != LT_OK && err) *err = e;
    lt_stg_s3_job_free(&job);
    free(full);
    return st;
}
