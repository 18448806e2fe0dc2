/* detr_blocks.c - DETR's attention, encoder and decoder layers composed from ops, and the sine position
 * embedding and masks computed outside the graph.
 *
 * Position embeddings enter only the query and key inputs: q_in = hidden + pos, k_in = kv + pos_k,
 * v_in = kv. The additions are lt_add nodes (pos may be (T, C), shared by the batch), and in
 * self-attention the same sum feeds both projections. */
#include "detr_blocks.h"

#include "ops/attention.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

/* x + pos, or x when pos is NULL. */
static lt_tensor *with_pos(lt_graph *g, lt_tensor *x, lt_tensor *pos) {
    return pos ? lt_add(g, x, pos) : x;
}

lt_tensor *lt_detr_attention(lt_graph *g, lt_tensor *hidden_q, lt_tensor *pos_q, lt_tensor *hidden_kv,
                             lt_tensor *pos_k, lt_tensor *key_padding_mask, int heads,
                             const lt_detr_attention_params *p) {
    lt_tensor *in[2] = {hidden_q, hidden_kv};
    if (lt_graph_failed(g, in, 2)) return NULL;
    if (hidden_q->ndim != 3 || hidden_kv->ndim != 3 || hidden_q->shape[0] != hidden_kv->shape[0] ||
        hidden_q->shape[2] != hidden_kv->shape[2]) {
        char sq[96], sk[96];
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "detr attention: hidden_q %s and hidden_kv %s are not (B, TQ, C), (B, TK, C)",
                             lt_shape_str(hidden_q->shape, hidden_q->ndim, sq, sizeof sq),
                             lt_shape_str(hidden_kv->shape, hidden_kv->ndim, sk, sizeof sk));
    }
    lt_tensor *q_in = with_pos(g, hidden_q, pos_q); /* (B, TQ, C) */
    lt_tensor *k_in = hidden_kv == hidden_q && pos_k == pos_q ? q_in : with_pos(g, hidden_kv, pos_k);
    return lt_mha_projected(g, q_in, k_in, hidden_kv, key_padding_mask, heads, p->q_w, p->q_b, p->k_w, p->k_b,
                            p->v_w, p->v_b, p->out_w, p->out_b);
}

/* LN(residual + dropout(x)): the post-norm residual step every DETR sub-block ends with. */
static lt_tensor *residual_norm(lt_graph *g, lt_tensor *residual, lt_tensor *x, lt_tensor *ln_w,
                                lt_tensor *ln_b, const lt_detr_layer_cfg *cfg) {
    return lt_layernorm(g, lt_add(g, residual, lt_dropout(g, x, cfg->dropout)), ln_w, ln_b, cfg->eps);
}

/* fc2(dropout_act(relu(fc1(x)))) */
static lt_tensor *ffn(lt_graph *g, lt_tensor *x, lt_tensor *fc1_w, lt_tensor *fc1_b, lt_tensor *fc2_w,
                      lt_tensor *fc2_b, const lt_detr_layer_cfg *cfg) {
    lt_tensor *h = lt_dropout(g, lt_relu(g, lt_linear(g, x, fc1_w, fc1_b)), cfg->activation_dropout);
    return lt_linear(g, h, fc2_w, fc2_b);
}

lt_tensor *lt_detr_encoder_layer(lt_graph *g, lt_tensor *hidden, lt_tensor *pos, lt_tensor *mask,
                                 const lt_detr_encoder_layer_params *p, const lt_detr_layer_cfg *cfg) {
    lt_tensor *a = lt_detr_attention(g, hidden, pos, hidden, pos, mask, cfg->heads, &p->self_attn);
    lt_tensor *x = residual_norm(g, hidden, a, p->self_ln_w, p->self_ln_b, cfg);
    lt_tensor *f = ffn(g, x, p->fc1_w, p->fc1_b, p->fc2_w, p->fc2_b, cfg);
    return residual_norm(g, x, f, p->final_ln_w, p->final_ln_b, cfg);
}

