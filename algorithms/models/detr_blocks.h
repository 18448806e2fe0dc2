/* detr_blocks.h - DETR's transformer building blocks on the lathe graph, composed from ops.h.
 *
 * Semantics follow transformers' modeling_detr.py:
 *
 *   DetrAttention        q = q_proj(hidden_q + pos_q) * D^-0.5, k = k_proj(hidden_kv + pos_k),
 *                        v = v_proj(hidden_kv) (no position in the values), softmax(q k^T + mask) v per head,
 *                        out_proj. Scaling q before the product equals lt_attention's scaling of q k^T.
 *   DetrEncoderLayer     post-norm: x = LN(x + drop(self_attn(x, pos))); x = LN(x +
 * drop(fc2(drop_act(relu(fc1 x))))) DetrDecoderLayer     x = LN(x + drop(self_attn(x, query_pos))); x = LN(x
 * + drop(cross_attn(q = x + query_pos, k = memory + memory_pos, v = memory))); x = LN(x +
 * drop(fc2(drop_act(relu(fc1 x))))) DetrSinePositionEmbedding (normalize=True, scale 2 pi) computed into a
 * plain buffer.
 *
 * Position embeddings are either per image (B, T, C) or shared (T, C) (broadcast over the batch; the learned
 * query_position_embeddings.weight can be passed as is and receives the batch-summed gradient).
 * Key padding masks are additive (B, TK): 0 keeps a key, a large negative value drops it (see
 * lt_detr_key_padding_mask). Not supported: attention_dropout on the probabilities (0.0 in transformers'
 * default and released DETR configs), layerdrop, and the training-time clamp of inf/NaN in the encoder. */
#ifndef LT_DETR_BLOCKS_H
#define LT_DETR_BLOCKS_H

#include "core/graph.h"
#include "core/params.h"
#include "ops/ops.h"

#include <stdint.h>

/* nn.LayerNorm's default eps, which every DETR LayerNorm uses. */
#define LT_DETR_LN_EPS 1e-5f

/* DetrAttention: q_proj, k_proj, v_proj, out_proj. */
typedef struct {
    lt_tensor *q_w, *q_b;     /* (C, C), (C) */
    lt_tensor *k_w, *k_b;     /* (C, C), (C) */
    lt_tensor *v_w, *v_b;     /* (C, C), (C) */
    lt_tensor *out_w, *out_b; /* (C, C), (C) */
} lt_detr_attention_params;

/* DetrEncoderLayer. F = encoder_ffn_dim (2048). */
typedef struct {
    lt_detr_attention_params self_attn;
    lt_tensor *self_ln_w, *self_ln_b;   /* (C) self_attn_layer_norm */
    lt_tensor *fc1_w, *fc1_b;           /* (F, C), (F) */
    lt_tensor *fc2_w, *fc2_b;           /* (C, F), (C) */
    lt_tensor *final_ln_w, *final_ln_b; /* (C) final_layer_norm */
} lt_detr_encoder_layer_params;

/* DetrDecoderLayer. F = decoder_ffn_dim (2048). */
typedef struct {
    lt_detr_attention_params self_attn;
    lt_tensor *self_ln_w, *self_ln_b; /* (C) self_attn_layer_norm */
    lt_detr_attention_params encoder_attn;
    lt_tensor *enc_ln_w, *enc_ln_b;     /* (C) encoder_attn_layer_norm */
    lt_tensor *fc1_w, *fc1_b;           /* (F, C), (F) */
    lt_tensor *fc2_w, *fc2_b;           /* (C, F), (C) */
    lt_tensor *final_ln_w, *final_ln_b; /* (C) final_layer_norm */
} lt_detr_decoder_layer_params;

/* What a layer needs besides its weights. */
typedef struct {
    int heads;                /* encoder_attention_heads / decoder_attention_heads: 8 */
    float dropout;            /* config.dropout (0.1): after each attention and after fc2; training only */
    float activation_dropout; /* config.activation_dropout (0.0): after the ReLU; training only */
    float eps;                /* LayerNorm eps: LT_DETR_LN_EPS */
} lt_detr_layer_cfg;

/* ---- builders; errors are recorded in the graph as usual ---- */

