/* resize.c - bilinear resampling as torch.nn.functional.interpolate(mode="bilinear", align_corners=False).
 *
 * PyTorch's rule, followed to the rounding: scale = (float)in / out (size given, not a scale factor);
 * src = scale * (dst + 0.5) - 0.5 evaluated in double and rounded to float, clamped at 0 below;
 * i0 = (int)src, i1 = i0 + 1 except at the last row/column, lambda1 = src - i0, lambda0 = 1 - lambda1.
 * No antialiasing when downsampling (PyTorch's default), so each output reads at most 4 inputs and the
 * backward scatters with the same 4 weights.
 *
 * Test hook: node->ip[LT_NODE_IP - 1] = 1 switches the node to the naive reference kernels. */
#include "ops.h"

#include <omp.h>
#include <string.h>

#define RESIZE_IP_REFERENCE (LT_NODE_IP - 1)
/* below this many outputs one thread does the work: waking the team costs more */
#define RESIZE_PAR_MIN 4096

typedef struct {
    int64_t i0, i1; /* source indices */
    float l0, l1;   /* their weights */
} resize_tap;

static resize_tap resize_tap_at(int64_t dst, int64_t in, int64_t out) {
    float scale = (float)in / (float)out;
    float src = (float)(scale * ((double)dst + 0.5) - 0.5);
    if (src < 0) src = 0;
    resize_tap t;
    t.i0 = (int64_t)src;
    t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
    t.l1 = src - (float)t.i0;
    if (t.l1 > 1) t.l1 = 1;
    t.l0 = 1.0f - t.l1;
    return t;
}

/* Fills taps (OW) with the column taps, computed once per call instead of once per row. */
static void resize_column_taps(resize_tap *taps, int64_t W, int64_t OW) {
    for (int64_t ox = 0; ox < OW; ox++)
        taps[ox] = resize_tap_at(ox, W, OW);
}

/* out (P, OH, OW), x (P, H, W) with P = N * C planes; taps (OW) scratch */
static void resize_bilinear_forward(float *out, const float *x, resize_tap *taps, int64_t P, int64_t H,
                                    int64_t W, int64_t OH, int64_t OW) {
    resize_column_taps(taps, W, OW);
#pragma omp parallel for collapse(2) if (P * OH * OW >= RESIZE_PAR_MIN)
    for (int64_t p = 0; p < P; p++)
        for (int64_t oy = 0; oy < OH; oy++) {
            resize_tap ty = resize_tap_at(oy, H, OH);
            const float *r0 = x + (p * H + ty.i0) * W, *r1 = x + (p * H + ty.i1) * W;
            float *o = out + (p * OH + oy) * OW;
            for (int64_t ox = 0; ox < OW; ox++) {
                resize_tap tx = taps[ox];
                o[ox] = ty.l0 * (tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1]) +
                        ty.l1 * (tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1]);
            }
        }
}

/* dx (P, H, W) += scatter of dout (P, OH, OW). Planes are independent, so threads split planes. Each output
 * row is first folded horizontally into rowbuf (W), so the two touched input rows get one contiguous pass
 * each instead of four scattered updates per output. rowbuf: nt * W scratch floats, one row per thread. */
static void resize_bilinear_backward(float *dx, const float *dout, resize_tap *taps, float *rowbuf, int nt,
                                     int64_t P, int64_t H, int64_t W, int64_t OH, int64_t OW) {
    resize_column_taps(taps, W, OW);
#pragma omp parallel for num_threads(nt) if (nt > 1 && P * OH * OW >= RESIZE_PAR_MIN)
    for (int64_t p = 0; p < P; p++) {
        float *row = rowbuf + (int64_t)omp_get_thread_num() * W;
        for (int64_t oy = 0; oy < OH; oy++) {
            resize_tap ty = resize_tap_at(oy, H, OH);
            float *r0 = dx + (p * H + ty.i0) * W, *r1 = dx + (p * H + ty.i1) * W;
            const float *go = dout + (p * OH + oy) * OW;
            /* out = l0y (l0x x00 + l1x x01) + l1y (l0x x10 + l1x x11) */
            memset(row, 0, (size_t)W * sizeof *row);
            for (int64_t ox = 0; ox < OW; ox++) {
                resize_tap tx = taps[ox];
                row[tx.i0] += tx.l0 * go[ox];
                row[tx.i1] += tx.l1 * go[ox];
            }
            for (int64_t x = 0; x < W; x++) {
                r0[x] += ty.l0 * row[x];
                r1[x] += ty.l1 * row[x];
            }
        }
    }
}

