/* segformer_blocks.c - SegFormer's encoder layer, patch embeddings and decode head, composed from ops.
 *
 * Every block is a chain of existing ops: tokens move between (B, N, C) and (B, C, H, W) with a transpose
 * copy where a convolution needs the grid (sequence reduction, the depthwise conv of the Mix-FFN). Those
 * copies are memory-bound and small next to the linears around them, and the planner frees them early:
 * a transpose's backward reads nothing, so only the tensors the convolutions and GELU need are kept. */
#include "segformer_blocks.h"

#include "ops/attention.h"
#include "ops/drop_path.h"

#include <stdio.h>

/* Checks hidden (B, height*width, C) against cfg; records an error naming `what` and returns 0 on mismatch.
 */
static int check_tokens(lt_graph *g, const char *what, const lt_tensor *hidden, int height, int width) {
    char sh[96];
    lt_shape_str(hidden->shape, hidden->ndim, sh, sizeof sh);
    if (height < 1 || width < 1 || hidden->ndim != 3 || hidden->shape[1] != (int64_t)height * width) {
        lt_graph_fail(g, LT_ERR_SHAPE, "%s: hidden %s is not (B, height * width, C) for height %d, width %d",
                      what, sh, height, width);
        return 0;
    }
    return 1;
}

/* (B, N, C) tokens -> (B, C, height, width) map: a transpose copy and a view. */
static lt_tensor *to_map(lt_graph *g, lt_tensor *tokens, int height, int width) {
    lt_tensor *t = lt_transpose(g, tokens, 1, 2); /* (B, C, N) */
    if (!t) return NULL;
    int64_t shape[4] = {t->shape[0], t->shape[1], height, width};
    return lt_reshape(g, t, shape, 4);
}

/* (B, C, h, w) map -> (B, h*w, C) tokens: a view and a transpose copy. */
static lt_tensor *to_tokens(lt_graph *g, lt_tensor *map) {
    return lt_transpose(g, lt_flatten(g, map, 2, 3), 1, 2);
}

lt_tensor *lt_segformer_tokens_to_map(lt_graph *g, lt_tensor *tokens, int height, int width) {
    if (lt_graph_failed(g, &tokens, 1)) return NULL;
    if (!check_tokens(g, "segformer tokens_to_map", tokens, height, width)) return NULL;
    return to_map(g, tokens, height, width);
}

lt_tensor *lt_segformer_efficient_attention(lt_graph *g, lt_tensor *hidden,
                                            const lt_segformer_attention_params *p,
                                            const lt_segformer_layer_cfg *cfg) {
    if (lt_graph_failed(g, &hidden, 1)) return NULL;
    const char *what = "segformer attention";
    if (!check_tokens(g, what, hidden, cfg->height, cfg->width)) return NULL;
    const int sr = cfg->sr_ratio;
    if (sr < 1 || sr > cfg->height || sr > cfg->width)
        return lt_graph_fail(g, LT_ERR_ARG, "%s: sr_ratio %d must be in [1, min(height %d, width %d)]", what,
                             sr, cfg->height, cfg->width);
    if (sr > 1 && (!p->sr_w || !p->ln_w || !p->ln_b))
        return lt_graph_fail(g, LT_ERR_ARG, "%s: sr_ratio %d needs the sr convolution and its layer norm",
                             what, sr);
    lt_tensor *kv = hidden; /* (B, M, C): keys and values are computed from it */
    if (sr > 1) {
        lt_tensor *m = to_map(g, hidden, cfg->height, cfg->width); /* (B, C, H, W) */
        lt_conv2d_cfg cc = {.stride_h = sr, .stride_w = sr, .dil_h = 1, .dil_w = 1, .groups = 1};
        m = lt_conv2d(g, m, p->sr_w, p->sr_b, cc); /* (B, C, H/sr, W/sr) */
        kv = lt_layernorm(g, to_tokens(g, m), p->ln_w, p->ln_b, cfg->eps);
    }
    /* softmax(q k^T / sqrt(D)) v per head, then attention.output.dense; a bad head count is reported by
     * lt_attention */
    lt_tensor *out = lt_mha_projected(g, hidden, kv, kv, NULL, cfg->heads, p->query_w, p->query_b, p->key_w,
                                      p->key_b, p->value_w, p->value_b, p->dense_w, p->dense_b);
    return lt_dropout(g, out, cfg->hidden_dropout);
}

