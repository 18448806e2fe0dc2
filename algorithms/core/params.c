#include "params.h"

#include "big_alloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* kind is kept in the tensor's flags: is_buffer for buffers, requires_grad for trainable. */

void lt_params_init(lt_params *p) {
    memset(p, 0, sizeof *p);
}

void lt_params_free(lt_params *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) free(p->tensors[i]);
    free(p->tensors);
    size_t nb = (size_t)(p->numel ? p->numel : 1) * sizeof(float);
    size_t gb = (size_t)(p->trainable_numel ? p->trainable_numel : 1) * sizeof(float);
    lt_free_big(p->data, nb);
    lt_free_big(p->grad, gb);
    lt_free_big(p->m, gb);
    lt_free_big(p->v, gb);
    memset(p, 0, sizeof *p);
}

lt_param_kind lt_params_kind(const lt_tensor *t) {
    if (t->is_buffer) return LT_PARAM_BUFFER;
    return t->requires_grad ? LT_PARAM_TRAINABLE : LT_PARAM_FROZEN;
}

lt_tensor *lt_params_find(const lt_params *p, const char *name) {
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->tensors[i]->name, name) == 0) return p->tensors[i];
    return NULL;
}

lt_tensor *lt_params_add(lt_params *p, const char *name, const int64_t *shape, int ndim, lt_param_kind kind,
                         lt_err *err) {
    if (p->allocated) {
        lt_errorf(err, LT_ERR_STATE, "parameter '%s' declared after the store was allocated", name);
        return NULL;
    }
    if (ndim < 0 || ndim > LT_MAX_DIMS || strlen(name) >= LT_NAME_MAX) {
        lt_errorf(err, LT_ERR_ARG, "parameter '%s': bad rank %d or name too long", name, ndim);
        return NULL;
    }
    if (lt_params_find(p, name)) {
        lt_errorf(err, LT_ERR_ARG, "parameter '%s' declared twice", name);
        return NULL;
    }
    int64_t numel = lt_shape_numel(shape, ndim);
    if (numel < 0) {
        lt_errorf(err, LT_ERR_NOMEM, "parameter '%s': size overflows", name);
        return NULL;
    }
    if (p->n == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        lt_tensor **nt = realloc(p->tensors, (size_t)cap * sizeof *nt);
        if (!nt) {
            lt_errorf(err, LT_ERR_NOMEM, "out of memory declaring '%s'", name);
            return NULL;
        }
        p->tensors = nt;
        p->cap = cap;
    }
    lt_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        lt_errorf(err, LT_ERR_NOMEM, "out of memory declaring '%s'", name);
        return NULL;
    }
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->ndim = ndim;
    t->numel = numel;
    t->is_param = 1;
    t->is_buffer = kind == LT_PARAM_BUFFER;
    t->requires_grad = kind == LT_PARAM_TRAINABLE;
    t->lr_scale = 1.0f;
    t->id = p->n;
    strcpy(t->name, name);
    p->tensors[p->n++] = t;
    return t;
}

lt_status lt_params_alloc(lt_params *p, lt_err *err) {
    if (p->allocated) return lt_errorf(err, LT_ERR_STATE, "parameter store allocated twice");
    int64_t total = 0, trainable = 0;
    for (int i = 0; i < p->n; i++) {
        total += p->tensors[i]->numel;
        if (p->tensors[i]->requires_grad) trainable += p->tensors[i]->numel;
    }
    size_t nb = (size_t)(total ? total : 1) * sizeof(float);
    size_t gb = (size_t)(trainable ? trainable : 1) * sizeof(float);
    p->numel = total; /* lt_params_free sizes the arrays by these, even after a failed allocation */
    p->trainable_numel = trainable;
    p->data = lt_alloc_big(nb);
    p->grad = lt_alloc_big(gb);
    p->m = lt_alloc_big(gb);
    p->v = lt_alloc_big(gb);
    if (!p->data || !p->grad || !p->m || !p->v)
        return lt_errorf(err, LT_ERR_NOMEM, "out of memory allocating %lld parameters", (long long)total);
    /* trainable tensors first so grad/m/v index the same offsets as data */
    int64_t off = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < p->n; i++) {
            lt_tensor *t = p->tensors[i];
            if ((pass == 0) != (t->requires_grad != 0)) continue;
            t->data = p->data + off;
            t->grad = t->requires_grad ? p->grad + off : NULL;
            off += t->numel;
        }
    }
    p->allocated = 1;
    return LT_OK;
}

void lt_params_zero_grad(lt_params *p) {
    if (p->grad) memset(p->grad, 0, (size_t)p->trainable_numel * sizeof(float));
}

void lt_init_uniform(lt_tensor *t, float bound, lt_rng *r) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (2.0f * lt_rng_uniform(r) - 1.0f) * bound;
}

void lt_init_normal(lt_tensor *t, float mean, float std, lt_rng *r) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = mean + std * lt_rng_normal(r);
}

void lt_init_const(lt_tensor *t, float value) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
}

static int64_t receptive(const lt_tensor *t) {
    int64_t rf = 1;
    for (int i = 2; i < t->ndim; i++) rf *= t->shape[i];
    return rf;
}

void lt_init_kaiming_normal_fan_out(lt_tensor *t, lt_rng *r) {
    int64_t fan_out = t->shape[0] * receptive(t);
    lt_init_normal(t, 0.0f, sqrtf(2.0f / (float)fan_out), r);
}

void lt_init_default_linear(lt_tensor *weight, lt_tensor *bias, lt_rng *r) {
    int64_t fan_in = (weight->ndim > 1 ? weight->shape[1] : 1) * receptive(weight);
    /* kaiming_uniform(a=sqrt(5)) gives bound = sqrt(6 / ((1 + 5) * fan_in)) = 1 / sqrt(fan_in) */
    float bound = 1.0f / sqrtf((float)fan_in);
    lt_init_uniform(weight, bound, r);
    if (bias) lt_init_uniform(bias, bound, r);
}

void lt_init_trunc_normal(lt_tensor *t, float std, lt_rng *r) {
    for (int64_t i = 0; i < t->numel; i++) {
        float x;
        do x = std * lt_rng_normal(r);
        while (x < -2.0f || x > 2.0f);
        t->data[i] = x;
    }
}

void lt_init_xavier_uniform(lt_tensor *t, lt_rng *r) {
    int64_t rf = receptive(t);
    int64_t fan_in = (t->ndim > 1 ? t->shape[1] : 1) * rf, fan_out = t->shape[0] * rf;
    lt_init_uniform(t, sqrtf(6.0f / (float)(fan_in + fan_out)), r);
}
