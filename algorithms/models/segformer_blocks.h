/* segformer_blocks.h - SegFormer (Mix Transformer) building blocks on the lathe graph, composed from ops.h.
 *
 * Each builder takes its parameters as a struct of tensor pointers whose fields follow transformers'
 * module names; the *_declare helpers add those tensors to a parameter store under the exact state-dict
 * names (prefix + ".attention.self.query.weight", ...), so a model declares a layer with one call and loads
 * a transformers checkpoint unchanged. Semantics follow transformers' modeling_segformer.py:
 *
 *   SegformerOverlapPatchEmbeddings  conv(k, stride, pad k/2) -> tokens -> LayerNorm
 *   SegformerEfficientSelfAttention  q from hidden; k, v from hidden reduced by a (sr x sr, stride sr) conv
 * and a LayerNorm when sr_ratio > 1; softmax(q k^T / sqrt(D)) v per head SegformerSelfOutput dense (+ hidden
 * dropout) SegformerMixFFN                  dense1 -> depthwise 3x3 conv (pad 1) on the token grid -> GELU ->
 * dense2 SegformerLayer                   x + drop_path(attn(LN1(x))); then x + drop_path(ffn(LN2(x)))
 *   SegformerDecodeHead              per stage linear -> bilinear upsample to stage 0 -> concat (last stage
 *                                    first) -> 1x1 conv (no bias) -> BatchNorm -> ReLU -> dropout -> 1x1 conv
 *
 * Layer norm eps: transformers builds every SegFormer LayerNorm as nn.LayerNorm(hidden_size), i.e. eps 1e-5;
 * config.layer_norm_eps (1e-6) is stored in the config but never read by the model. Use
 * LT_SEGFORMER_LN_EPS to match released checkpoints.
 *
 * Tokens are (B, height * width, C) in row-major grid order (token t = y * width + x), as transformers'
 * flatten(2).transpose(1, 2). Attention-probability dropout (attention_probs_dropout_prob, 0.0 in every
 * released config) is not supported. */
#ifndef LT_SEGFORMER_BLOCKS_H
#define LT_SEGFORMER_BLOCKS_H

#include "core/graph.h"
#include "core/params.h"
#include "ops/ops.h"

#define LT_SEGFORMER_LN_EPS 1e-5f

/* SegformerAttention: attention.self.{query,key,value,sr,layer_norm} and attention.output.dense. */
typedef struct {
    lt_tensor *query_w, *query_b; /* (C, C), (C) */
    lt_tensor *key_w, *key_b;     /* (C, C), (C) */
    lt_tensor *value_w, *value_b; /* (C, C), (C) */
    lt_tensor *sr_w, *sr_b;       /* (C, C, sr, sr), (C); NULL when sr_ratio == 1 */
    lt_tensor *ln_w, *ln_b;       /* (C) the sequence-reduction LayerNorm; NULL when sr_ratio == 1 */
    lt_tensor *dense_w, *dense_b; /* (C, C), (C) attention.output.dense */
} lt_segformer_attention_params;

/* SegformerMixFFN: mlp.dense1, mlp.dwconv.dwconv, mlp.dense2. F = mlp_ratio * C. */
typedef struct {
    lt_tensor *dense1_w, *dense1_b; /* (F, C), (F) */
    lt_tensor *dwconv_w, *dwconv_b; /* (F, 1, 3, 3), (F) */
    lt_tensor *dense2_w, *dense2_b; /* (C, F), (C) */
} lt_segformer_ffn_params;

/* SegformerLayer: layer_norm_1, attention, layer_norm_2, mlp. */
typedef struct {
    lt_tensor *ln1_w, *ln1_b; /* (C) */
    lt_segformer_attention_params attn;
    lt_tensor *ln2_w, *ln2_b; /* (C) */
    lt_segformer_ffn_params ffn;
} lt_segformer_layer_params;

/* SegformerOverlapPatchEmbeddings: proj (a convolution) and layer_norm. */
typedef struct {
    lt_tensor *proj_w, *proj_b; /* (C, C_in, k, k), (C) */
    lt_tensor *ln_w, *ln_b;     /* (C) */
} lt_segformer_patch_params;

#define LT_SEGFORMER_MAX_STAGES 4

/* SegformerDecodeHead: linear_c.{i}.proj, linear_fuse, batch_norm, classifier. */
typedef struct {
    int n_stages;
    lt_tensor *proj_w[LT_SEGFORMER_MAX_STAGES]; /* (Cd, C_i) linear_c.{i}.proj.weight */
    lt_tensor *proj_b[LT_SEGFORMER_MAX_STAGES]; /* (Cd) */
    lt_tensor *fuse_w;                          /* (Cd, n_stages * Cd, 1, 1) linear_fuse.weight, no bias */
    lt_tensor *bn_w, *bn_b;                     /* (Cd) batch_norm.weight, .bias */
    lt_tensor *bn_mean, *bn_var;                /* (Cd) batch_norm.running_mean, .running_var (buffers) */
    lt_tensor *cls_w, *cls_b;                   /* (num_labels, Cd, 1, 1), (num_labels) classifier */
} lt_segformer_head_params;