lt_tensor *lt_segformer_mix_ffn(lt_graph *g, lt_tensor *hidden, const lt_segformer_ffn_params *p,
                                const lt_segformer_layer_cfg *cfg) {
    if (lt_graph_failed(g, &hidden, 1)) return NULL;
    if (!check_tokens(g, "segformer mix_ffn", hidden, cfg->height, cfg->width)) return NULL;
    lt_tensor *h = lt_linear(g, hidden, p->dense1_w, p->dense1_b); /* (B, N, F) */
    lt_tensor *m = to_map(g, h, cfg->height, cfg->width);          /* (B, F, H, W) */
    if (lt_graph_failed(g, &m, 1) || lt_graph_failed(g, &p->dwconv_w, 1)) return NULL;
    /* depthwise: one 3x3 filter per channel, "same" padding */
    const lt_tensor *dw = p->dwconv_w;
    lt_conv2d_cfg cc = {.stride_h = 1,
                        .stride_w = 1,
                        .pad_h = dw->ndim == 4 ? (int)(dw->shape[2] / 2) : 0,
                        .pad_w = dw->ndim == 4 ? (int)(dw->shape[3] / 2) : 0,
                        .dil_h = 1,
                        .dil_w = 1,
                        .groups = (int)m->shape[1]};
    m = lt_conv2d(g, m, p->dwconv_w, p->dwconv_b, cc);
    h = lt_dropout(g, lt_gelu(g, to_tokens(g, m)), cfg->hidden_dropout); /* (B, N, F) */
    return lt_dropout(g, lt_linear(g, h, p->dense2_w, p->dense2_b), cfg->hidden_dropout);
}

lt_tensor *lt_segformer_layer(lt_graph *g, lt_tensor *hidden, const lt_segformer_layer_params *p,
                              const lt_segformer_layer_cfg *cfg) {
    if (lt_graph_failed(g, &hidden, 1)) return NULL;
    /* pre-norm residual branches, each dropped per sample by stochastic depth in training */
    lt_tensor *a = lt_segformer_efficient_attention(g, lt_layernorm(g, hidden, p->ln1_w, p->ln1_b, cfg->eps),
                                                    &p->attn, cfg);
    lt_tensor *x = lt_add(g, lt_drop_path(g, a, cfg->drop_path), hidden);
    lt_tensor *f = lt_segformer_mix_ffn(g, lt_layernorm(g, x, p->ln2_w, p->ln2_b, cfg->eps), &p->ffn, cfg);
    return lt_add(g, lt_drop_path(g, f, cfg->drop_path), x);
}

lt_tensor *lt_segformer_patch_embeddings(lt_graph *g, lt_tensor *x, const lt_segformer_patch_params *p,
                                         int stride, float eps, int *height, int *width) {
    lt_tensor *in[2] = {x, p->proj_w};
    if (lt_graph_failed(g, in, 2)) return NULL;
    const lt_tensor *w = p->proj_w;
    if (w->ndim != 4 || stride < 1) {
        char sw[96];
        return lt_graph_fail(g, LT_ERR_ARG,
                             "segformer patch_embeddings: proj weight %s with stride %d (want (C, "
                             "C_in, k, k), stride >= 1)",
                             lt_shape_str(w->shape, w->ndim, sw, sizeof sw), stride);
    }
    lt_conv2d_cfg cc = {.stride_h = stride,
                        .stride_w = stride,
                        .pad_h = (int)(w->shape[2] / 2),
                        .pad_w = (int)(w->shape[3] / 2),
                        .dil_h = 1,
                        .dil_w = 1,
                        .groups = 1};
    lt_tensor *m = lt_conv2d(g, x, p->proj_w, p->proj_b, cc); /* (B, C, h, w) */
    if (!m) return NULL;
    if (height) *height = (int)m->shape[2];
    if (width) *width = (int)m->shape[3];
    return lt_layernorm(g, to_tokens(g, m), p->ln_w, p->ln_b, eps);
}

