/* batch.c - a batch inference's body (see batch.h): list, load, predict in batches, write JSON Lines,
 * checkpoint to storage, resume. */
#define _GNU_SOURCE
#include "batch.h"

#include "inference/model.h"
#include "io/fsutil.h"
#include "io/image.h"
#include "tasks/train_common.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK_FMT ".lathe/batch/part-%06d.jsonl" /* the lines added since the previous checkpoint */
#define STATE_KEY ".lathe/batch/state.json"

/* ---- the image list ---- */

typedef struct {
    char **items;
    size_t n, cap;
} path_list;

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static lt_status walk(const char *root, const char *rel, path_list *l, lt_err *err) {
    char *dirpath = rel[0] ? lt_path_join(root, rel) : strdup(root);
    DIR *d = dirpath ? opendir(dirpath) : NULL;
    if (!d) {
        lt_status st = dirpath ? lt_errorf(err, LT_ERR_IO, "%s: cannot read the folder", dirpath)
                               : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        free(dirpath);
        return st;
    }
    lt_status st = LT_OK;
    struct dirent *e;
    while (st == LT_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ., .., and hidden files and folders */
        char *key = rel[0] ? lt_path_join(rel, e->d_name) : strdup(e->d_name);
        char *full = key ? lt_path_join(root, key) : NULL;
        struct stat sb;
        if (!key || !full) {
            st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        } else if (stat(full, &sb) != 0) {
            /* a dangling link: nothing to read */
        } else if (S_ISDIR(sb.st_mode)) {
            st = walk(root, key, l, err);
        } else if (S_ISREG(sb.st_mode) && is_image_name(e->d_name)) {
            if (l->n == l->cap) {
                size_t cap = l->cap ? l->cap * 2 : 64;
                char **items = realloc(l->items, cap * sizeof *items);
                if (!items) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
                if (items) l->items = items, l->cap = cap;
            }
            if (st == LT_OK) {
                l->items[l->n++] = key;
                key = NULL;
            }
        }
        free(key);
        free(full);
    }
    closedir(d);
    free(dirpath);
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void lt_batch_paths_free(char **paths, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

lt_status lt_batch_list_images(const char *dir, char ***paths, size_t *n, lt_err *err) {
    path_list l = {0};
    lt_status st = walk(dir, "", &l, err);
    if (st != LT_OK) {
        lt_batch_paths_free(l.items, l.n);
        *paths = NULL;
        *n = 0;
        return st;
    }
    if (l.n) qsort(l.items, l.n, sizeof *l.items, cmp_str);
    *paths = l.items;
    *n = l.n;
    return LT_OK;
}

/* FNV-1a 64 of the list, '\n'-separated: a resumed run continues only on the very same list. */
static uint64_t list_hash(char *const *paths, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        for (const char *s = paths[i];; s++) {
            h = (h ^ (unsigned char)(*s ? *s : '\n')) * 1099511628211ULL;
            if (!*s) break;
        }
    return h;
}

/* ---- one run ---- */

typedef struct {
    const lt_batch_opts *o;
    char **paths; /* (n) */
    size_t n;
    char hash[17];
    char *local; /* <work_dir>/predictions.jsonl */
    FILE *f;     /* local, open for appending */
    int64_t done, succeeded, failed;
    cJSON *failures; /* [{"path","error"}] */
    int64_t ck_done; /* images in the newest checkpoint */
    double ck_time;  /* lt_now() of the newest checkpoint (or of the start) */
    long ck_bytes;   /* bytes of the local file in the newest checkpoint */
    int n_chunks;    /* chunk objects the newest checkpoint is made of */
    int chunks_seen; /* chunks the checkpoint found at the start named (deleted at the end too) */
} run;

static lt_status add_failure(run *r, const char *path, const char *msg, lt_err *err) {
    cJSON *f = cJSON_CreateObject();
    if (!f || !cJSON_AddStringToObject(f, "path", path) || !cJSON_AddStringToObject(f, "error", msg)) {
        cJSON_Delete(f);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    }
    cJSON_AddItemToArray(r->failures, f);
    r->failed++;
    return LT_OK;
}

/* Folds the lines of a resumed part file into the counts (and checks they name the expected images). */
static lt_status count_lines(run *r, const char *data, size_t len, lt_err *err) {
    const char *p = data, *end = data + len;
    int64_t i = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        cJSON *line = cJSON_ParseWithLength(p, (size_t)(nl - p));
        const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(line, "path"));
        const char *error = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(line, "error"));
        int ok = path && (size_t)i < r->n && !strcmp(path, r->paths[i]);
        lt_status st = LT_OK;
        if (ok && error)
            st = add_failure(r, path, error, err);
        else if (ok)
            r->succeeded++;
        cJSON_Delete(line);
        if (st != LT_OK) return st;
        if (!ok)
            return lt_errorf(err, LT_ERR_FORMAT, "line %lld does not name image %lld", (long long)i + 1,
                             (long long)i + 1);
        i++;
        p = nl + 1;
    }
    if (i != r->done)
        return lt_errorf(err, LT_ERR_FORMAT, "%lld lines for %lld images", (long long)i, (long long)r->done);
    return LT_OK;
}

