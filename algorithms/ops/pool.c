/* pool.c - max pooling and adaptive average pooling over NCHW images, as torch max_pool2d
 * (ceil_mode=False, dilation 1) and adaptive_avg_pool2d. Every (n, c) plane is independent, so the kernels
 * run one plane per OpenMP iteration and backward never has two threads writing the same gradient. */
#include "ops.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Elements of input below which pooling runs on one thread. */
#define POOL_PARALLEL_MIN 65536

/* ---- max pooling ---- */

typedef struct {
    int64_t kh, kw, sh, sw, ph, pw;
} pool_win;

/* The output columns [*lo, *hi) whose windows lie inside an input row of W pixels, for horizontal stride 2
 * (empty for other strides): those are scanned vectorized, the edge windows one by one. */
static void stride2_interior(const pool_win *k, int64_t W, int64_t OW, int64_t *lo, int64_t *hi) {
    *lo = *hi = 0;
    if (k->sw != 2) return;
    *lo = (k->pw + 1) / 2;
    *hi = W - k->kw + k->pw >= 0 ? (W - k->kw + k->pw) / 2 + 1 : 0;
    if (*hi > OW) *hi = OW;
    if (*hi < *lo) *hi = *lo;
}

/* The windows of one output row whose columns lie inside the row, for horizontal stride 2 (ResNet's stem
 * pool): the same scan as maxpool_forward's, tap by tap across the row, so it vectorizes (a constant
 * stride loads with shuffles). rows [h0, h1) of the plane xp; columns [lo, hi) of the output row. */
static void maxpool_row_stride2(float *op, int32_t *ip, const float *xp, int64_t W, int64_t h0, int64_t h1,
                                int64_t lo, int64_t hi, int64_t kw, int64_t pw) {
    for (int64_t ow = lo; ow < hi; ow++) {
        op[ow] = -INFINITY;
        ip[ow] = (int32_t)(h0 * W + 2 * ow - pw);
    }
    for (int64_t ih = h0; ih < h1; ih++)
        for (int64_t t = 0; t < kw; t++) {
            const float *src = xp + ih * W - pw + t + 2 * lo; /* src[2 j] is tap (ih, t) of window lo + j */
            const int32_t at = (int32_t)(ih * W - pw + t + 2 * lo);
            float *o = op + lo;
            int32_t *at_best = ip + lo;
            const int n = (int)(hi - lo);
#pragma omp simd
            for (int j = 0; j < n; j++) {
                const float v = src[2 * j];
                const int take = (v > o[j]) | (v != v);
                o[j] = take ? v : o[j];
                at_best[j] = take ? at + 2 * j : at_best[j];
            }
        }
}

/* out[p, oh, ow] = max of x[p] over the window at (oh*sh - ph, ow*sw - pw), padding counting as -inf;
 * idx holds the flat position ih*W + iw of the max inside its plane. Scan order is row-major and a later
 * element wins only when strictly greater (or NaN, which propagates), as PyTorch. */
static void maxpool_forward(float *out,     /* (planes, OH, OW) */
                            int32_t *idx,   /* (planes, OH, OW) */
                            const float *x, /* (planes, H, W) */
                            int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, pool_win k) {
    int64_t lo, hi; /* with stride 2 across, these windows go through maxpool_row_stride2 */
    stride2_interior(&k, W, OW, &lo, &hi);
#pragma omp parallel for schedule(static) if (planes * H * W >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * k.sh - k.ph, h1 = h0 + k.kh;
            if (h0 < 0) h0 = 0;
            if (h1 > H) h1 = H;
            float *op = out + (p * OH + oh) * OW;
            int32_t *ip = idx + (p * OH + oh) * OW;
            if (hi > lo) maxpool_row_stride2(op, ip, xp, W, h0, h1, lo, hi, k.kw, k.pw);
            for (int64_t ow = 0; ow < OW; ow++) {
                if (ow == lo && hi > lo) {
                    ow = hi - 1;
                    continue;
                }
                int64_t w0 = ow * k.sw - k.pw, w1 = w0 + k.kw;
                if (w0 < 0) w0 = 0;
                if (w1 > W) w1 = W;
                float best = -INFINITY;
                int64_t bi = h0 * W + w0;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++) {
                        float v = xp[ih * W + iw];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = ih * W + iw;
                        }
                    }
                op[ow] = best;
                ip[ow] = (int32_t)bi;
            }
        }
    }
}

