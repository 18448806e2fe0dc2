/* s3_http.c - signed S3 requests over libcurl's multi interface: many transfers at once, each retried with
 * exponential backoff and jitter on transient failures (5xx, 429, 408, timeouts, connection errors). */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "storage/s3.h"

enum { JOB_PENDING = 0, JOB_ACTIVE, JOB_WAITING, JOB_DONE = LT_S3_JOB_DONE };

#define ERRBODY_MAX 16384

void lt_stg_s3_job_init(lt_s3_job *job, const char *method, const char *key, const char *object) {
    memset(job, 0, sizeof *job);
    job->method = method;
    job->key = key ? key : "";
    job->object = object;
    job->out_fd = -1;
    job->sink_fd = -1;
    job->expect_len = -1;
}

void lt_stg_s3_job_free(lt_s3_job *job) {
    free(job->url);
    job->url = NULL;
    free(job->file_body);
    job->file_body = NULL;
    lt_stg_buf_free(&job->errbody);
}

/* snprintf that may truncate on purpose (messages are capped). */
static void msgf(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void msgf(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void redact(char *msg, size_t cap, const char *secret) {
    static const char mark[] = "[redacted]";
    size_t sn = secret ? strlen(secret) : 0;
    if (sn == 0) return;
    char *p;
    while ((p = strstr(msg, secret)) != NULL) {
        size_t tail = strlen(p + sn);
        size_t mn = sizeof mark - 1;
        if ((size_t)(p - msg) + mn + tail + 1 > cap) tail = cap - 1 - (size_t)(p - msg) - mn;
        memmove(p + mn, p + sn, tail);
        memcpy(p, mark, mn);
        p[mn + tail] = '\0';
    }
}

void lt_stg_s3_scrub(const lt_s3 *s3, char *msg, size_t cap) {
    redact(msg, cap, s3->secret_key);
    redact(msg, cap, s3->token);
    redact(msg, cap, s3->access_key);
}

/* ---- curl callbacks ---- */

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud) {
    lt_s3_job *job = ud;
    size_t n = size * nmemb;
    char line[512];
    size_t ln = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy(line, p, ln);
    line[ln] = '\0';
    while (ln > 0 && (line[ln - 1] == '\r' || line[ln - 1] == '\n'))
        line[--ln] = '\0';
    if (strncmp(line, "HTTP/", 5) == 0) { /* a new response (after a 100 Continue): forget the last */
        job->etag[0] = '\0';
        job->content_length = job->total_size = job->mtime = -1;
        job->retry_after_s = 0;
        return n;
    }
    char *colon = strchr(line, ':');
    if (!colon) return n;
    *colon = '\0';
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (strcasecmp(line, "etag") == 0) {
        if (*v == '"') v++;
        size_t vn = strlen(v);
        if (vn > 0 && v[vn - 1] == '"') v[--vn] = '\0';
        snprintf(job->etag, sizeof job->etag, "%s", v);
    } else if (strcasecmp(line, "content-length") == 0) {
        job->content_length = strtoll(v, NULL, 10);
        if (job->total_size < 0) job->total_size = job->content_length;
    } else if (strcasecmp(line, "content-range") == 0) {
        const char *slash = strchr(v, '/');
        if (slash && slash[1] != '*') job->total_size = strtoll(slash + 1, NULL, 10);
    } else if (strcasecmp(line, "last-modified") == 0) {
        time_t t = curl_getdate(v, NULL);
        job->mtime = t < 0 ? -1 : (int64_t)t;
    } else if (strcasecmp(line, "retry-after") == 0) {
        job->retry_after_s = atoi(v);
    }
    return n;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
    lt_s3_job *job = ud;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code >= 300 || (job->body_may_hold_error && !job->out_mem)) {
        size_t room = job->errbody.len < ERRBODY_MAX ? ERRBODY_MAX - job->errbody.len : 0;
        lt_stg_buf_add(&job->errbody, p, n < room ? n : room); /* a lost error body only shortens a message */
        return n;
    }
    if (job->range[0] && code != 206) {
        job->range_ignored = 1; /* a whole object written at a piece's offset would corrupt the file */
        return 0;
    }
    job->received += (int64_t)n;
    if (job->out_mem) {
        if (lt_stg_buf_add(job->out_mem, p, n)) {
            job->sink_errno = ENOMEM;
            return 0;
        }
    } else if (job->sink_fd >= 0) {
        size_t done = 0;
        while (done < n) {
            ssize_t w = pwrite(job->sink_fd, p + done, n - done, (off_t)job->sink_pos);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                job->sink_errno = w < 0 ? errno : EIO;
                return 0; /* makes curl stop with CURLE_WRITE_ERROR */
            }
            done += (size_t)w;
            job->sink_pos += w;
        }
    }
    return n;
}