/* Concatenates the checkpoint's chunks 0..n-1 into one buffer (*data, *len); a missing chunk -> *data NULL.
 */
static lt_status get_chunks(lt_storage *out, int n, void **data, size_t *len, lt_err *err) {
    char *all = NULL;
    size_t total = 0;
    *data = NULL;
    *len = 0;
    for (int i = 0; i < n; i++) {
        char key[64];
        snprintf(key, sizeof key, CHUNK_FMT, i);
        int exists = 0;
        void *chunk = NULL;
        size_t clen = 0;
        lt_status st = lt_storage_exists(out, key, &exists, err);
        if (st == LT_OK && exists) st = lt_storage_get_mem(out, key, &chunk, &clen, err);
        if (st != LT_OK || !exists) {
            free(all);
            return st;
        }
        char *grown = realloc(all, total + clen + 1);
        if (!grown) {
            free(chunk);
            free(all);
            return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        }
        all = grown;
        memcpy(all + total, chunk, clen);
        total += clen;
        free(chunk);
    }
    *data = all ? all : calloc(1, 1);
    *len = total;
    return *data ? LT_OK : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
}

/* Reads the checkpoint when there is a usable one: r->done and the counts from it, the local file holding
 * its lines. Otherwise starts the local file empty. A damaged or foreign checkpoint is ignored (the images
 * are scored again) rather than failing the job. A checkpoint is a state object naming how many chunk objects
 * hold its lines (each checkpoint uploads only the lines added since the one before, so the uploads stay
 * linear in the number of images). */
static lt_status load_checkpoint(run *r, lt_err *err) {
    lt_storage *out = r->o->out;
    int exists = 0, chunks = 0;
    void *state = NULL, *part = NULL;
    size_t state_len = 0, part_len = 0;
    lt_status st = lt_storage_exists(out, STATE_KEY, &exists, err);
    if (st == LT_OK && exists) st = lt_storage_get_mem(out, STATE_KEY, &state, &state_len, err);
    cJSON *s = state ? cJSON_ParseWithLength(state, state_len) : NULL;
    const cJSON *jchunks = cJSON_GetObjectItemCaseSensitive(s, "chunks");
    if (st == LT_OK && cJSON_IsNumber(jchunks) && cJSON_GetNumberValue(jchunks) >= 0 &&
        cJSON_GetNumberValue(jchunks) <= 1e6) {
        chunks = (int)cJSON_GetNumberValue(jchunks);
        st = get_chunks(out, chunks, &part, &part_len, err);
    }
    if (st != LT_OK) {
        cJSON_Delete(s);
        free(state);
        free(part);
        return st;
    }
    double done = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "done"));
    double bytes = cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(s, "bytes"));
    const char *hash = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(s, "list_hash"));
    size_t keep = 0;
    if (part && hash && !strcmp(hash, r->hash) && done >= 0 && done <= (double)r->n && bytes >= 0 &&
        bytes <= (double)part_len) {
        r->done = (int64_t)done;
        keep = (size_t)bytes;
        lt_err lerr = {{0}};
        lt_status cst = count_lines(r, part, keep, &lerr);
        if (cst == LT_ERR_NOMEM) st = lt_errorf(err, cst, "out of memory");
        if (cst == LT_ERR_FORMAT) { /* ignore the checkpoint */
            r->done = r->succeeded = r->failed = 0;
            cJSON_Delete(r->failures);
            r->failures = cJSON_CreateArray();
            keep = 0;
        }
    }
    cJSON_Delete(s);
    free(state);
    if (st == LT_OK) st = lt_write_file_atomic(r->local, part ? part : "", keep, err);
    free(part);
    if (st == LT_OK && !(r->f = fopen(r->local, "ab")))
        st = lt_errorf(err, LT_ERR_IO, "%s: cannot open for appending", r->local);
    r->ck_done = r->done;
    r->ck_bytes = (long)keep;
    /* go on adding chunks when they hold exactly the checkpoint's lines; otherwise (nothing kept, or chunks
       longer than the state says) the next checkpoint rewrites the kept lines as chunk 0 */
    if (keep == 0 || keep != part_len) r->ck_bytes = 0;
    r->n_chunks = keep > 0 && keep == part_len ? chunks : 0;
    r->chunks_seen = chunks;
    return st;
}