/* The larger of best and v, NaN winning as in maxpool_forward's scan. */
static inline float max_nan(float best, float v) {
    return v > best || v != v ? v : best;
}

/* Widest input row maxpool_values takes (its row of column maxima lives on the stack). */
#define POOL_ROW_MAX 2048

/* maxpool_forward's values without the argmax, for inference: per output row, the maximum of each input
 * column over the window's rows (contiguous, so it vectorizes), then of those over each window's columns.
 * Equal to maxpool_forward's output except that among equal values (+0.0 and -0.0) another may be picked.
 * Needs W <= POOL_ROW_MAX. */
static void maxpool_values(float *out,     /* (planes, OH, OW) */
                           const float *x, /* (planes, H, W) */
                           int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW, pool_win k) {
#pragma omp parallel for schedule(static) if (planes * H * W >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        float colmax[POOL_ROW_MAX];
        const float *xp = x + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = oh * k.sh - k.ph, h1 = h0 + k.kh;
            if (h0 < 0) h0 = 0;
            if (h1 > H) h1 = H;
            memcpy(colmax, xp + h0 * W, (size_t)W * sizeof(float));
            for (int64_t ih = h0 + 1; ih < h1; ih++) {
                const float *row = xp + ih * W;
#pragma omp simd
                for (int64_t iw = 0; iw < W; iw++)
                    colmax[iw] = max_nan(colmax[iw], row[iw]);
            }
            float *op = out + (p * OH + oh) * OW;
            /* stride 2 (ResNet's stem pool): windows inside the row, tap by tap, vectorized (a constant
             * stride gathers with shuffles); the edge windows below */
            int64_t lo, hi;
            stride2_interior(&k, W, OW, &lo, &hi);
            if (hi > lo) {
                const int64_t pw = k.pw; /* colmax[2 ow - pw + t] is tap t of window ow, inside the row */
#pragma omp simd
                for (int64_t ow = lo; ow < hi; ow++)
                    op[ow] = colmax[2 * ow - pw];
                for (int64_t t = 1; t < k.kw; t++) {
#pragma omp simd
                    for (int64_t ow = lo; ow < hi; ow++)
                        op[ow] = max_nan(op[ow], colmax[2 * ow - pw + t]);
                }
            }
            for (int64_t ow = 0; ow < OW; ow++) {
                if (ow == lo && hi > lo) {
                    ow = hi - 1;
                    continue;
                }
                int64_t w0 = ow * k.sw - k.pw, w1 = w0 + k.kw;
                if (w0 < 0) w0 = 0;
                if (w1 > W) w1 = W;
                float best = colmax[w0];
                for (int64_t iw = w0 + 1; iw < w1; iw++)
                    best = max_nan(best, colmax[iw]);
                op[ow] = best;
            }
        }
    }
}

/* dx[p, idx[p, o]] += dout[p, o]: the gradient goes to the element forward picked. */
static void maxpool_backward(float *dx,          /* (planes, H, W) */
                             const float *dout,  /* (planes, OH, OW) */
                             const int32_t *idx, /* (planes, OH, OW) */
                             int64_t planes, int64_t HW, int64_t OHW) {
#pragma omp parallel for schedule(static) if (planes * HW >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++)
        for (int64_t o = 0; o < OHW; o++)
            dx[p * HW + idx[p * OHW + o]] += dout[p * OHW + o];
}

