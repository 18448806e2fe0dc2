#include "cls_dataset.h"

#include <dirent.h>
#include <errno.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *split_names[LT_SPLIT_COUNT] = {"train", "validation", "test"};

const char *lt_split_name(lt_split s) {
    return s >= 0 && s < LT_SPLIT_COUNT ? split_names[s] : "unknown";
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Visible entry names of dir, sorted. Returns count or -1 (errno set). *out owned by caller. */
static int list_dir(const char *dir, char ***out) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) goto oom;
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) goto oom;
        n++;
    }
    closedir(d);
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    *out = names;
    return n;
oom:
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    errno = ENOMEM;
    return -1;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int label_index(const lt_cls_dataset *ds, const char *name) {
    for (int i = 0; i < ds->n_labels; i++)
        if (strcmp(ds->labels[i], name) == 0) return i;
    return -1;
}

static lt_status scan_split(const char *root, lt_split s, lt_cls_dataset *ds, lt_err *err) {
    lt_status st = LT_OK;
    lt_cls_split *sp = &ds->split[s];
    char *dir = join(root, split_names[s]);
    char **labels = NULL;
    int nl = 0;
    if (!dir) return lt_errorf(err, LT_ERR_NOMEM, "out of memory");
    if (!is_dir(dir)) {
        free(dir);
        if (s == LT_SPLIT_TEST) return LT_OK;
        return lt_errorf(err, LT_ERR_ARG,
                         "data set %s has no '%s' folder: image classification needs %s/%s/<label>/<image>", root,
                         split_names[s], root, split_names[s]);
    }
    sp->present = 1;
    nl = list_dir(dir, &labels);
    if (nl < 0) {
        st = lt_errorf(err, LT_ERR_IO, "cannot read folder %s: %s", dir, strerror(errno));
        goto done;
    }
    if (nl == 0) {
        st = lt_errorf(err, LT_ERR_ARG, "folder %s has no label folders (expected %s/<label>/<image>)", dir, dir);
        goto done;
    }
    if (s == LT_SPLIT_TRAIN) {
        ds->labels = labels;
        ds->n_labels = nl;
        labels = NULL;
    }
    for (int l = 0; l < nl; l++) {
        const char *lname = s == LT_SPLIT_TRAIN ? ds->labels[l] : labels[l];
        int li = label_index(ds, lname);
        char *ldir = join(dir, lname);
        if (!ldir) {
            st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
            goto done;
        }
        if (!is_dir(ldir)) {
            st = lt_errorf(err, LT_ERR_ARG, "%s is not a folder: %s/ must hold only label folders", ldir, dir);
            free(ldir);
            goto done;
        }
        if (li < 0) {
            st = lt_errorf(err, LT_ERR_ARG, "label '%s' in %s does not exist in the train split", lname, dir);
            free(ldir);
            goto done;
        }
        char **files = NULL;
        int nf = list_dir(ldir, &files);
        if (nf < 0) {
            st = lt_errorf(err, LT_ERR_IO, "cannot read folder %s: %s", ldir, strerror(errno));
            free(ldir);
            goto done;
        }
        if (nf == 0) st = lt_errorf(err, LT_ERR_ARG, "label folder %s holds no images", ldir);
        lt_cls_item *items = st == LT_OK ? realloc(sp->items, (size_t)(sp->n + nf) * sizeof *items) : NULL;
        if (st == LT_OK && !items) st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
        if (items) sp->items = items;
        for (int f = 0; f < nf && st == LT_OK; f++) {
            char *path = join(ldir, files[f]);
            if (!path) {
                st = lt_errorf(err, LT_ERR_NOMEM, "out of memory");
            } else if (is_dir(path)) {
                st = lt_errorf(err, LT_ERR_ARG, "%s is a folder: label folders must hold images only", path);
                free(path);
            } else {
                sp->items[sp->n++] = (lt_cls_item){path, li};
            }
        }
        free_names(files, nf);
        free(ldir);
        if (st != LT_OK) goto done;
    }
done:
    if (labels) free_names(labels, nl);
    free(dir);
    return st;
}

lt_status lt_cls_dataset_scan(const char *root, lt_cls_dataset *ds, lt_err *err) {
    memset(ds, 0, sizeof *ds);
    if (!is_dir(root)) return lt_errorf(err, LT_ERR_ARG, "data set folder %s does not exist", root);
    lt_status st = LT_OK;
    for (int s = 0; s < LT_SPLIT_COUNT && st == LT_OK; s++) st = scan_split(root, (lt_split)s, ds, err);
    if (st != LT_OK) lt_cls_dataset_free(ds);
    return st;
}