lt_tensor *lt_detr_decoder_layer(lt_graph *g, lt_tensor *hidden, lt_tensor *query_pos, lt_tensor *memory,
                                 lt_tensor *memory_pos, lt_tensor *memory_mask,
                                 const lt_detr_decoder_layer_params *p, const lt_detr_layer_cfg *cfg) {
    /* the queries never pad: no mask in self-attention (transformers passes none either) */
    lt_tensor *a =
        lt_detr_attention(g, hidden, query_pos, hidden, query_pos, NULL, cfg->heads, &p->self_attn);
    lt_tensor *x = residual_norm(g, hidden, a, p->self_ln_w, p->self_ln_b, cfg);
    a = lt_detr_attention(g, x, query_pos, memory, memory_pos, memory_mask, cfg->heads, &p->encoder_attn);
    x = residual_norm(g, x, a, p->enc_ln_w, p->enc_ln_b, cfg);
    lt_tensor *f = ffn(g, x, p->fc1_w, p->fc1_b, p->fc2_w, p->fc2_b, cfg);
    return residual_norm(g, x, f, p->final_ln_w, p->final_ln_b, cfg);
}

/* ---- position embedding and masks ---- */

lt_status lt_detr_sine_position_embedding(float *pos, const float *mask, int64_t B, int64_t H, int64_t W,
                                          int npf, float temperature, lt_err *err) {
    if (npf < 2 || npf % 2 != 0)
        return lt_errorf(err, LT_ERR_ARG, "sine position embedding: embedding_dim %d must be even and >= 2",
                         npf);
    if (B < 1 || H < 1 || W < 1 || !(temperature > 0.0f))
        return lt_errorf(err, LT_ERR_ARG, "sine position embedding: sizes (%lld, %lld, %lld), temperature %g",
                         (long long)B, (long long)H, (long long)W, temperature);
    const float scale = (float)(2.0 * M_PI), eps = 1e-6f;
    const int64_t C = 2 * (int64_t)npf;
    /* O(B H W (H + W + npf)): run once per image size, far below one convolution of the backbone */
    for (int64_t b = 0; b < B; b++) {
        const float *m = mask + b * H * W; // (H, W)
        for (int64_t y = 0; y < H; y++)
            for (int64_t x = 0; x < W; x++) {
                /* cumulative counts of pixels above/left of (y, x) inclusive, and the totals of its
                 * column/row */
                float cy = 0, cx = 0, ty = 0, tx = 0;
                for (int64_t k = 0; k < H; k++) {
                    if (k <= y) cy += m[k * W + x];
                    ty += m[k * W + x];
                }
                for (int64_t k = 0; k < W; k++) {
                    if (k <= x) cx += m[y * W + k];
                    tx += m[y * W + k];
                }
                const float ey = cy / (ty + eps) * scale, ex = cx / (tx + eps) * scale;
                float *o = pos + ((b * H + y) * W + x) * C; // (C)
                for (int i = 0; i < npf; i += 2) {
                    /* dim_t = temperature ^ (2 floor(i / 2) / npf), in float as torch computes it */
                    const float dim_t = powf(temperature, (2.0f * (float)(i / 2)) / (float)npf);
                    const float ay = ey / dim_t, ax = ex / dim_t;
                    o[i] = sinf(ay);
                    o[i + 1] = cosf(ay);
                    o[npf + i] = sinf(ax);
                    o[npf + i + 1] = cosf(ax);
                }
            }
    }
    return LT_OK;
}

void lt_detr_key_padding_mask(float *out, const float *mask, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = mask[i] != 0.0f ? 0.0f : -FLT_MAX;
}

/* torch's nearest source index: the ratio in float, floor, clamped to the last row/column */
static int64_t nearest_src(int64_t i, int64_t in, int64_t out) {
    if (in == out) return i;
    if (out == 2 * in) return i >> 1;
    const float ratio = (float)in / (float)out;
    int64_t s = (int64_t)floorf((float)i * ratio);
    return s < in - 1 ? s : in - 1;
}

void lt_detr_mask_nearest(float *out, const float *mask, int64_t B, int64_t H, int64_t W, int64_t h,
                          int64_t w) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t y = 0; y < h; y++) {
            const float *row = mask + (b * H + nearest_src(y, H, h)) * W; // (W)
            for (int64_t x = 0; x < w; x++)
                out[(b * h + y) * w + x] = row[nearest_src(x, W, w)];
        }
}

/* ---- declarations ---- */

/* Adds prefix.suffix as a trainable (d0) or (d0, d1) tensor; 1-D ones (biases, norm weights) get no_decay. */
static lt_tensor *declare(lt_params *ps, const char *prefix, const char *suffix, int64_t d0, int64_t d1,
                          lt_err *err) {
    char name[LT_NAME_MAX];
    int len = snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "", suffix);
    if (len < 0 || len >= (int)sizeof name) {
        lt_errorf(err, LT_ERR_ARG, "parameter name %s.%s is longer than %d characters", prefix, suffix,
                  LT_NAME_MAX - 1);
        return NULL;
    }
    int64_t shape[2] = {d0, d1};
    lt_tensor *t = lt_params_add(ps, name, shape, d1 > 0 ? 2 : 1, LT_PARAM_TRAINABLE, err);
    if (t && d1 <= 0) t->no_decay = 1;
    return t;
}

