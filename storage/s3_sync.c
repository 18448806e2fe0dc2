/* s3_sync.c - whole-prefix transfers for S3: sync_down (parallel GETs through the ETag cache, overlapping
 * the listing) and sync_up (parallel PUTs, skipping files whose size and MD5 already match the remote
 * object). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "storage/s3.h"

/* sync_down lists a page, starts its GETs, and lists the next page while they run, so the listing
 * (s3rver: 0.3 s for a page of 1,000 keys) overlaps with the downloads instead of preceding them.
 * Nothing is written under local_dir before the whole listing has been read and every key checked:
 * downloads go to temporary files (in local_dir itself, or in the cache), cache hits are linked and
 * downloads renamed into place only at the end. */

/* Per-object bookkeeping for sync_down. */
typedef struct {
    char *key; /* relative to the storage root, for messages and events */
    int64_t size;
    char *dest;  /* local_dir/<key without prefix> */
    char *cfile; /* cache entry, or NULL without a cache */
    char *tmp;   /* where the GET writes; NULL when the cache has the object */
    char *full;  /* object key in the bucket */
    char *quoted_etag;
    int got; /* the GET to tmp completed */
} down_item;

typedef struct {
    lt_storage *s;
    const char *prefix, *local_dir;
    size_t pn;
    down_item *items; /* (n, cap), in listing order */
    size_t n, cap;
    lt_status st; /* a refused key or a local failure while listing */
    lt_err *err;
} down_list;

/* Checks a listed key and adds its item (its cache entry looked up); non-zero stops the listing. */
static int down_listed(void *ctx, const lt_storage_obj *o) {
    down_list *d = ctx;
    lt_storage *s = d->s;
    lt_s3 *s3 = s->s3;
    lt_err e;
    if (strncmp(o->key, d->prefix, d->pn) != 0 || lt_storage_check_key(o->key + d->pn, &e) != LT_OK) {
        d->st = lt_errorf(d->err, LT_ERR_FORMAT,
                          "storage: sync_down s3://%s/%s%s: refusing listed key '%s': it would escape '%s'",
                          s3->bucket, s3->root, d->prefix, o->key, d->local_dir);
        return 1;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        down_item *m = realloc(d->items, cap * sizeof *m);
        if (!m) goto nomem;
        d->items = m;
        d->cap = cap;
    }
    down_item *it = &d->items[d->n++];
    memset(it, 0, sizeof *it);
    it->size = o->size;
    it->key = strdup(o->key);
    it->dest = lt_uri_join(d->local_dir, o->key + d->pn);
    it->full = lt_stg_strf("%s%s", s3->root, o->key);
    it->quoted_etag = o->etag[0] ? lt_stg_strf("\"%s\"", o->etag) : NULL;
    if (!it->key || !it->dest || !it->full || (o->etag[0] && !it->quoted_etag)) goto nomem;
    char *cdir = NULL;
    if (s->opts.cache_dir && o->etag[0]) {
        if ((d->st = lt_stg_cache_paths(s->opts.cache_dir, s3->origin, it->full, o->etag, &cdir, &it->cfile,
                                        d->err)) != LT_OK)
            return 1;
        if (lt_stg_cache_has(it->cfile, o->size)) {
            free(cdir);
            return 0;
        }
        if ((d->st = lt_stg_mkdirs(cdir, d->err)) != LT_OK) {
            free(cdir);
            return 1;
        }
    }
    /* Unique within this call and across processes (pid); a leftover from a crash is overwritten. In
     * local_dir itself rather than next to dest, so no folder below local_dir is made before the end. */
    it->tmp =
        lt_stg_strf("%s/" LT_STG_TMP_MARK "%ld-%zu", cdir ? cdir : d->local_dir, (long)getpid(), d->n - 1);
    free(cdir);
    if (!it->tmp) goto nomem;
    return 0;
nomem:
    d->st = lt_errorf(d->err, LT_ERR_NOMEM, "storage: out of memory");
    return 1;
}

/* Moves a completed download into place: into the cache and linked from there, or renamed. *made: the
 * last folder made for a destination (objects come sorted, so most share their predecessor's). */
static lt_status down_place(down_item *it, char **made, lt_err *err) {
    if (it->cfile) {
        lt_status st = lt_stg_cache_commit(it->tmp, it->cfile, err);
        return st == LT_OK ? lt_stg_link_or_copy(it->cfile, it->dest, err) : st;
    }
    const char *slash = strrchr(it->dest, '/');
    size_t dl = slash ? (size_t)(slash - it->dest) : 0;
    if (dl > 0 && !(*made && strlen(*made) == dl && !strncmp(*made, it->dest, dl))) {
        free(*made);
        if (!(*made = strndup(it->dest, dl))) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
        lt_status st = lt_stg_mkdirs(*made, err);
        if (st != LT_OK) {
            free(*made);
            *made = NULL;
            return st;
        }
    }
    if (rename(it->tmp, it->dest) == 0) return LT_OK;
    int en = errno;
    /* dest's folder may be a link to another file system */
    lt_status st = en == EXDEV ? lt_stg_copy_atomic(it->tmp, it->dest, NULL, err)
                               : lt_errorf(err, lt_stg_errno_status(en), "storage: can't write '%s': %s",
                                           it->dest, strerror(en));
    unlink(it->tmp);
    return st;
}