/* Naive reference: every output computes its own taps; backward scatters four updates per output. */
static void resize_bilinear_forward_ref(float *out, const float *x, int64_t P, int64_t H, int64_t W,
                                        int64_t OH, int64_t OW) {
    for (int64_t p = 0; p < P; p++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                resize_tap ty = resize_tap_at(oy, H, OH), tx = resize_tap_at(ox, W, OW);
                const float *xp = x + p * H * W;
                out[(p * OH + oy) * OW + ox] =
                    ty.l0 * (tx.l0 * xp[ty.i0 * W + tx.i0] + tx.l1 * xp[ty.i0 * W + tx.i1]) +
                    ty.l1 * (tx.l0 * xp[ty.i1 * W + tx.i0] + tx.l1 * xp[ty.i1 * W + tx.i1]);
            }
}

static void resize_bilinear_backward_ref(float *dx, const float *dout, int64_t P, int64_t H, int64_t W,
                                         int64_t OH, int64_t OW) {
    for (int64_t p = 0; p < P; p++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                resize_tap ty = resize_tap_at(oy, H, OH), tx = resize_tap_at(ox, W, OW);
                float g = dout[(p * OH + oy) * OW + ox], *dp = dx + p * H * W;
                dp[ty.i0 * W + tx.i0] += ty.l0 * tx.l0 * g;
                dp[ty.i0 * W + tx.i1] += ty.l0 * tx.l1 * g;
                dp[ty.i1 * W + tx.i0] += ty.l1 * tx.l0 * g;
                dp[ty.i1 * W + tx.i1] += ty.l1 * tx.l1 * g;
            }
}

/* ip: P, H, W, OH, OW, threads, offset of the row buffers in scratch */
static void resize_fw(lt_node *n, const lt_exec *e) {
    if (n->ip[RESIZE_IP_REFERENCE]) {
        resize_bilinear_forward_ref(n->out->data, n->in[0]->data, n->ip[0], n->ip[1], n->ip[2], n->ip[3],
                                    n->ip[4]);
        return;
    }
    resize_bilinear_forward(n->out->data, n->in[0]->data, (resize_tap *)e->scratch, n->ip[0], n->ip[1],
                            n->ip[2], n->ip[3], n->ip[4]);
}

static void resize_bw(lt_node *n, const lt_exec *e) {
    if (!n->in[0]->grad) return;
    if (n->ip[RESIZE_IP_REFERENCE])
        resize_bilinear_backward_ref(n->in[0]->grad, n->out->grad, n->ip[0], n->ip[1], n->ip[2], n->ip[3],
                                     n->ip[4]);
    else
        resize_bilinear_backward(n->in[0]->grad, n->out->grad, (resize_tap *)e->scratch,
                                 e->scratch + n->ip[6], (int)n->ip[5], n->ip[0], n->ip[1], n->ip[2], n->ip[3],
                                 n->ip[4]);
}

static const lt_op resize_op = {"resize_bilinear", resize_fw, resize_bw};

lt_tensor *lt_resize_bilinear(lt_graph *g, lt_tensor *x, int oh, int ow) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    char sx[96];
    lt_shape_str(x->shape, x->ndim, sx, 96);
    if (x->ndim != 4 || x->shape[2] < 1 || x->shape[3] < 1)
        return lt_graph_fail(g, LT_ERR_SHAPE, "resize_bilinear: input %s is not a non-empty (N, C, H, W)",
                             sx);
    if (oh < 1 || ow < 1)
        return lt_graph_fail(g, LT_ERR_ARG, "resize_bilinear: output size %dx%d of input %s must be positive",
                             oh, ow, sx);
    int64_t shape[4] = {x->shape[0], x->shape[1], oh, ow};
    lt_tensor *out = lt_graph_new_tensor(g, shape, 4);
    lt_node *n = lt_graph_add_node(g, &resize_op, out, &x, 1);
    if (!n) return NULL;
    n->ip[0] = x->shape[0] * x->shape[1];
    n->ip[1] = x->shape[2];
    n->ip[2] = x->shape[3];
    n->ip[3] = oh;
    n->ip[4] = ow;
    /* scratch: the column taps, then one row of W floats per thread for backward */
    int nt = omp_get_max_threads();
    n->ip[5] = nt;
    n->ip[6] = (int64_t)ow * (int64_t)(sizeof(resize_tap) / sizeof(float));
    n->scratch_numel = n->ip[6] + (int64_t)nt * x->shape[3];
    n->bw_skip_in = 1u; /* linear in x: backward needs only the weights */
    n->bw_skip_out = 1;
    return out;
}