/* ---- starting an attempt ---- */

static lt_status load_file_body(lt_s3_job *job, lt_err *err) {
    int fd = open(job->body_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return lt_errorf(err, lt_stg_errno_status(e), "storage: can't read '%s': %s", job->body_path,
                         strerror(e));
    }
    job->file_body = malloc(job->body_len ? job->body_len : 1);
    if (!job->file_body) {
        close(fd);
        return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory reading '%s'", job->body_path);
    }
    size_t done = 0;
    while (done < job->body_len) {
        ssize_t r =
            pread(fd, job->file_body + done, job->body_len - done, (off_t)(job->body_off + (int64_t)done));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            return lt_errorf(err, r < 0 ? lt_stg_errno_status(e) : LT_ERR_FORMAT,
                             "storage: can't read '%s' (%s)", job->body_path,
                             r < 0 ? strerror(e) : "the file shrank while uploading");
        }
        done += (size_t)r;
    }
    close(fd);
    return LT_OK;
}

static const void *job_body(const lt_s3_job *job) {
    return job->body_path ? (const void *)job->file_body : job->body;
}

static lt_status build_url(const lt_s3 *s3, lt_s3_job *job, char **path_out, lt_err *err) {
    char *path = job->object ? lt_stg_strf("%s/%s/%s", s3->base_path, s3->bucket, job->object)
                             : lt_stg_strf("%s/%s", s3->base_path, s3->bucket);
    char *enc = path ? lt_sigv4_uri_encode(path, 1) : NULL;
    char *query = lt_sigv4_canonical_query(job->query, job->n_query);
    if (enc && query) job->url = lt_stg_strf("%s%s%s%s", s3->endpoint, enc, query[0] ? "?" : "", query);
    free(enc);
    free(query);
    if (!job->url) {
        free(path);
        return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    }
    *path_out = path;
    return LT_OK;
}

static int add_header(struct curl_slist **l, const char *name, const char *value) {
    char *h = lt_stg_strf("%s: %s", name, value);
    if (!h) return -1;
    struct curl_slist *n = curl_slist_append(*l, h);
    free(h);
    if (!n) return -1;
    *l = n;
    return 0;
}

static lt_status sign_headers(const lt_s3 *s3, lt_s3_job *job, const char *path, lt_err *err) {
    char amz_date[17];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    lt_sigv4_pair h[8];
    size_t nh = 0;
    h[nh++] = (lt_sigv4_pair){"host", s3->authority};
    h[nh++] = (lt_sigv4_pair){"x-amz-content-sha256", job->payload_hash};
    h[nh++] = (lt_sigv4_pair){"x-amz-date", amz_date};
    if (s3->token) h[nh++] = (lt_sigv4_pair){"x-amz-security-token", s3->token};
    if (job->range[0]) h[nh++] = (lt_sigv4_pair){"range", job->range};
    if (job->if_match) h[nh++] = (lt_sigv4_pair){"if-match", job->if_match};
    int bad = 0;
    for (size_t i = 0; i < nh; i++)
        bad = bad || add_header(&job->hdrs, h[i].name, h[i].value);
    if (job->content_type) bad = bad || add_header(&job->hdrs, "Content-Type", job->content_type);
    /* No "Expect: 100-continue" round trip before bodies. */
    bad = bad || add_header(&job->hdrs, "Expect", "");
    /* curl would label PUT/POST bodies as form data. */
    int has_body = strcmp(job->method, "PUT") == 0 || strcmp(job->method, "POST") == 0;
    if (!job->content_type && has_body)
        bad = bad || add_header(&job->hdrs, "Content-Type", "application/octet-stream");
    if (bad) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    if (!s3->access_key) return LT_OK;
    lt_sigv4_request r = {job->method, path, job->query,        job->n_query,
                          h,           nh,   job->payload_hash, amz_date,
                          s3->region,  "s3", s3->access_key,    s3->secret_key};
    char auth[1024];
    lt_status st = lt_sigv4_authorization(&r, auth, sizeof auth, err);
    if (st != LT_OK) return st;
    return add_header(&job->hdrs, "Authorization", auth)
               ? lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory")
               : LT_OK;
}