/* DetrAttention: hidden_q (B, TQ, C), pos_q (B, TQ, C), (TQ, C) or NULL, hidden_kv (B, TK, C), pos_k likewise
 * or NULL, key_padding_mask (B, TK) additive or NULL -> (B, TQ, C). Self-attention is hidden_kv == hidden_q
 * and pos_k == pos_q (the sum hidden + pos is then built once). */
lt_tensor *lt_detr_attention(lt_graph *g, lt_tensor *hidden_q, lt_tensor *pos_q, lt_tensor *hidden_kv,
                             lt_tensor *pos_k, lt_tensor *key_padding_mask, int heads,
                             const lt_detr_attention_params *p);

/* DetrEncoderLayer: hidden (B, T, C), pos (B, T, C), (T, C) or NULL (the spatial sine embedding), mask (B, T)
 * additive or NULL -> (B, T, C). */
lt_tensor *lt_detr_encoder_layer(lt_graph *g, lt_tensor *hidden, lt_tensor *pos, lt_tensor *mask,
                                 const lt_detr_encoder_layer_params *p, const lt_detr_layer_cfg *cfg);

/* DetrDecoderLayer: hidden (B, Q, C) (zeros before the first layer, as transformers), query_pos (B, Q, C),
 * (Q, C) or NULL (query_position_embeddings), memory (B, T, C) the encoder output, memory_pos (B, T, C),
 * (T, C) or NULL (the spatial embedding), memory_mask (B, T) additive or NULL -> (B, Q, C). */
lt_tensor *lt_detr_decoder_layer(lt_graph *g, lt_tensor *hidden, lt_tensor *query_pos, lt_tensor *memory,
                                 lt_tensor *memory_pos, lt_tensor *memory_mask,
                                 const lt_detr_decoder_layer_params *p, const lt_detr_layer_cfg *cfg);

/* ---- constants computed outside the graph (no gradient) ---- */

/* DetrSinePositionEmbedding(embedding_dim = npf, temperature, normalize=True, scale=2 pi) from a pixel mask,
 * written in token layout: pos (B, H*W, 2*npf) = transformers' output (B, 2*npf, H, W) flattened and
 * transposed, i.e. channels [0, npf) from the row (y) position and [npf, 2 npf) from the column (x), each
 * interleaving sin (even channels) and cos (odd). d_model = 2 * npf (DETR: npf 128, temperature 10000).
 * mask (B, H, W): 1 for pixels, 0 for padding. Float arithmetic follows torch's float32 steps.
 * LT_ERR_ARG when npf is odd or < 2, or a size is < 1 (nothing written). */
lt_status lt_detr_sine_position_embedding(float *pos,        /* (B, H*W, 2*npf) */
                                          const float *mask, /* (B, H, W) */
                                          int64_t B, int64_t H, int64_t W, int npf, float temperature,
                                          lt_err *err);

/* Additive key padding mask from a pixel mask: 0 where mask is nonzero, -FLT_MAX (transformers'
 * torch.finfo(float32).min) where it is 0. A fully padded image then attends uniformly, as in transformers.
 */
void lt_detr_key_padding_mask(float *out,        /* (n) */
                              const float *mask, /* (n) */
                              int64_t n);

/* The pixel mask at a feature map's size, as transformers' interpolate(mask, size=(h, w)) (mode "nearest":
 * source index floor(i * in / out) with the ratio in float, clamped). */
void lt_detr_mask_nearest(float *out,        /* (B, h, w) */
                          const float *mask, /* (B, H, W) */
                          int64_t B, int64_t H, int64_t W, int64_t h, int64_t w);

/* ---- declaration under transformers' names (e.g. prefix "model.encoder.layers.0"); p must not be allocated
 * yet. err says what failed. Biases and LayerNorm weights get no_decay. ---- */
lt_status lt_detr_encoder_layer_declare(lt_params *ps, const char *prefix, int d_model, int ffn_dim,
                                        lt_detr_encoder_layer_params *p, lt_err *err);
lt_status lt_detr_decoder_layer_declare(lt_params *ps, const char *prefix, int d_model, int ffn_dim,
                                        lt_detr_decoder_layer_params *p, lt_err *err);

#endif
