/* s3_sync.c - whole-prefix transfers for S3: sync_down (parallel GETs through the ETag cache) and sync_up
 * (parallel PUTs, skipping files whose size and MD5 already match the remote object). */
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

/* Per-object bookkeeping for sync_down. */
typedef struct {
    char *dest;  /* local_dir/<relative key> */
    char *cfile; /* cache entry, or NULL without a cache */
    char *tmp;   /* where the GET writes */
    char *full;  /* object key in the bucket */
    char *quoted_etag;
    int job; /* index in jobs, -1 when served without a download */
} down_item;

lt_status lt_stg_s3_sync_down(lt_storage *s, const char *prefix, const char *local_dir, lt_err *err) {
    lt_s3 *s3 = s->s3;
    lt_storage_obj_list l;
    lt_status st = lt_storage_list_all(s, prefix, &l, err);
    if (st != LT_OK) return st;
    size_t pn = strlen(prefix);
    /* Refuse the whole sync before writing anything if one listed key would leave local_dir. */
    for (size_t i = 0; i < l.n; i++) {
        lt_err e;
        if (strncmp(l.items[i].key, prefix, pn) != 0 ||
            lt_storage_check_key(l.items[i].key + pn, &e) != LT_OK) {
            st = lt_errorf(err, LT_ERR_FORMAT,
                           "storage: sync_down s3://%s/%s%s: refusing listed key '%s': it would "
                           "escape '%s'",
                           s3->bucket, s3->root, prefix, l.items[i].key, local_dir);
            lt_storage_obj_list_free(&l);
            return st;
        }
    }
    down_item *items = calloc(l.n ? l.n : 1, sizeof *items);
    lt_s3_job *jobs = calloc(l.n ? l.n : 1, sizeof *jobs);
    size_t nj = 0;
    if (!items || !jobs) {
        st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
        goto done;
    }
    st = lt_stg_mkdirs(local_dir, err);
    for (size_t i = 0; st == LT_OK && i < l.n; i++) {
        const lt_storage_obj *o = &l.items[i];
        down_item *it = &items[i];
        it->job = -1;
        it->dest = lt_uri_join(local_dir, o->key + pn);
        it->full = lt_stg_strf("%s%s", s3->root, o->key);
        if (!it->dest || !it->full) {
            st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
            break;
        }
        char *cdir = NULL;
        if (s->opts.cache_dir && o->etag[0]) {
            st = lt_stg_cache_paths(s->opts.cache_dir, s3->origin, it->full, o->etag, &cdir, &it->cfile, err);
            if (st != LT_OK) break;
            if (lt_stg_cache_has(it->cfile, o->size)) {
                free(cdir);
                st = lt_stg_link_or_copy(it->cfile, it->dest, err);
                if (st == LT_OK) {
                    s->stats.cache_hits++;
                    lt_stg_event(s, LT_STORAGE_EV_CACHE_HIT, o->key, 0, 0, o->size, "cached");
                }
                continue;
            }
            st = lt_stg_mkdirs(cdir, err);
            /* Unique within this call and across processes (pid); a leftover from a crash is overwritten. */
            if (st == LT_OK) it->tmp = lt_stg_strf("%s/" LT_STG_TMP_MARK "%ld-%zu", cdir, (long)getpid(), i);
            free(cdir);
        } else {
            st = lt_stg_mkdirs_for(it->dest, err);
            const char *slash = strrchr(it->dest, '/');
            int dl = slash ? (int)(slash - it->dest + 1) : 0;
            if (st == LT_OK)
                it->tmp = lt_stg_strf("%.*s" LT_STG_TMP_MARK "%ld-%zu", dl, it->dest, (long)getpid(), i);
        }
        if (st != LT_OK) break;
        it->quoted_etag = o->etag[0] ? lt_stg_strf("\"%s\"", o->etag) : NULL;
        if (!it->tmp || (o->etag[0] && !it->quoted_etag)) {
            st = lt_errorf(err, LT_ERR_NOMEM, "storage: out of memory");
            break;
        }
        lt_s3_job *j = &jobs[nj];
        lt_stg_s3_job_init(j, "GET", o->key, it->full);
        j->out_path = it->tmp;
        j->expect_len = o->size;
        j->if_match = it->quoted_etag;
        it->job = (int)nj++;
    }
    if (st == LT_OK) st = lt_stg_s3_run(s, jobs, nj, err);
    /* Keep what did arrive (in the cache it saves the next attempt), drop the rest. */
    for (size_t i = 0; items && i < l.n; i++) {
        down_item *it = &items[i];
        if (it->job < 0) continue;
        lt_s3_job *j = &jobs[it->job];
        if (j->state != LT_S3_JOB_DONE || j->st != LT_OK) {
            unlink(it->tmp);
            continue;
        }
        lt_err e;
        lt_status cs = it->cfile ? lt_stg_cache_commit(it->tmp, it->cfile, &e) : LT_OK;
        if (cs == LT_OK) cs = it->cfile ? lt_stg_link_or_copy(it->cfile, it->dest, &e) : LT_OK;
        if (cs == LT_OK && !it->cfile && rename(it->tmp, it->dest) != 0) {
            int en = errno;
            cs = lt_errorf(&e, lt_stg_errno_status(en), "storage: can't write '%s': %s", it->dest,
                           strerror(en));
            unlink(it->tmp);
        }
        if (cs != LT_OK) {
            if (st == LT_OK) st = lt_errorf(err, cs, "%s", e.msg);
            continue;
        }
        s->stats.objects_downloaded++;
        s->stats.bytes_downloaded += l.items[i].size;
        lt_stg_event(s, LT_STORAGE_EV_DOWNLOADED, l.items[i].key, 0, 0, l.items[i].size, "downloaded");
    }
done:
    for (size_t i = 0; items && i < l.n; i++) {
        free(items[i].dest);
        free(items[i].cfile);
        free(items[i].tmp);
        free(items[i].full);
        free(items[i].quoted_etag);
    }
    for (size_t i = 0; i < nj; i++)
        lt_stg_s3_job_free(&jobs[i]);
    free(items);
    free(jobs);
    lt_storage_obj_list_free(&l);
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