static lt_status job_start(lt_storage *s, lt_s3_job *job, lt_err *err) {
    lt_s3 *s3 = s->s3;
    job->attempt++;
    job->http = 0;
    job->etag[0] = '\0';
    job->content_length = job->total_size = job->mtime = -1;
    job->retry_after_s = 0;
    job->sink_errno = 0;
    job->range_ignored = 0;
    job->received = 0;
    job->curl_err[0] = '\0';
    job->errbody.len = 0;
    if (job->out_mem) job->out_mem->len = 0;
    lt_status st = LT_OK;
    if (job->body_path && !job->file_body && (st = load_file_body(job, err)) != LT_OK) return st;
    if (!job->payload_hash[0])
        lt_sigv4_sha256_hex(job_body(job) ? job_body(job) : "", job->body_len, job->payload_hash);
    char *path = NULL;
    free(job->url);
    job->url = NULL;
    if ((st = build_url(s3, job, &path, err)) != LT_OK) return st;
    st = sign_headers(s3, job, path, err);
    free(path);
    if (st != LT_OK) return st;
    job->sink_fd = job->out_fd;
    job->sink_pos = job->out_off;
    if (job->out_path) {
        job->sink_fd = open(job->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        if (job->sink_fd < 0) {
            int e = errno;
            return lt_errorf(err, lt_stg_errno_status(e), "storage: can't create '%s': %s", job->out_path,
                             strerror(e));
        }
        job->sink_pos = 0;
    }
    CURL *c = curl_easy_init();
    if (!c) return lt_errorf(err, LT_ERR_NOMEM, "storage: curl_easy_init failed");
    job->easy = c;
    const lt_storage_opts *o = &s->opts;
    curl_easy_setopt(c, CURLOPT_URL, job->url);
    curl_easy_setopt(c, CURLOPT_PRIVATE, job);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, job->hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L); /* the path is signed as sent: no dot-segment rewriting */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, job->curl_err);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, job);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, job);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)o->request_timeout_ms);
    if (o->stall_timeout_s > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)o->stall_timeout_s);
    }
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    /* curl's 16 KiB default costs a receive and a write per 16 KiB; the curl tool uses 100 KiB */
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 128L * 1024);
    if (strcmp(job->method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(job->method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, job->method);
        if (strcmp(job->method, "DELETE") != 0) {
            /* PUT and POST bodies go as POSTFIELDS (from memory, no copy) under the custom method. */
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body_len);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, job_body(job) ? job_body(job) : "");
        }
    }
    s->stats.requests++;
    if (curl_multi_add_handle(s3->multi, c) != CURLM_OK)
        return lt_errorf(err, LT_ERR_NOMEM, "storage: curl_multi_add_handle failed");
    return LT_OK;
}

/* ---- finishing an attempt ---- */

static void job_release(lt_storage *s, lt_s3_job *job) {
    if (job->easy) {
        curl_multi_remove_handle(s->s3->multi, job->easy);
        curl_easy_cleanup(job->easy);
        job->easy = NULL;
    }
    curl_slist_free_all(job->hdrs);
    job->hdrs = NULL;
    if (job->out_path && job->sink_fd >= 0) close(job->sink_fd);
    job->sink_fd = -1;
}

static int curl_transient(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
        return 1;
    default:
        return 0;
    }
}

/* S3 error codes that come with a 4xx but are worth retrying. */
static int s3_code_transient(const char *code) {
    return code && (strcmp(code, "RequestTimeout") == 0 || strcmp(code, "SlowDown") == 0 ||
                    strcmp(code, "InternalError") == 0 || strcmp(code, "RequestTimeTooSkewed") == 0);
}