/* ip: 0 kh, 1 kw, 2 sh, 3 sw, 4 ph, 5 pw. saved: the int32 argmax of every output. */
static void maxpool_fw(lt_node *nd, const lt_exec *ex) {
    const lt_tensor *x = nd->in[0], *y = nd->out;
    pool_win k = {nd->ip[0], nd->ip[1], nd->ip[2], nd->ip[3], nd->ip[4], nd->ip[5]};
    if (ex->mode == LT_MODE_EVAL && x->shape[3] <= POOL_ROW_MAX) {
        maxpool_values(y->data, x->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->shape[2],
                       y->shape[3], k);
        return;
    }
    maxpool_forward(y->data, (int32_t *)nd->saved, x->data, x->shape[0] * x->shape[1], x->shape[2],
                    x->shape[3], y->shape[2], y->shape[3], k);
}

static void maxpool_bw(lt_node *nd, const lt_exec *ex) {
    const lt_tensor *x = nd->in[0], *y = nd->out;
    if (!x->grad) return;
    maxpool_backward(x->grad, y->grad, (const int32_t *)nd->saved, x->shape[0] * x->shape[1],
                     x->shape[2] * x->shape[3], y->shape[2] * y->shape[3]);
}

static const lt_op maxpool_op = {"maxpool2d", maxpool_fw, maxpool_bw};

lt_tensor *lt_maxpool2d(lt_graph *g, lt_tensor *x, int kh, int kw, int stride_h, int stride_w, int pad_h,
                        int pad_w) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    char xs[96];
    lt_shape_str(x->shape, x->ndim, xs, sizeof xs);
    if (x->ndim != 4) return lt_graph_fail(g, LT_ERR_SHAPE, "maxpool2d: input %s must be (N, C, H, W)", xs);
    if (kh < 1 || kw < 1 || stride_h < 1 || stride_w < 1 || pad_h < 0 || pad_w < 0 || 2 * pad_h > kh ||
        2 * pad_w > kw)
        return lt_graph_fail(
            g, LT_ERR_ARG,
            "maxpool2d: kernel (%d, %d) and stride (%d, %d) must be >= 1 and padding (%d, %d) "
            "between 0 and half the kernel",
            kh, kw, stride_h, stride_w, pad_h, pad_w);
    int64_t oh = (x->shape[2] + 2 * pad_h - kh), ow = (x->shape[3] + 2 * pad_w - kw);
    if (oh < 0 || ow < 0)
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "maxpool2d: kernel (%d, %d) is larger than input %s padded by (%d, %d)", kh, kw,
                             xs, pad_h, pad_w);
    if ((x->shape[2] * x->shape[3]) > INT32_MAX)
        return lt_graph_fail(g, LT_ERR_SHAPE, "maxpool2d: input planes of %s exceed 2^31 elements", xs);
    int64_t shape[4] = {x->shape[0], x->shape[1], oh / stride_h + 1, ow / stride_w + 1};
    lt_tensor *out = lt_graph_new_tensor(g, shape, 4);
    lt_node *nd = lt_graph_add_node(g, &maxpool_op, out, &x, 1);
    if (!nd) return NULL;
    int64_t ip[6] = {kh, kw, stride_h, stride_w, pad_h, pad_w};
    memcpy(nd->ip, ip, sizeof ip);
    /* int32 argmax per output, for backward; inference (see maxpool_fw) skips it for wide enough rows */
    nd->saved_numel = lt_graph_mode(g) == LT_MODE_EVAL && x->shape[3] <= POOL_ROW_MAX ? 0 : out->numel;
    nd->bw_skip_in = 1u; /* backward needs only the saved argmax */
    nd->bw_skip_out = 1;
    return out;
}

/* ---- adaptive average pooling ---- */

/* PyTorch's bin i of n over a length-`len` axis: [floor(i*len/n), ceil((i+1)*len/n)). */
static int64_t bin_start(int64_t i, int64_t n, int64_t len) {
    return i * len / n;
}
static int64_t bin_end(int64_t i, int64_t n, int64_t len) {
    return ((i + 1) * len + n - 1) / n;
}