lt_tensor *lt_segformer_decode_head(lt_graph *g, lt_tensor *const *features,
                                    const lt_segformer_head_params *p, lt_bn_mode bn_mode, float dropout) {
    const int n = p->n_stages;
    if (n < 1 || n > LT_SEGFORMER_MAX_STAGES)
        return lt_graph_fail(g, LT_ERR_ARG, "segformer decode_head: %d stages (want 1..%d)", n,
                             LT_SEGFORMER_MAX_STAGES);
    if (lt_graph_failed(g, features, n)) return NULL;
    for (int i = 0; i < n; i++)
        if (features[i]->ndim != 4) {
            char sf[96];
            return lt_graph_fail(g, LT_ERR_SHAPE, "segformer decode_head: feature %d is %s, not (B, C, h, w)",
                                 i, lt_shape_str(features[i]->shape, features[i]->ndim, sf, sizeof sf));
        }
    const int64_t h0 = features[0]->shape[2], w0 = features[0]->shape[3];
    lt_tensor *up[LT_SEGFORMER_MAX_STAGES]; /* (B, Cd, h0, w0) each, last stage first */
    for (int i = 0; i < n; i++) {
        const int64_t h = features[i]->shape[2], w = features[i]->shape[3];
        /* SegformerMLP on tokens, then back to a map; the largest map is already at the target size */
        lt_tensor *t = lt_linear(g, to_tokens(g, features[i]), p->proj_w[i], p->proj_b[i]); /* (B, h*w, Cd) */
        t = to_map(g, t, (int)h, (int)w);
        if (t && (h != h0 || w != w0)) t = lt_resize_bilinear(g, t, (int)h0, (int)w0);
        up[n - 1 - i] = t;
    }
    lt_tensor *y = n > 1 ? lt_concat(g, up, n, 1) : up[0]; /* (B, n * Cd, h0, w0) */
    lt_conv2d_cfg one = {.stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1, .groups = 1};
    y = lt_conv2d(g, y, p->fuse_w, NULL, one);
    /* nn.BatchNorm2d defaults: momentum 0.1, eps 1e-5 */
    y = lt_relu(g, lt_batchnorm2d(g, y, p->bn_w, p->bn_b, p->bn_mean, p->bn_var, bn_mode, 0.1f, 1e-5f));
    return lt_conv2d(g, lt_dropout(g, y, dropout), p->cls_w, p->cls_b, one);
}

/* ---- declarations ---- */

/* Adds prefix.suffix with the given shape; NULL (err set) on failure. */
static lt_tensor *declare(lt_params *ps, const char *prefix, const char *suffix, int64_t d0, int64_t d1,
                          int64_t d2, int64_t d3, lt_param_kind kind, lt_err *err) {
    char name[LT_NAME_MAX];
    int len = snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", suffix);
    if (len < 0 || len >= (int)sizeof name) {
        lt_errorf(err, LT_ERR_ARG, "parameter name %s.%s is longer than %d characters", prefix, suffix,
                  LT_NAME_MAX - 1);
        return NULL;
    }
    int64_t shape[4] = {d0, d1, d2, d3};
    int ndim = d3 > 0 ? 4 : d2 > 0 ? 3 : d1 > 0 ? 2 : 1;
    lt_tensor *t = lt_params_add(ps, name, shape, ndim, kind, err);
    /* transformers' Trainer decays every weight except biases and LayerNorm weights; the caller marks norms
     */
    if (t && ndim == 1) t->no_decay = 1;
    return t;
}

#define DECL(field, suffix, d0, d1, d2, d3)                                                                  \
    do {                                                                                                     \
        if (!((field) = declare(ps, prefix, suffix, d0, d1, d2, d3, LT_PARAM_TRAINABLE, err)))               \
            return LT_ERR_ARG;                                                                               \
    } while (0)

lt_status lt_segformer_layer_declare(lt_params *ps, const char *prefix, int hidden, int mlp_hidden,
                                     int sr_ratio, lt_segformer_layer_params *p, lt_err *err) {
    if (hidden < 1 || mlp_hidden < 1 || sr_ratio < 1)
        return lt_errorf(err, LT_ERR_ARG,
                         "segformer layer %s: hidden %d, mlp_hidden %d, sr_ratio %d must be >= 1", prefix,
                         hidden, mlp_hidden, sr_ratio);
    const int C = hidden, F = mlp_hidden;
    *p = (lt_segformer_layer_params){0};
    lt_segformer_attention_params *a = &p->attn;
    lt_segformer_ffn_params *f = &p->ffn;
    DECL(p->ln1_w, "layer_norm_1.weight", C, 0, 0, 0);
    DECL(p->ln1_b, "layer_norm_1.bias", C, 0, 0, 0);
    DECL(a->query_w, "attention.self.query.weight", C, C, 0, 0);
    DECL(a->query_b, "attention.self.query.bias", C, 0, 0, 0);
    DECL(a->key_w, "attention.self.key.weight", C, C, 0, 0);
    DECL(a->key_b, "attention.self.key.bias", C, 0, 0, 0);
    DECL(a->value_w, "attention.self.value.weight", C, C, 0, 0);
    DECL(a->value_b, "attention.self.value.bias", C, 0, 0, 0);
    if (sr_ratio > 1) {
        DECL(a->sr_w, "attention.self.sr.weight", C, C, sr_ratio, sr_ratio);
        DECL(a->sr_b, "attention.self.sr.bias", C, 0, 0, 0);
        DECL(a->ln_w, "attention.self.layer_norm.weight", C, 0, 0, 0);
        DECL(a->ln_b, "attention.self.layer_norm.bias", C, 0, 0, 0);
    }
    DECL(a->dense_w, "attention.output.dense.weight", C, C, 0, 0);
    DECL(a->dense_b, "attention.output.dense.bias", C, 0, 0, 0);
    DECL(p->ln2_w, "layer_norm_2.weight", C, 0, 0, 0);
    DECL(p->ln2_b, "layer_norm_2.bias", C, 0, 0, 0);
    DECL(f->dense1_w, "mlp.dense1.weight", F, C, 0, 0);
    DECL(f->dense1_b, "mlp.dense1.bias", F, 0, 0, 0);
    DECL(f->dwconv_w, "mlp.dwconv.dwconv.weight", F, 1, 3, 3);
    DECL(f->dwconv_b, "mlp.dwconv.dwconv.bias", F, 0, 0, 0);
    DECL(f->dense2_w, "mlp.dense2.weight", C, F, 0, 0);
    DECL(f->dense2_b, "mlp.dense2.bias", C, 0, 0, 0);
    return LT_OK;
}