/* Decides how an attempt ended: LT_OK, or a status with job->msg filled; *transient says whether to retry. */
static lt_status classify(lt_storage *s, lt_s3_job *job, CURLcode rc, int *transient) {
    lt_s3 *s3 = s->s3;
    *transient = 0;
    curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &job->http);
    char where[600];
    msgf(where, sizeof where, "%s s3://%s/%s", job->method, s3->bucket, job->object ? job->object : "");
    if (rc != CURLE_OK) {
        if (rc == CURLE_WRITE_ERROR && job->range_ignored) {
            msgf(job->msg, sizeof job->msg, "%s: the server ignored the Range header (HTTP %ld)", where,
                 job->http);
            return LT_ERR_FORMAT;
        }
        if (rc == CURLE_WRITE_ERROR && job->sink_errno) {
            msgf(job->msg, sizeof job->msg, "%s: writing the download failed: %s", where,
                 strerror(job->sink_errno));
            return job->sink_errno == ENOMEM ? LT_ERR_NOMEM : lt_stg_errno_status(job->sink_errno);
        }
        *transient = curl_transient(rc);
        msgf(job->msg, sizeof job->msg, "%s: %s (%s)", where, job->curl_err[0] ? job->curl_err : "",
             curl_easy_strerror(rc));
        return *transient ? LT_ERR_IO : LT_ERR_ARG;
    }
    long code = job->http;
    const char *body = job->errbody.data ? job->errbody.data : "";
    const char *end = body + job->errbody.len;
    if (code >= 200 && code < 300) {
        if (job->body_may_hold_error) {
            const char *buf = job->out_mem && job->out_mem->data ? job->out_mem->data : body;
            size_t len = job->out_mem ? job->out_mem->len : job->errbody.len;
            if (!lt_stg_xml_find(buf, buf + len, "Error", &end)) return LT_OK;
            body = buf;
            end = buf + len;
        } else if (job->expect_len >= 0 && job->received != job->expect_len) {
            *transient = 1;
            msgf(job->msg, sizeof job->msg, "%s: got %lld body bytes, expected %lld", where,
                 (long long)job->received, (long long)job->expect_len);
            return LT_ERR_IO;
        } else {
            return LT_OK;
        }
    }
    char *ecode = lt_stg_xml_text(body, end, "Code");
    char *emsg = lt_stg_xml_text(body, end, "Message");
    lt_status st;
    if (code == 404) {
        msgf(job->msg, sizeof job->msg, "not found: %s (%s: HTTP 404%s%s)", job->key[0] ? job->key : "bucket",
             where, ecode ? " " : "", ecode ? ecode : "");
        st = LT_ERR_FORMAT;
    } else {
        *transient = code == 408 || code == 429 || (code >= 500 && code != 501) || s3_code_transient(ecode);
        msgf(job->msg, sizeof job->msg, "%s: HTTP %ld%s%s%s%s", where, code, ecode ? " " : "",
             ecode ? ecode : "", emsg ? ": " : "", emsg ? emsg : "");
        st = *transient ? LT_ERR_IO : LT_ERR_FORMAT;
    }
    free(ecode);
    free(emsg);
    return st;
}

static int backoff_ms(lt_storage *s, const lt_s3_job *job) {
    const lt_storage_opts *o = &s->opts;
    int64_t d = o->retry_base_ms;
    for (int i = 1; i < job->attempt && d < o->retry_max_ms; i++)
        d *= 2;
    if (d > o->retry_max_ms) d = o->retry_max_ms;
    /* Equal jitter: half fixed, half random, so many clients don't retry in lockstep. */
    int64_t half = d / 2;
    d = half + (half > 0 ? (int64_t)lt_rng_below(&s->rng, (uint32_t)half + 1) : 0);
    if (job->retry_after_s > 0) {
        int64_t ra = (int64_t)job->retry_after_s * 1000;
        if (ra > o->retry_max_ms) ra = o->retry_max_ms;
        if (ra > d) d = ra;
    }
    return (int)d;
}