/* Uploads the lines added since the previous checkpoint as the next chunk, then the state that points into
 * the chunks (a crash between the two leaves a chunk no state names; the next checkpoint overwrites it). */
static lt_status checkpoint(run *r, lt_err *err) {
    if (fflush(r->f) != 0) return lt_errorf(err, LT_ERR_IO, "%s: write failed", r->local);
    long bytes = ftell(r->f);
    lt_status st = LT_OK;
    if (bytes > r->ck_bytes) {
        size_t n = (size_t)(bytes - r->ck_bytes);
        char *chunk = malloc(n), key[64];
        FILE *f = fopen(r->local, "rb");
        int ok = chunk && f && fseek(f, r->ck_bytes, SEEK_SET) == 0 && fread(chunk, 1, n, f) == n;
        if (f) fclose(f);
        snprintf(key, sizeof key, CHUNK_FMT, r->n_chunks);
        st = ok ? lt_storage_put_mem(r->o->out, key, chunk, n, err)
                : lt_errorf(err, chunk ? LT_ERR_IO : LT_ERR_NOMEM, "%s: cannot read back its new lines",
                            r->local);
        free(chunk);
        if (st != LT_OK) return st;
        r->n_chunks++;
        r->ck_bytes = bytes;
    }
    char state[256];
    int len = snprintf(state, sizeof state,
                       "{\"done\":%lld,\"bytes\":%ld,\"chunks\":%d,\"total\":%zu,\"list_hash\":\"%s\"}\n",
                       (long long)r->done, bytes, r->n_chunks, r->n, r->hash);
    if ((st = lt_storage_put_mem(r->o->out, STATE_KEY, state, (size_t)len, err)) != LT_OK) return st;
    r->ck_done = r->done;
    r->ck_time = lt_now();
    if (r->o->hooks.checkpoint) r->o->hooks.checkpoint(r->o->hooks.ctx, r->done);
    return LT_OK;
}

/* Appends {"path": p, <member>: value}; value_raw is JSON text used as it is (the response), else msg is a
 * string (the error). */
static lt_status write_line(run *r, const char *path, const char *value_raw, const char *msg, lt_err *err) {
    cJSON *p = cJSON_CreateString(path);
    char *ptext = p ? cJSON_PrintUnformatted(p) : NULL;
    cJSON_Delete(p);
    char *etext = NULL;
    if (!value_raw) {
        cJSON *e = cJSON_CreateString(msg);
        etext = e ? cJSON_PrintUnformatted(e) : NULL;
        cJSON_Delete(e);
    }
    lt_status st = LT_OK;
    if (!ptext || (!value_raw && !etext))
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    else if (fprintf(r->f, "{\"path\":%s,\"%s\":%s}\n", ptext, value_raw ? "response" : "error",
                     value_raw ? value_raw : etext) < 0)
        st = lt_errorf(err, LT_ERR_IO, "%s: write failed", r->local);
    free(ptext);
    free(etext);
    return st;
}

