/* attention.h - multi-head attention composed from ops.h builders.
 *
 * The core lt_attention (softmax(q k^T / sqrt(D) + mask) v per head) is declared in ops.h; this header adds
 * the projected form the models use. Masks are additive floats (0 keep, -inf drop; HF's large negative
 * finfo.min works too, with PyTorch's result). A query whose keys are all -inf has no softmax: lathe
 * defines its probabilities and output as 0 (PyTorch gives NaN), and no gradient flows through it. */
#ifndef LT_ATTENTION_H
#define LT_ATTENTION_H

#include "ops.h"

/* out_proj(attention(q_proj(q_in), k_proj(k_in), v_proj(v_in), mask, heads)), i.e.
 * torch.nn.MultiheadAttention(batch_first=True, dropout=0) with in_proj_weight split into wq, wk, wv
 * (each (C, C_in)) and HF DetrAttention / SegformerEfficientSelfAttention (+ SelfOutput dense).
 * q_in (B, TQ, Cq), k_in and v_in (B, TK, Ck); wq (C, Cq), wk, wv (C, Ck), wo (C, C); biases (C) or NULL;
 * mask (B, TK) additive (0 keep, -inf drop) or NULL. Output (B, TQ, C). Appends four linear nodes and one
 * attention node; any shape error is recorded in the graph as usual. */
lt_tensor *lt_mha_projected(lt_graph *g, lt_tensor *q_in, lt_tensor *k_in, lt_tensor *v_in, lt_tensor *mask,
                            int heads, lt_tensor *wq, lt_tensor *bq, lt_tensor *wk, lt_tensor *bk,
                            lt_tensor *wv, lt_tensor *bv, lt_tensor *wo, lt_tensor *bo);

#endif
