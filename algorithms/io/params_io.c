/* params_io.c - a parameter store to and from safetensors files. */
#define _POSIX_C_SOURCE 200809L
#include "io/params_io.h"

#include "io/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHAPE_STR_MAX 160

static int ends_with(const char *s, const char *suffix);

/* PyTorch's batch norms carry an I64 num_batches_tracked next to running_var; a file without them loads, but
 * transformers lists every one as missing, so they are written for each running_var. */
static int count_bn(const lt_params *p) {
    int n = 0;
    for (int i = 0; i < p->n; i++)
        n += ends_with(p->tensors[i]->name, ".running_var");
    return n;
}

lt_status lt_params_save_safetensors(const lt_params *p, const char *path, int include_buffers, lt_err *err) {
    if (!p || !path) return lt_errorf(err, LT_ERR_ARG, "lt_params_save_safetensors: missing store or path");
    if (!p->allocated) return lt_errorf(err, LT_ERR_STATE, "%s: the parameter store is not allocated", path);
    int n_bn = include_buffers ? count_bn(p) : 0;
    lt_st_tensor_ref *refs = calloc((size_t)(p->n + n_bn) + 1, sizeof *refs);
    char **bn_names = calloc((size_t)n_bn + 1, sizeof *bn_names);
    lt_status st = LT_OK;
    if (!refs || !bn_names) {
        st = lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    int n = 0, k = 0;
    for (int i = 0; i < p->n; i++) {
        const lt_tensor *t = p->tensors[i];
        if (t->is_buffer && !include_buffers) continue;
        refs[n++] = (lt_st_tensor_ref){t->name, t->data, t->shape, t->ndim, NULL};
        if (include_buffers && ends_with(t->name, ".running_var")) {
            size_t stem = strlen(t->name) - strlen(".running_var");
            if (!(bn_names[k] = malloc(stem + sizeof ".num_batches_tracked"))) {
                st = lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            memcpy(bn_names[k], t->name, stem);
            strcpy(bn_names[k] + stem, ".num_batches_tracked");
            refs[n++] = (lt_st_tensor_ref){bn_names[k++], NULL, NULL, 0, &p->batches_tracked};
        }
    }
    /* transformers refuses safetensors files whose metadata lacks format "pt" (or "tf", "flax") */
    static const char *const meta[2] = {"format", "pt"};
    st = lt_st_write(path, refs, n, meta, 1, err);
done:
    for (int i = 0; i < n_bn && bn_names; i++)
        free(bn_names[i]);
    free(bn_names);
    free(refs);
    return st;
}

void lt_load_report_free(lt_load_report *r) {
    if (!r) return;
    for (int i = 0; i < r->n_missing; i++)
        free(r->missing[i]);
    for (int i = 0; i < r->n_unexpected; i++)
        free(r->unexpected[i]);
    for (int i = 0; i < r->n_mismatched; i++) {
        free(r->mismatched[i].name);
        free(r->mismatched[i].detail);
    }
    free(r->missing);
    free(r->unexpected);
    free(r->mismatched);
    memset(r, 0, sizeof *r);
}

/* Appends a copy of s to list (n); returns 0, or -1 on OOM (list unchanged). */
static int list_add(char ***list, int *n, const char *s) {
    char **nl = realloc(*list, (size_t)(*n + 1) * sizeof *nl);
    if (!nl) return -1;
    *list = nl;
    if (!(nl[*n] = strdup(s))) return -1;
    (*n)++;
    return 0;
}

static int mismatch_add(lt_load_report *r, const char *name, const char *detail) {
    lt_load_mismatch *nm = realloc(r->mismatched, (size_t)(r->n_mismatched + 1) * sizeof *nm);
    if (!nm) return -1;
    r->mismatched = nm;
    nm[r->n_mismatched].name = strdup(name);
    nm[r->n_mismatched].detail = strdup(detail);
    r->n_mismatched++; /* counted even when a strdup failed, so lt_load_report_free frees the other */
    return nm[r->n_mismatched - 1].name && nm[r->n_mismatched - 1].detail ? 0 : -1;
}

static int skip_allowed(const lt_load_opts *opts, const char *name) {
    for (int i = 0; opts && i < opts->n_skip_mismatched_prefixes; i++) {
        const char *pre = opts->skip_mismatched_prefixes[i];
        if (pre && strncmp(name, pre, strlen(pre)) == 0) return 1;
    }
    return 0;
}

static int same_shape(const lt_st_entry *e, const lt_tensor *t) {
    if (e->ndim != t->ndim) return 0;
    for (int d = 0; d < t->ndim; d++)
        if (e->shape[d] != t->shape[d]) return 0;
    return 1;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Decides, for every store tensor, which file entry loads into it (load[i], NULL for none) and fills the
 * report; writes no parameter value. */
static lt_status plan_load(const lt_params *p, const lt_st_file *f, const char *path,
                           const lt_load_opts *opts, const lt_st_entry **load, lt_load_report *r,
                           lt_err *err) {
    for (int i = 0; i < p->n; i++) {
        const lt_tensor *t = p->tensors[i];
        const lt_st_entry *e = lt_st_find(f, t->name);
        int oom = 0;
        if (!e) {
            oom = list_add(&r->missing, &r->n_missing, t->name);
        } else if (!same_shape(e, t)) {
            char fs[SHAPE_STR_MAX], ms[SHAPE_STR_MAX], detail[2 * SHAPE_STR_MAX + 32];
            lt_shape_str(e->shape, e->ndim, fs, sizeof fs);
            lt_shape_str(t->shape, t->ndim, ms, sizeof ms);
            if (!skip_allowed(opts, t->name))
                return lt_errorf(err, LT_ERR_SHAPE,
                                 "%s: tensor '%s' has shape %s in the file but %s in the model", path,
                                 t->name, fs, ms);
            snprintf(detail, sizeof detail, "file %s, model %s", fs, ms);
            oom = mismatch_add(r, t->name, detail);
        } else if (e->dtype == LT_ST_F8_E5M2 || e->dtype == LT_ST_F8_E4M3) {
            return lt_errorf(err, LT_ERR_FORMAT, "%s: tensor '%s': dtype %s can't be loaded as float32", path,
                             t->name, lt_st_dtype_name(e->dtype));
        } else {
            load[i] = e;
        }
        if (oom) return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory building the load report", path);
    }
    /* O(entries * store size) name lookups: a few hundred thousand strcmp for the largest model */
    for (int i = 0; i < lt_st_count(f); i++) {
        const lt_st_entry *e = lt_st_entry_at(f, i);
        if (lt_params_find(p, e->name)) continue;
        if (ends_with(e->name, ".num_batches_tracked"))
            r->n_ignored++;
        else if (list_add(&r->unexpected, &r->n_unexpected, e->name))
            return lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory building the load report", path);
    }
    return LT_OK;
}

lt_status lt_params_load_safetensors_opts(lt_params *p, const char *path, const lt_load_opts *opts,
                                          lt_load_report *report, lt_err *err) {
    lt_load_report scratch;
    lt_load_report *r = report ? report : &scratch;
    memset(r, 0, sizeof *r);
    if (!p || !path) return lt_errorf(err, LT_ERR_ARG, "lt_params_load_safetensors: missing store or path");
    if (!p->allocated) return lt_errorf(err, LT_ERR_STATE, "%s: the parameter store is not allocated", path);
    lt_st_file *f = NULL;
    lt_status st = lt_st_open(path, &f, err);
    if (st != LT_OK) return st;
    const lt_st_entry **load = calloc((size_t)p->n + 1, sizeof *load);
    if (!load)
        st = lt_errorf(err, LT_ERR_NOMEM, "%s: out of memory", path);
    else
        st = plan_load(p, f, path, opts, load, r, err);
    for (int i = 0; i < p->n && st == LT_OK; i++) {
        if (!load[i]) continue;
        st = lt_st_read_f32(f, load[i], p->tensors[i]->data, p->tensors[i]->numel, err);
        r->n_loaded++;
    }
    free(load);
    lt_st_close(f);
    if (!report) lt_load_report_free(&scratch);
    return st;
}

lt_status lt_params_load_safetensors(lt_params *p, const char *path, lt_load_report *report, lt_err *err) {
    return lt_params_load_safetensors_opts(p, path, NULL, report, err);
}