#define DECL(field, suffix, d0, d1)                                                                          \
    do {                                                                                                     \
        if (!((field) = declare(ps, prefix, suffix, d0, d1, err))) return LT_ERR_ARG;                        \
    } while (0)

/* prefix.{sub}.{q,k,v,out}_proj.{weight,bias} */
static lt_status declare_attention(lt_params *ps, const char *prefix, const char *sub, int C,
                                   lt_detr_attention_params *a, lt_err *err) {
    static const char *names[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
    lt_tensor **w[4] = {&a->q_w, &a->k_w, &a->v_w, &a->out_w},
              **b[4] = {&a->q_b, &a->k_b, &a->v_b, &a->out_b};
    char suffix[64];
    for (int i = 0; i < 4; i++) {
        snprintf(suffix, sizeof suffix, "%s.%s.weight", sub, names[i]);
        DECL(*w[i], suffix, C, C);
        snprintf(suffix, sizeof suffix, "%s.%s.bias", sub, names[i]);
        DECL(*b[i], suffix, C, 0);
    }
    return LT_OK;
}

lt_status lt_detr_encoder_layer_declare(lt_params *ps, const char *prefix, int d_model, int ffn_dim,
                                        lt_detr_encoder_layer_params *p, lt_err *err) {
    if (d_model < 1 || ffn_dim < 1)
        return lt_errorf(err, LT_ERR_ARG, "detr encoder layer %s: d_model %d, ffn_dim %d must be >= 1",
                         prefix, d_model, ffn_dim);
    *p = (lt_detr_encoder_layer_params){0};
    lt_status st = declare_attention(ps, prefix, "self_attn", d_model, &p->self_attn, err);
    if (st != LT_OK) return st;
    DECL(p->self_ln_w, "self_attn_layer_norm.weight", d_model, 0);
    DECL(p->self_ln_b, "self_attn_layer_norm.bias", d_model, 0);
    DECL(p->fc1_w, "fc1.weight", ffn_dim, d_model);
    DECL(p->fc1_b, "fc1.bias", ffn_dim, 0);
    DECL(p->fc2_w, "fc2.weight", d_model, ffn_dim);
    DECL(p->fc2_b, "fc2.bias", d_model, 0);
    DECL(p->final_ln_w, "final_layer_norm.weight", d_model, 0);
    DECL(p->final_ln_b, "final_layer_norm.bias", d_model, 0);
    return LT_OK;
}

lt_status lt_detr_decoder_layer_declare(lt_params *ps, const char *prefix, int d_model, int ffn_dim,
                                        lt_detr_decoder_layer_params *p, lt_err *err) {
    if (d_model < 1 || ffn_dim < 1)
        return lt_errorf(err, LT_ERR_ARG, "detr decoder layer %s: d_model %d, ffn_dim %d must be >= 1",
                         prefix, d_model, ffn_dim);
    *p = (lt_detr_decoder_layer_params){0};
    lt_status st = declare_attention(ps, prefix, "self_attn", d_model, &p->self_attn, err);
    if (st != LT_OK) return st;
    DECL(p->self_ln_w, "self_attn_layer_norm.weight", d_model, 0);
    DECL(p->self_ln_b, "self_attn_layer_norm.bias", d_model, 0);
    if ((st = declare_attention(ps, prefix, "encoder_attn", d_model, &p->encoder_attn, err)) != LT_OK)
        return st;
    DECL(p->enc_ln_w, "encoder_attn_layer_norm.weight", d_model, 0);
    DECL(p->enc_ln_b, "encoder_attn_layer_norm.bias", d_model, 0);
    DECL(p->fc1_w, "fc1.weight", ffn_dim, d_model);
    DECL(p->fc1_b, "fc1.bias", ffn_dim, 0);
    DECL(p->fc2_w, "fc2.weight", d_model, ffn_dim);
    DECL(p->fc2_b, "fc2.bias", d_model, 0);
    DECL(p->final_ln_w, "final_layer_norm.weight", d_model, 0);
    DECL(p->final_ln_b, "final_layer_norm.bias", d_model, 0);
    return LT_OK;
}