lt_status lt_segformer_patch_declare(lt_params *ps, const char *prefix, int in_channels, int hidden,
                                     int patch_size, lt_segformer_patch_params *p, lt_err *err) {
    if (in_channels < 1 || hidden < 1 || patch_size < 1)
        return lt_errorf(err, LT_ERR_ARG, "segformer patch embeddings %s: sizes must be >= 1", prefix);
    *p = (lt_segformer_patch_params){0};
    DECL(p->proj_w, "proj.weight", hidden, in_channels, patch_size, patch_size);
    DECL(p->proj_b, "proj.bias", hidden, 0, 0, 0);
    DECL(p->ln_w, "layer_norm.weight", hidden, 0, 0, 0);
    DECL(p->ln_b, "layer_norm.bias", hidden, 0, 0, 0);
    return LT_OK;
}

lt_status lt_segformer_head_declare(lt_params *ps, const char *prefix, const int *hidden_sizes, int n_stages,
                                    int decoder_hidden, int num_labels, lt_segformer_head_params *p,
                                    lt_err *err) {
    if (n_stages < 1 || n_stages > LT_SEGFORMER_MAX_STAGES || decoder_hidden < 1 || num_labels < 1)
        return lt_errorf(err, LT_ERR_ARG,
                         "segformer decode head: %d stages (1..%d), decoder_hidden_size %d, num_labels %d",
                         n_stages, LT_SEGFORMER_MAX_STAGES, decoder_hidden, num_labels);
    *p = (lt_segformer_head_params){0};
    p->n_stages = n_stages;
    const int Cd = decoder_hidden;
    char suffix[64];
    for (int i = 0; i < n_stages; i++) {
        if (hidden_sizes[i] < 1)
            return lt_errorf(err, LT_ERR_ARG, "segformer decode head: hidden_sizes[%d] < 1", i);
        snprintf(suffix, sizeof suffix, "linear_c.%d.proj.weight", i);
        DECL(p->proj_w[i], suffix, Cd, hidden_sizes[i], 0, 0);
        snprintf(suffix, sizeof suffix, "linear_c.%d.proj.bias", i);
        DECL(p->proj_b[i], suffix, Cd, 0, 0, 0);
    }
    DECL(p->fuse_w, "linear_fuse.weight", Cd, (int64_t)n_stages * Cd, 1, 1);
    DECL(p->bn_w, "batch_norm.weight", Cd, 0, 0, 0);
    DECL(p->bn_b, "batch_norm.bias", Cd, 0, 0, 0);
    if (!(p->bn_mean = declare(ps, prefix, "batch_norm.running_mean", Cd, 0, 0, 0, LT_PARAM_BUFFER, err)) ||
        !(p->bn_var = declare(ps, prefix, "batch_norm.running_var", Cd, 0, 0, 0, LT_PARAM_BUFFER, err)))
        return LT_ERR_ARG;
    p->bn_w->no_decay = 0; /* a BatchNorm weight is decayed by transformers' Trainer, unlike a LayerNorm's */
    DECL(p->cls_w, "classifier.weight", num_labels, Cd, 1, 1);
    DECL(p->cls_b, "classifier.bias", num_labels, 0, 0, 0);
    return LT_OK;
}
