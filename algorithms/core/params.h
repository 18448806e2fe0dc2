/* params.h - a model's parameters and buffers in one flat store.
 *
 * Declare every tensor first (lt_params_add), then lt_params_alloc() lays them out: trainable parameters
 * first, then buffers (BN running statistics). data, grad and the two AdamW moments share that layout, so
 * zeroing, clipping and the optimizer are flat loops over [0, n_trainable). Names are the Hugging Face
 * state-dict names, so the store maps one-to-one onto a safetensors file. */
#ifndef LT_PARAMS_H
#define LT_PARAMS_H

#include "rng.h"
#include "status.h"
#include "tensor.h"

#include <stdint.h>

typedef enum {
    LT_PARAM_TRAINABLE = 0, /* has grad and AdamW moments */
    LT_PARAM_FROZEN,        /* a weight that is loaded and saved but never updated (DETR's frozen BN) */
    LT_PARAM_BUFFER,        /* state saved with the model, updated by ops (running_mean, running_var) */
    LT_PARAM_KIND_COUNT
} lt_param_kind;

typedef struct {
    lt_tensor **tensors;    /* (n) in declaration order */
    int n, cap;
    float *data;            /* (numel) values of every tensor, trainable ones first */
    float *grad;            /* (n_trainable_numel) gradients of trainable tensors */
    float *m, *v;           /* (n_trainable_numel) AdamW first and second moments */
    int64_t numel;          /* all tensors */
    int64_t trainable_numel;
    int64_t batches_tracked; /* training batches the batch norms have seen: PyTorch's num_batches_tracked */
    int allocated;
} lt_params;

/* Initializes an empty store. */
void lt_params_init(lt_params *p);
/* Frees everything the store owns, tensors included. Safe on an initialized or zeroed store. */
void lt_params_free(lt_params *p);

/* Declares a tensor; returns NULL on OOM, a duplicate name or after allocation (err says which). The tensor's
 * data pointer is valid after lt_params_alloc. */
lt_tensor *lt_params_add(lt_params *p, const char *name, const int64_t *shape, int ndim, lt_param_kind kind,
                         lt_err *err);
/* Lays out and zero-fills all memory. */
lt_status lt_params_alloc(lt_params *p, lt_err *err);

/* Looks a tensor up by name; NULL if absent. O(n). */
lt_tensor *lt_params_find(const lt_params *p, const char *name);
lt_param_kind lt_params_kind(const lt_tensor *t);

/* Zeroes the gradients of every trainable tensor. */
void lt_params_zero_grad(lt_params *p);

/* PyTorch default inits, deterministic for a given rng state:
 * kaiming_uniform(a=sqrt(5)) for weights, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for Linear/Conv weights
 * and biases; kaiming_normal(fan_out, relu) as torchvision/transformers ResNet uses; normal(0, std);
 * constants. fan_in is shape[1] * prod(shape[2:]). */
void lt_init_uniform(lt_tensor *t, float bound, lt_rng *r);
void lt_init_normal(lt_tensor *t, float mean, float std, lt_rng *r);
void lt_init_const(lt_tensor *t, float value);
void lt_init_kaiming_normal_fan_out(lt_tensor *t, lt_rng *r);
void lt_init_default_linear(lt_tensor *weight, lt_tensor *bias, lt_rng *r); /* nn.Linear / nn.Conv2d default */
/* Truncated normal in [-2, 2] (absolute, like torch.nn.init.trunc_normal_) as SegFormer uses. */
void lt_init_trunc_normal(lt_tensor *t, float std, lt_rng *r);
/* Xavier uniform as DETR's transformer uses. */
void lt_init_xavier_uniform(lt_tensor *t, lt_rng *r);

#endif