void lt_cls_dataset_free(lt_cls_dataset *ds) {
    if (!ds) return;
    free_names(ds->labels, ds->n_labels);
    for (int s = 0; s < LT_SPLIT_COUNT; s++) {
        for (int64_t i = 0; i < ds->split[s].n; i++) free(ds->split[s].items[i].path);
        free(ds->split[s].items);
    }
    memset(ds, 0, sizeof *ds);
}

static lt_status load_one(const lt_cls_images *ci, int64_t i, float *dst, lt_err *err) {
    lt_image img = {0};
    lt_status st = lt_image_load(ci->split->items[i].path, &ci->limits, &img, err);
    if (st == LT_OK) {
        st = lt_image_to_tensor(&img, ci->size, ci->size, ci->mean, ci->std, dst);
        if (st != LT_OK) lt_errorf(err, st, "%s: cannot preprocess the image", ci->split->items[i].path);
    }
    lt_image_free(&img);
    return st;
}

lt_status lt_cls_images_prepare(lt_cls_images *ci, const lt_cls_split *split, int size, const float mean[3],
                                const float std[3], int64_t cache_budget, lt_err *err) {
    memset(ci, 0, sizeof *ci);
    ci->split = split;
    ci->size = size;
    memcpy(ci->mean, mean, sizeof ci->mean);
    memcpy(ci->std, std, sizeof ci->std);
    const int64_t per = 3 * (int64_t)size * size;
    long long bytes;
    if (lt_mul_ok(split->n, per * 4, &bytes) && bytes <= cache_budget) ci->cache = malloc((size_t)(bytes ? bytes : 1));
    int nthreads = omp_get_max_threads();
    float *tmp = ci->cache ? NULL : malloc((size_t)nthreads * (size_t)per * sizeof(float));
    lt_err *errs = calloc((size_t)(split->n ? split->n : 1), sizeof *errs);
    if ((!ci->cache && !tmp) || !errs) {
        free(tmp);
        free(errs);
        lt_cls_images_free(ci);
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory decoding %lld images", (long long)split->n);
    }
    int64_t n_bad = 0;
#pragma omp parallel for schedule(dynamic, 16) reduction(+ : n_bad)
    for (int64_t i = 0; i < split->n; i++) {
        float *dst = ci->cache ? ci->cache + i * per : tmp + (int64_t)omp_get_thread_num() * per;
        if (load_one(ci, i, dst, &errs[i]) != LT_OK) n_bad++;
    }
    lt_status st = LT_OK;
    if (n_bad) {
        char msg[LT_ERR_MSG_MAX];
        int off = snprintf(msg, sizeof msg, "%lld of %lld images cannot be used:", (long long)n_bad, (long long)split->n);
        int listed = 0;
        for (int64_t i = 0; i < split->n && listed < LT_DATASET_MAX_LISTED; i++) {
            if (!errs[i].msg[0]) continue;
            if (off < (int)sizeof msg) off += snprintf(msg + off, sizeof msg - (size_t)off, "\n  %s", errs[i].msg);
            listed++;
        }
        if (n_bad > listed && off < (int)sizeof msg)
            snprintf(msg + off, sizeof msg - (size_t)off, "\n  ... and %lld more", (long long)(n_bad - listed));
        st = lt_errorf(err, LT_ERR_FORMAT, "%s", msg);
        lt_cls_images_free(ci);
    }
    free(tmp);
    free(errs);
    return st;
}

void lt_cls_images_free(lt_cls_images *ci) {
    if (!ci) return;
    free(ci->cache);
    memset(ci, 0, sizeof *ci);
}

lt_status lt_cls_images_batch(const lt_cls_images *ci, const int64_t *idx, int n, float *pixels, float *labels,
                              lt_err *err) {
    const int64_t per = 3 * (int64_t)ci->size * ci->size;
    for (int i = 0; i < n; i++)
        if (labels) labels[i] = (float)ci->split->items[idx[i]].label;
    if (ci->cache) {
        for (int i = 0; i < n; i++) memcpy(pixels + i * per, ci->cache + idx[i] * per, (size_t)per * sizeof(float));
        return LT_OK;
    }
    int bad = -1;
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < n; i++) {
        lt_err e;
        if (load_one(ci, idx[i], pixels + i * per, &e) != LT_OK) {
#pragma omp critical
            {
                if (bad < 0) {
                    bad = i;
                    if (err) *err = e;
                }
            }
        }
    }
    return bad < 0 ? LT_OK : LT_ERR_FORMAT;
}
