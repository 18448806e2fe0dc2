#include "tensor.h"

#include <stdio.h>

int64_t lt_shape_numel(const int64_t *shape, int ndim) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || __builtin_mul_overflow(n, shape[i], &n)) return -1;
    }
    return n;
}

char *lt_shape_str(const int64_t *shape, int ndim, char *buf, int buflen) {
    int off = snprintf(buf, (size_t)buflen, "(");
    for (int i = 0; i < ndim && off < buflen; i++)
        off += snprintf(buf + off, (size_t)(buflen - off), i ? ", %lld" : "%lld", (long long)shape[i]);
    if (off < buflen) snprintf(buf + off, (size_t)(buflen - off), ")");
    return buf;
}

int lt_same_shape(const lt_tensor *a, const lt_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

lt_tensor *lt_tensor_root(lt_tensor *t) {
    while (t->view_of) t = t->view_of;
    return t;
}