lt_status lt_stg_s3_sync_down(lt_storage *s, const char *prefix, const char *local_dir, lt_err *err) {
    lt_s3 *s3 = s->s3;
    down_list d = {s, prefix, local_dir, strlen(prefix), NULL, 0, 0, LT_OK, err};
    char max_keys[16];
    snprintf(max_keys, sizeof max_keys, "%d", s->opts.list_page_size);
    char *full = lt_stg_strf("%s%s", s3->root, prefix), *token = NULL;
    lt_stg_buf body = {0};
    lt_s3_job *jobs = NULL;
    if (!full) return lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
    /* The first page alone, and a short one: no GET can start before it. 100 keys come back in a tenth of
     * the time of 1,000 and cost at most one more listing request. */
    char first_keys[16];
    snprintf(first_keys, sizeof first_keys, "%d",
             s->opts.list_page_size < 100 ? s->opts.list_page_size : 100);
    lt_s3_job lj;
    lt_stg_s3_list_job(&lj, prefix, full, first_keys, NULL, &body);
    lt_status st = lt_stg_s3_run(s, &lj, 1, err);
    lt_stg_s3_job_free(&lj);
    if (st == LT_OK) st = lt_stg_s3_list_parse(s, &body, down_listed, &d, &token, err);
    if (st == LT_OK) st = d.st;
    if (st == LT_OK) st = lt_stg_mkdirs(local_dir, err);
    /* then each page's GETs, with the next page's listing first among them */
    for (size_t from = 0; st == LT_OK && (from < d.n || token);) {
        size_t upto = d.n, nj = 0;
        free(jobs);
        if (!(jobs = calloc(upto - from + 1, sizeof *jobs))) {
            st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
            break;
        }
        char *page = token;
        token = NULL;
        if (page) lt_stg_s3_list_job(&jobs[nj++], prefix, full, max_keys, page, &body);
        for (size_t i = from; i < upto; i++) {
            down_item *it = &d.items[i];
            if (!it->tmp) continue;
            lt_s3_job *j = &jobs[nj++];
            lt_stg_s3_job_init(j, "GET", it->key, it->full);
            j->out_path = it->tmp;
            j->expect_len = it->size;
            j->if_match = it->quoted_etag;
        }
        st = lt_stg_s3_run(s, jobs, nj, err);
        for (size_t i = from, k = page ? 1 : 0; i < upto; i++)
            if (d.items[i].tmp) {
                lt_s3_job *j = &jobs[k++];
                d.items[i].got = j->state == LT_S3_JOB_DONE && j->st == LT_OK;
            }
        for (size_t k = 0; k < nj; k++)
            lt_stg_s3_job_free(&jobs[k]);
        if (st == LT_OK && page) {
            st = lt_stg_s3_list_parse(s, &body, down_listed, &d, &token, err);
            if (st == LT_OK) st = d.st;
        }
        free(page);
        from = upto;
    }
    /* A refused key: nothing goes into place. Otherwise keep what did arrive, even after a failure (in the
     * cache it saves the next attempt), and drop the rest. */
    int refused = d.st != LT_OK;
    char *made = NULL;
    for (size_t i = 0; i < d.n; i++) {
        down_item *it = &d.items[i];
        lt_err e;
        lt_status ps;
        if (refused || (it->tmp && !it->got)) {
            if (it->tmp) unlink(it->tmp); /* a partial or refused download, or none */
            continue;
        }
        if (!it->tmp) { /* a cache hit */
            ps = it->cfile ? lt_stg_link_or_copy(it->cfile, it->dest, &e) : LT_OK;
            if (ps == LT_OK) {
                s->stats.cache_hits++;
                lt_stg_event(s, LT_STORAGE_EV_CACHE_HIT, it->key, 0, 0, it->size, "cached");
            }
        } else if ((ps = down_place(it, &made, &e)) == LT_OK) {
            s->stats.objects_downloaded++;
            s->stats.bytes_downloaded += it->size;
            lt_stg_event(s, LT_STORAGE_EV_DOWNLOADED, it->key, 0, 0, it->size, "downloaded");
        }
        if (ps != LT_OK && st == LT_OK) st = lt_errorf(err, ps, "%s", e.msg);
    }
    free(made);
    for (size_t i = 0; i < d.n; i++) {
        free(d.items[i].key);
        free(d.items[i].dest);
        free(d.items[i].cfile);
        free(d.items[i].tmp);
        free(d.items[i].full);
        free(d.items[i].quoted_etag);
    }
    free(d.items);
    free(jobs);
    free(token);
    free(full);
    lt_stg_buf_free(&body);
    return st;
}