/* Scores images [from, from + k) and appends their lines. */
static lt_status run_batch(run *r, lt_infer_model *m, size_t from, int k, lt_err *err) {
    lt_image imgs[k];
    const lt_image *ok[k];
    lt_infer_prediction preds[k];
    char *why[k]; /* decode or predict error per image; NULL when scored */
    int idx[k], n_ok = 0;
    memset(imgs, 0, sizeof imgs);
    memset(preds, 0, sizeof preds);
    memset(why, 0, sizeof why);
    lt_status st = LT_OK;
    for (int i = 0; i < k && st == LT_OK; i++) {
        char *full = lt_path_join(r->o->images_dir, r->paths[from + (size_t)i]);
        lt_err ierr = {{0}};
        if (!full) {
            st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        } else if (lt_image_load(full, NULL, &imgs[i], &ierr) != LT_OK) {
            /* the message names the local path; the line names the image by its relative path */
            const char *msg = ierr.msg;
            size_t fl = strlen(full);
            if (!strncmp(msg, full, fl) && msg[fl] == ':') msg += fl + 1 + (msg[fl + 1] == ' ');
            if (!(why[i] = strdup(msg[0] ? msg : "cannot decode the image")))
                st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        } else {
            idx[n_ok] = i;
            ok[n_ok++] = &imgs[i];
        }
        free(full);
    }
    lt_infer_prediction got[k];
    if (st == LT_OK && n_ok > 0) {
        lt_err perr = {{0}};
        lt_status pst = lt_infer_model_predict(m, ok, n_ok, got, &perr);
        if (pst == LT_OK) {
            for (int j = 0; j < n_ok; j++)
                preds[idx[j]] = got[j];
        } else if (pst == LT_ERR_NOMEM) {
            st = lt_errorf(err, pst, "%s", perr.msg);
        } else {
            /* one image the model refuses must not cost the others: score them one by one */
            for (int j = 0; j < n_ok && st == LT_OK; j++) {
                lt_err one = {{0}};
                pst = lt_infer_model_predict(m, &ok[j], 1, &preds[idx[j]], &one);
                if (pst == LT_ERR_NOMEM)
                    st = lt_errorf(err, pst, "%s", one.msg);
                else if (pst != LT_OK && !(why[idx[j]] = strdup(one.msg)))
                    st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
            }
        }
    }
    for (int i = 0; i < k && st == LT_OK; i++) {
        const char *path = r->paths[from + (size_t)i];
        if (why[i]) {
            st = write_line(r, path, NULL, why[i], err);
            if (st == LT_OK) st = add_failure(r, path, why[i], err);
            continue;
        }
        char *resp = lt_infer_model_response(m, &preds[i], 1);
        st = resp ? write_line(r, path, resp, NULL, err) : lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        if (st == LT_OK) r->succeeded++;
        free(resp);
    }
    for (int i = 0; i < k; i++) {
        lt_image_free(&imgs[i]);
        lt_infer_prediction_free(&preds[i]);
        free(why[i]);
    }
    if (st == LT_OK) r->done += k;
    return st;
}

/* Uploads the finished file and the summary, then drops the checkpoint. */
static lt_status finish(run *r, cJSON **summary, lt_err *err) {
    if (fclose(r->f) != 0) {
        r->f = NULL;
        return lt_errorf(err, LT_ERR_IO, "%s: write failed", r->local);
    }
    r->f = NULL;
    lt_status st = lt_storage_put(r->o->out, "predictions.jsonl", r->local, err);
    if (st != LT_OK) return st;
    cJSON *s = cJSON_CreateObject();
    char *text = NULL;
    if (s) {
        cJSON_AddNumberToObject(s, "total", (double)r->n);
        cJSON_AddNumberToObject(s, "succeeded", (double)r->succeeded);
        cJSON_AddNumberToObject(s, "failed", (double)r->failed);
        cJSON_AddItemToObject(s, "failures", r->failures);
        r->failures = NULL;
        cJSON_AddStringToObject(s, "model", r->o->model_name ? r->o->model_name : "");
        cJSON_AddStringToObject(s, "dataset", r->o->dataset_name ? r->o->dataset_name : "");
        text = cJSON_Print(s);
    }
    if (!text) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) st = lt_storage_put_mem(r->o->out, "summary.json", text, strlen(text), err);
    free(text);
    cJSON *counts = st == LT_OK ? cJSON_CreateObject() : NULL;
    if (st == LT_OK && (!counts || !cJSON_AddNumberToObject(counts, "total", (double)r->n) ||
                        !cJSON_AddNumberToObject(counts, "succeeded", (double)r->succeeded) ||
                        !cJSON_AddNumberToObject(counts, "failed", (double)r->failed)))
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    cJSON_Delete(s);
    if (st != LT_OK) {
        cJSON_Delete(counts);
        return st;
    }
    /* best effort: a leftover checkpoint only costs space (the job is complete by result.json) */
    lt_err ignore = {{0}};
    lt_storage_delete(r->o->out, STATE_KEY, &ignore);
    int last = r->n_chunks > r->chunks_seen ? r->n_chunks : r->chunks_seen;
    for (int i = 0; i <= last; i++) { /* <=: an unnamed chunk left by a crash */
        char key[64];
        snprintf(key, sizeof key, CHUNK_FMT, i);
        lt_storage_delete(r->o->out, key, &ignore);
    }
    *summary = counts;
    return LT_OK;
}

