/* tensor.h - the float32 tensor every lathe op reads and writes.
 *
 * Row-major, up to LT_MAX_DIMS dimensions; images are NCHW, sequences (B, T, C). A tensor owns no memory:
 * its data and grad point into a graph's planned arena, a parameter store, or (for views) another tensor.
 * Integer-valued inputs (class indices, masks) are carried as exact float values: float32 represents
 * every integer below 2^24, which covers class ids and pixel coordinates. */
#ifndef LT_TENSOR_H
#define LT_TENSOR_H

#include <stdint.h>

#define LT_MAX_DIMS 5
#define LT_NAME_MAX 128

typedef struct lt_tensor lt_tensor;
struct lt_tensor {
    float *data;              /* (numel) values; NULL until planned/allocated */
    float *grad;              /* (numel) d(loss)/d(tensor); NULL when no gradient is computed for it */
    int64_t shape[LT_MAX_DIMS];
    int ndim;
    int64_t numel;
    int requires_grad;        /* a gradient flows into this tensor during backward */
    int is_param;             /* owned by an lt_params store (weights, buffers), not a graph arena */
    int is_buffer;            /* parameter-store entry that is state, not trained (BN running stats) */
    lt_tensor *view_of;       /* non-NULL: shares data and grad with this tensor (reshape, flatten) */
    int id;                   /* index in the owning graph or store */
    /* planner bookkeeping, private to graph.c */
    int64_t plan_data_off, plan_grad_off;
    int first_use, last_use, grad_first, grad_last;
    int keep;                 /* graph: never reuse this tensor's memory (lt_graph_keep) */
    int is_input;             /* graph: filled by the caller (lt_graph_input) */
    int producer;             /* graph: index of the node that writes it, -1 for inputs and params */
    float lr_scale;           /* parameters: learning-rate multiplier (1.0 normally) */
    int no_decay;             /* parameters: excluded from weight decay (biases, norm weights) */
    char name[LT_NAME_MAX];   /* parameters: the Hugging Face name, e.g. "resnet.embedder.embedder.convolution.weight" */
};

/* Product of shape[0..ndim-1]; returns -1 when it overflows int64 or a dimension is negative. */
int64_t lt_shape_numel(const int64_t *shape, int ndim);

/* Writes "(2, 3, 4)" into buf (always NUL-terminated) and returns buf; for error messages. */
char *lt_shape_str(const int64_t *shape, int ndim, char *buf, int buflen);

/* 1 when a and b have the same ndim and dimensions. */
int lt_same_shape(const lt_tensor *a, const lt_tensor *b);

/* The tensor whose storage a view ultimately shares (t itself when it is not a view). */
lt_tensor *lt_tensor_root(lt_tensor *t);

#endif