/* What one encoder layer needs besides its weights. */
typedef struct {
    int height, width;    /* token grid: hidden is (B, height * width, C) */
    int heads;            /* num_attention_heads of the stage; C % heads == 0 */
    int sr_ratio;         /* sr_ratios of the stage; 1 = keys and values from the full grid */
    float drop_path;      /* stochastic depth probability of this layer; used by training graphs only */
    float hidden_dropout; /* hidden_dropout_prob (0.0 in released configs); training graphs only */
    float eps;            /* LayerNorm eps of layer_norm_1/2 and the sr LayerNorm: LT_SEGFORMER_LN_EPS */
} lt_segformer_layer_cfg;

/* ---- builders; errors are recorded in the graph as usual (bad shapes name the block and the shapes) ---- */

/* SegformerAttention (EfficientSelfAttention + SelfOutput): hidden (B, height*width, C) -> (B, height*width,
 * C). Uses cfg height, width, heads, sr_ratio, hidden_dropout, eps. With sr_ratio > 1 the reduced grid is
 * (height / sr, width / sr) rounded down, as the unpadded convolution gives. */
lt_tensor *lt_segformer_efficient_attention(lt_graph *g, lt_tensor *hidden,
                                            const lt_segformer_attention_params *p,
                                            const lt_segformer_layer_cfg *cfg);

/* SegformerMixFFN: hidden (B, height*width, C) -> (B, height*width, C). Uses cfg height, width,
 * hidden_dropout (after the GELU and after dense2, as transformers). */
lt_tensor *lt_segformer_mix_ffn(lt_graph *g, lt_tensor *hidden, const lt_segformer_ffn_params *p,
                                const lt_segformer_layer_cfg *cfg);

/* SegformerLayer: hidden (B, height*width, C) -> (B, height*width, C). */
lt_tensor *lt_segformer_layer(lt_graph *g, lt_tensor *hidden, const lt_segformer_layer_params *p,
                              const lt_segformer_layer_cfg *cfg);

/* SegformerOverlapPatchEmbeddings: x (B, C_in, H, W) -> tokens (B, h*w, C); the kernel size k comes from
 * proj_w, padding is k / 2. *height and *width receive the token grid (h, w). */
lt_tensor *lt_segformer_patch_embeddings(lt_graph *g, lt_tensor *x, const lt_segformer_patch_params *p,
                                         int stride, float eps, int *height, int *width);

/* Tokens (B, height*width, C) -> feature map (B, C, height, width) (a transpose copy), as the encoder's
 * reshape(B, h, w, -1).permute(0, 3, 1, 2) at the end of each stage. */
lt_tensor *lt_segformer_tokens_to_map(lt_graph *g, lt_tensor *tokens, int height, int width);

/* SegformerDecodeHead: features[i] (B, C_i, h_i, w_i) for i < p->n_stages (stage 0 the largest) ->
 * logits (B, num_labels, h_0, w_0). bn_mode picks batch or running statistics; dropout is
 * classifier_dropout_prob (0.1), active in training graphs only. */
lt_tensor *lt_segformer_decode_head(lt_graph *g, lt_tensor *const *features,
                                    const lt_segformer_head_params *p, lt_bn_mode bn_mode, float dropout);

/* ---- declaration under transformers' names; p must not be allocated yet. On error (a duplicate name, OOM)
 * err says which and the store keeps what was added before. As transformers' Trainer, biases and LayerNorm
 * weights get no_decay; the decode head's BatchNorm weight is decayed. The BatchNorm's num_batches_tracked
 * (an int64 counter in transformers' state dict) is not declared. ---- */

/* A SegformerLayer at prefix (e.g. "segformer.encoder.block.0.1"); mlp_hidden = mlp_ratio * hidden. */
lt_status lt_segformer_layer_declare(lt_params *ps, const char *prefix, int hidden, int mlp_hidden,
                                     int sr_ratio, lt_segformer_layer_params *p, lt_err *err);
/* Patch embeddings at prefix (e.g. "segformer.encoder.patch_embeddings.0"). */
lt_status lt_segformer_patch_declare(lt_params *ps, const char *prefix, int in_channels, int hidden,
                                     int patch_size, lt_segformer_patch_params *p, lt_err *err);
/* The decode head at prefix (e.g. "decode_head"); hidden_sizes[i] for i < n_stages. */
lt_status lt_segformer_head_declare(lt_params *ps, const char *prefix, const int *hidden_sizes, int n_stages,
                                    int decoder_hidden, int num_labels, lt_segformer_head_params *p,
                                    lt_err *err);

#endif