/* Returns 1 when the job is done (ok or failed), 0 when it waits for a retry. */
static int job_finish(lt_storage *s, lt_s3_job *job, CURLcode rc) {
    int transient;
    lt_status st = classify(s, job, rc, &transient);
    /* Downloads are not fsync'd: a downloaded file is a copy of an object that is still in S3, renamed
     * into place only when complete, and a machine crash costs a download at worst. An fsync per object
     * made a data set of small images download at a quarter of curl's speed. */
    job_release(s, job);
    lt_stg_s3_scrub(s->s3, job->msg, sizeof job->msg);
    if (st != LT_OK && transient && job->attempt <= s->opts.max_retries) {
        int delay = backoff_ms(s, job);
        job->state = JOB_WAITING;
        job->wake_ms = now_ms() + delay;
        s->stats.retries++;
        char line[900];
        msgf(line, sizeof line, "attempt %d failed, retrying in %d ms: %s", job->attempt, delay, job->msg);
        lt_stg_event(s, LT_STORAGE_EV_RETRY, job->key, job->attempt, delay, 0, line);
        return 0;
    }
    if (st != LT_OK && job->attempt > 1) {
        size_t n = strlen(job->msg);
        msgf(job->msg + n, sizeof job->msg - n, " (gave up after %d attempts)", job->attempt);
    }
    job->st = st;
    job->state = JOB_DONE;
    free(job->file_body); /* a part's body is only needed while it is being sent */
    job->file_body = NULL;
    return 1;
}

/* A local problem before sending (unreadable file, no memory) fails the job without a retry. */
static void fail_start(lt_storage *s, lt_s3_job *job, lt_status st, const lt_err *e) {
    job_release(s, job);
    job->state = JOB_DONE;
    job->st = st;
    msgf(job->msg, sizeof job->msg, "%s", e->msg);
    lt_stg_s3_scrub(s->s3, job->msg, sizeof job->msg);
}

lt_status lt_stg_s3_run(lt_storage *s, lt_s3_job *jobs, size_t n, lt_err *err) {
    lt_s3 *s3 = s->s3;
    size_t next = 0, done = 0, active = 0, waiting = 0;
    lt_s3_job *failed = NULL;
    for (size_t i = 0; i < n; i++)
        jobs[i].state = JOB_PENDING;
    while (done < n && !failed) {
        int64_t now = now_ms();
        int64_t next_wake = -1;
        lt_err e = {{0}};
        /* Retries first (they were started before), then new jobs. */
        for (size_t i = 0; waiting > 0 && i < n && !failed; i++) {
            lt_s3_job *j = &jobs[i];
            if (j->state != JOB_WAITING) continue;
            if (j->wake_ms <= now && active < (size_t)s->opts.parallel) {
                waiting--;
                j->state = JOB_ACTIVE;
                lt_status st = job_start(s, j, &e);
                if (st != LT_OK) {
                    fail_start(s, j, st, &e);
                    failed = j;
                } else {
                    active++;
                }
            } else if (next_wake < 0 || j->wake_ms < next_wake) {
                next_wake = j->wake_ms;
            }
        }
        while (!failed && next < n && active < (size_t)s->opts.parallel) {
            lt_s3_job *j = &jobs[next++];
            j->state = JOB_ACTIVE;
            lt_status st = job_start(s, j, &e);
            if (st != LT_OK) {
                fail_start(s, j, st, &e);
                failed = j;
            } else {
                active++;
            }
        }
        if (failed) break;
        int running = 0;
        curl_multi_perform(s3->multi, &running);
        CURLMsg *m;
        int left, ended = 0;
        while ((m = curl_multi_info_read(s3->multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) continue;
            lt_s3_job *j = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            CURLcode rc = m->data.result;
            active--;
            ended++;
            if (job_finish(s, j, rc)) {
                done++;
                if (j->st != LT_OK && !failed) failed = j;
            } else {
                waiting++;
            }
        }
        if (done == n || failed) break;
        /* A freed slot takes the next job at once, not after the other transfers' next bytes. */
        if (ended && next < n) continue;
        int timeout = 100;
        if (next_wake >= 0) {
            int64_t until = next_wake - now_ms();
            if (until < timeout) timeout = until < 0 ? 0 : (int)until;
        }
        if (active > 0) {
            curl_multi_poll(s3->multi, NULL, 0, timeout, NULL);
        } else if (timeout > 0) {
            struct timespec ts = {timeout / 1000, (long)(timeout % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    if (!failed) return LT_OK;
    /* Abort everything else. */
    for (size_t i = 0; i < n; i++) {
        lt_s3_job *j = &jobs[i];
        if (j->state == JOB_DONE) continue;
        job_release(s, j);
        free(j->file_body);
        j->file_body = NULL;
        j->state = JOB_DONE;
        j->st = LT_ERR_CANCELLED;
        msgf(j->msg, sizeof j->msg, "cancelled after another transfer failed");
    }
    return lt_errorf(err, failed->st, "%s", failed->msg);
}