/* 1 when path's MD5 equals etag (a plain, single-part S3 ETag); 0 otherwise or on any error. */
static int md5_matches(const char *path, const char *etag) {
    if (strlen(etag) != 32 || strchr(etag, '-')) return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1;
    unsigned char buf[1 << 16];
    ssize_t r;
    while (ok && (r = read(fd, buf, sizeof buf)) != 0) {
        if (r < 0 && errno == EINTR) continue;
        ok = r > 0 && EVP_DigestUpdate(ctx, buf, (size_t)r) == 1;
    }
    close(fd);
    unsigned char md[16];
    unsigned int mdn = 0;
    ok = ok && EVP_DigestFinal_ex(ctx, md, &mdn) == 1 && mdn == 16;
    EVP_MD_CTX_free(ctx);
    char hex[33];
    for (int i = 0; ok && i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return ok && strcasecmp(hex, etag) == 0;
}

static int cmp_obj_key(const void *a, const void *b) {
    return strcmp(((const lt_storage_obj *)a)->key, ((const lt_storage_obj *)b)->key);
}

lt_status lt_stg_s3_sync_up(lt_storage *s, const char *local_dir, const char *prefix, lt_err *err) {
    lt_s3 *s3 = s->s3;
    char **rel = NULL;
    size_t n = 0;
    lt_storage_obj_list remote = {0};
    lt_status st = lt_stg_walk(local_dir, &rel, &n, err);
    if (st == LT_OK) st = lt_storage_list_all(s, prefix, &remote, err);
    if (st != LT_OK) {
        lt_stg_free_strs(rel, n);
        return st;
    }
    char **paths = calloc(n ? n : 1, sizeof *paths);
    char **keys = calloc(n ? n : 1, sizeof *keys);
    char **fulls = calloc(n ? n : 1, sizeof *fulls);
    int64_t *sizes = calloc(n ? n : 1, sizeof *sizes);
    lt_s3_job *jobs = calloc(n ? n : 1, sizeof *jobs);
    int *job_of = calloc(n ? n : 1, sizeof *job_of);
    size_t nj = 0;
    if (!paths || !keys || !fulls || !sizes || !jobs || !job_of) {
        st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
        goto done;
    }
    for (size_t i = 0; st == LT_OK && i < n; i++) {
        job_of[i] = -1;
        paths[i] = lt_uri_join(local_dir, rel[i]);
        keys[i] = lt_stg_strf("%s%s", prefix, rel[i]);
        fulls[i] = keys[i] ? lt_stg_strf("%s%s", s3->root, keys[i]) : NULL;
        if (!paths[i] || !fulls[i]) {
            st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
            break;
        }
        if ((st = lt_storage_check_key(keys[i], err)) != LT_OK) break;
        struct stat sb;
        job_of[i] = -2;                         /* nothing to send unless decided below */
        if (stat(paths[i], &sb) != 0) continue; /* vanished since the walk */
        sizes[i] = (int64_t)sb.st_size;
        lt_storage_obj probe = {keys[i], 0, "", 0};
        const lt_storage_obj *r =
            remote.n ? bsearch(&probe, remote.items, remote.n, sizeof *remote.items, cmp_obj_key) : NULL;
        if (r && r->size == sizes[i] && md5_matches(paths[i], r->etag)) {
            s->stats.cache_hits++;
            lt_stg_event(s, LT_STORAGE_EV_CACHE_HIT, keys[i], 0, 0, sizes[i], "unchanged, not uploaded");
            continue;
        }
        if (sizes[i] >= s->opts.multipart_threshold) {
            job_of[i] = -1; /* uploaded in parts below, one at a time */
            continue;
        }
        lt_s3_job *j = &jobs[nj];
        lt_stg_s3_job_init(j, "PUT", keys[i], fulls[i]);
        j->body_path = paths[i];
        j->body_len = (size_t)sizes[i];
        job_of[i] = (int)nj++;
    }
    if (st == LT_OK) st = lt_stg_s3_run(s, jobs, nj, err);
    for (size_t i = 0; i < n; i++) {
        if (job_of[i] < 0 || jobs[job_of[i]].st != LT_OK || jobs[job_of[i]].state != LT_S3_JOB_DONE) continue;
        s->stats.objects_uploaded++;
        s->stats.bytes_uploaded += sizes[i];
        lt_stg_event(s, LT_STORAGE_EV_UPLOADED, keys[i], 0, 0, sizes[i], "uploaded");
    }
    for (size_t i = 0; st == LT_OK && i < n; i++) {
        if (job_of[i] != -1) continue;
        st = lt_stg_s3_put(s, keys[i], paths[i], err);
    }
done:
    for (size_t i = 0; i < nj; i++)
        lt_stg_s3_job_free(&jobs[i]);
    for (size_t i = 0; i < n; i++) {
        if (paths) free(paths[i]);
        if (keys) free(keys[i]);
        if (fulls) free(fulls[i]);
    }
    free(paths);
    free(keys);
    free(fulls);
    free(sizes);
    free(jobs);
    free(job_of);
    lt_stg_free_strs(rel, n);
    lt_storage_obj_list_free(&remote);
    return st;
}