lt_status lt_batch_run(const lt_batch_opts *o, cJSON **summary, lt_err *err) {
    *summary = NULL;
    run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    int batch = o->batch_size > 0 ? (o->batch_size < 64 ? o->batch_size : 64) : 8; /* on the stack */
    int64_t every = o->checkpoint_images > 0 ? o->checkpoint_images : 256;
    double every_s = o->checkpoint_s > 0 ? o->checkpoint_s : 10;
    lt_infer_model *m = NULL;
    lt_status st = lt_batch_list_images(o->images_dir, &r.paths, &r.n, err);
    if (st == LT_OK && r.n == 0)
        st = lt_errorf(err, LT_ERR_ARG, "dataset: no PNG or JPEG images in %s",
                       o->dataset_name ? o->dataset_name : o->images_dir);
    if (st == LT_OK) {
        lt_err merr = {{0}};
        lt_status mst = lt_infer_model_load(o->model_dir, batch, &m, &merr);
        /* whatever is wrong with the directory (no config.json, bad weights), running again won't fix it */
        if (mst == LT_ERR_NOMEM)
            st = lt_errorf(err, mst, "out of memory");
        else if (mst != LT_OK)
            st = lt_errorf(err, LT_ERR_ARG, "model: %s is not a usable model directory: %s",
                           o->model_name ? o->model_name : o->model_dir, merr.msg);
    }
    snprintf(r.hash, sizeof r.hash, "%016llx", (unsigned long long)list_hash(r.paths, r.n));
    if (st == LT_OK && !(r.failures = cJSON_CreateArray()))
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) st = lt_mkdir_p(o->work_dir, err);
    if (st == LT_OK && !(r.local = lt_path_join(o->work_dir, "predictions.jsonl")))
        st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (st == LT_OK) st = load_checkpoint(&r, err);
    if (st == LT_OK && o->hooks.start) o->hooks.start(o->hooks.ctx, r.done > 0 ? r.done : -1, (int64_t)r.n);
    r.ck_time = lt_now();
    while (st == LT_OK && (size_t)r.done < r.n) {
        if (o->hooks.should_stop && o->hooks.should_stop(o->hooks.ctx)) {
            if (r.done > r.ck_done) st = checkpoint(&r, err);
            if (st == LT_OK)
                st = lt_errorf(err, LT_ERR_CANCELLED, "stopped after %lld of %zu images", (long long)r.done,
                               r.n);
            break;
        }
        size_t left = r.n - (size_t)r.done;
        int k = left < (size_t)batch ? (int)left : batch;
        st = run_batch(&r, m, (size_t)r.done, k, err);
        if (st == LT_OK && o->hooks.progress) o->hooks.progress(o->hooks.ctx, r.done, (int64_t)r.n);
        if (st == LT_OK && (size_t)r.done < r.n &&
            (r.done - r.ck_done >= every || lt_now() - r.ck_time >= every_s))
            st = checkpoint(&r, err);
    }
    if (st == LT_OK) st = finish(&r, summary, err);
    if (r.f) fclose(r.f);
    cJSON_Delete(r.failures);
    free(r.local);
    lt_infer_model_destroy(m);
    lt_batch_paths_free(r.paths, r.n);
    return st;
}