/* out[p, oh, ow] = mean of x[p] over bin oh of H times bin ow of W. */
static void adaptive_avgpool_forward(float *out,     /* (planes, OH, OW) */
                                     const float *x, /* (planes, H, W) */
                                     int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW) {
    if (H == OH && W == OW) { /* bins of one pixel (ResNet-50's 1 x 1 maps at a 28 x 28 input): 0 + x, / 1 */
        const int64_t n = planes * H * W;
#pragma omp parallel for simd schedule(static) if (n >= POOL_PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            out[i] = 0.0f + x[i];
        return;
    }
#pragma omp parallel for schedule(static) if (planes * H * W >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = bin_start(oh, OH, H), h1 = bin_end(oh, OH, H);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = bin_start(ow, OW, W), w1 = bin_end(ow, OW, W);
                float s = 0.0f;
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        s += xp[ih * W + iw];
                out[(p * OH + oh) * OW + ow] = s / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
}

/* dx[p, ih, iw] += dout[p, oh, ow] / bin size, for every bin containing (ih, iw) (bins may overlap). */
static void adaptive_avgpool_backward(float *dx,         /* (planes, H, W) */
                                      const float *dout, /* (planes, OH, OW) */
                                      int64_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW) {
    if (H == OH && W == OW) { /* bins of one pixel */
        const int64_t n = planes * H * W;
#pragma omp parallel for simd schedule(static) if (n >= POOL_PARALLEL_MIN)
        for (int64_t i = 0; i < n; i++)
            dx[i] += dout[i];
        return;
    }
#pragma omp parallel for schedule(static) if (planes * H * W >= POOL_PARALLEL_MIN)
    for (int64_t p = 0; p < planes; p++) {
        float *dxp = dx + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t h0 = bin_start(oh, OH, H), h1 = bin_end(oh, OH, H);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t w0 = bin_start(ow, OW, W), w1 = bin_end(ow, OW, W);
                float gv = dout[(p * OH + oh) * OW + ow] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t ih = h0; ih < h1; ih++)
                    for (int64_t iw = w0; iw < w1; iw++)
                        dxp[ih * W + iw] += gv;
            }
        }
    }
}

static void adaptive_avgpool_fw(lt_node *nd, const lt_exec *ex) {
    const lt_tensor *x = nd->in[0], *y = nd->out;
    adaptive_avgpool_forward(y->data, x->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                             y->shape[2], y->shape[3]);
}

static void adaptive_avgpool_bw(lt_node *nd, const lt_exec *ex) {
    const lt_tensor *x = nd->in[0], *y = nd->out;
    if (!x->grad) return;
    adaptive_avgpool_backward(x->grad, y->grad, x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                              y->shape[2], y->shape[3]);
}

static const lt_op adaptive_avgpool_op = {"adaptive_avgpool2d", adaptive_avgpool_fw, adaptive_avgpool_bw};

lt_tensor *lt_adaptive_avgpool2d(lt_graph *g, lt_tensor *x, int oh, int ow) {
    if (lt_graph_failed(g, &x, 1)) return NULL;
    char xs[96];
    if (x->ndim != 4)
        return lt_graph_fail(g, LT_ERR_SHAPE, "adaptive_avgpool2d: input %s must be (N, C, H, W)",
                             lt_shape_str(x->shape, x->ndim, xs, sizeof xs));
    if (oh < 1 || ow < 1)
        return lt_graph_fail(g, LT_ERR_ARG, "adaptive_avgpool2d: output size (%d, %d) must be >= 1", oh, ow);
    if (x->shape[2] < 1 || x->shape[3] < 1)
        return lt_graph_fail(g, LT_ERR_SHAPE, "adaptive_avgpool2d: input %s has an empty plane",
                             lt_shape_str(x->shape, x->ndim, xs, sizeof xs));
    int64_t shape[4] = {x->shape[0], x->shape[1], oh, ow};
    lt_tensor *out = lt_graph_new_tensor(g, shape, 4);
    lt_node *nd = lt_graph_add_node(g, &adaptive_avgpool_op, out, &x, 1);
    if (!nd) return NULL;
    nd->bw_skip_in = 1u; /* backward needs only the shapes */
    nd->bw_skip_out = 1;
    return out;
}
