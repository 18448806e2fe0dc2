/* conv2d.c - 2-D convolution as torch.nn.functional.conv2d: the graph builder, im2col + sgemm kernels, a
 * direct depthwise kernel, and the naive reference they are tested against.
 *
 * The GEMM view, per group g (Cg = C/groups input and Og = O/groups output channels, K = Cg*KH*KW rows):
 *     out_g (Og x cols) = w_g (Og x K) @ col (K x cols)           forward
 *     dw_g (Og x K)    += dout_g (Og x cols) @ col^T               weight gradient
 *     dcol (K x cols)   = w_g^T (K x Og) @ dout_g (Og x cols)      input gradient, then col2im into dx
 * where col row r = (c*KH + kh)*KW + kw holds the input pixel each output position sees through tap
 * (kh, kw) of channel c. cols covers one piece of one image (nb == 1; the GEMM then reads and writes the
 * NCHW tensors in place) or nb whole images side by side (their outputs are copied back to NCHW after),
 * which keeps GEMMs wide when the output is a few pixels (ResNet's 7x7 .. 1x1 stages).
 * A 1x1 stride-1 unpadded convolution with nb == 1 uses x itself as col, and writes dx by GEMM directly.
 *
 * Threads: the batch is cut into chunks of nb images. While there are at least as many chunks left as
 * threads, every thread takes its own chunk with its own col buffer and single-threaded sgemm calls (a BLAS
 * call inside an OpenMP region runs single-threaded), accumulating dw into a private copy that is summed
 * at the end. The remaining chunks (all of them for batch 1) are done by all threads together: im2col
 * split by rows, each GEMM split by rows or columns of its result, col2im split by channels. */
#include "conv2d.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

/* GEMMs narrower than this many columns run far below sgemm's peak; small images are batched up to it. */
#define CONV_COLS_TARGET 256
/* Most floats one thread's col buffer may hold; bigger images are cut into pieces of output rows. */
#define CONV_COL_BUDGET ((int64_t)1 << 22)

/* ---- sizes shared by the kernels ---- */

typedef struct {
    const lt_conv2d_dims *d;
    const lt_conv2d_plan *p;
    int64_t cg, og, k, p_out; /* channels per group, outputs per group, GEMM depth Cg*KH*KW, OH*OW */
    int64_t hw, ncol;         /* H*W; the most GEMM columns of one piece */
    int64_t slot;             /* floats of one thread's col + stage buffers */
    int64_t nchunks, npieces; /* image chunks, pieces per image (npieces > 1 only when nb == 1) */
    int pointwise;            /* 1x1, stride 1, no padding: col rows are input planes */
} conv_geom;

static int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

static int64_t round16(int64_t n) {
    return (n + 15) / 16 * 16;
}

static conv_geom conv_geometry(const lt_conv2d_dims *d, const lt_conv2d_plan *p) {
    conv_geom g;
    const lt_conv2d_cfg *c = &d->cfg;
    g.d = d;
    g.p = p;
    g.cg = d->c / c->groups;
    g.og = d->o / c->groups;
    g.k = g.cg * d->kh * d->kw;
    g.p_out = d->oh * d->ow;
    g.hw = d->h * d->w;
    g.pointwise =
        d->kh == 1 && d->kw == 1 && c->stride_h == 1 && c->stride_w == 1 && c->pad_h == 0 && c->pad_w == 0;
    g.ncol = p->nb > 1 ? p->nb * g.p_out : p->piece_rows * d->ow;
    int64_t col = g.pointwise && p->nb == 1 ? 0 : g.k * g.ncol;
    int64_t stage = p->nb > 1 ? g.og * g.ncol : 0;
    g.slot = round16(col) + round16(stage);
    g.nchunks = ceil_div(d->n, p->nb);
    g.npieces = p->nb > 1 ? 1 : ceil_div(d->oh, p->piece_rows);
    return g;
}

int64_t lt_conv2d_out_size(int64_t in, int64_t k, int stride, int pad, int dil) {
    if (stride < 1 || dil < 1 || pad < 0 || k < 1) return 0;
    int64_t span = in + 2 * (int64_t)pad - (int64_t)dil * (k - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

void lt_conv2d_plan_auto(const lt_conv2d_dims *d, int threads, lt_conv2d_plan *p) {
    int64_t cg = d->c / d->cfg.groups, p_out = d->oh * d->ow, k = cg * d->kh * d->kw;
    p->threads = threads < 1 ? 1 : threads;
    p->direct = cg == 1 && d->cfg.groups > 1;
    p->nb = 1;
    p->piece_rows = d->oh;
    if (p->direct) return;
    if (k * p_out > CONV_COL_BUDGET) {
        p->piece_rows = CONV_COL_BUDGET / (k * d->ow);
        if (p->piece_rows < 1) p->piece_rows = 1;
        return;
    }
    int64_t nb = ceil_div(CONV_COLS_TARGET, p_out), cap = CONV_COL_BUDGET / (k * p_out);
    if (nb > cap) nb = cap;
    if (nb > d->n) nb = d->n;
    if (nb < 1) nb = 1;
    /* with at least one chunk per thread, cut the batch into a multiple of the thread count */
    int64_t chunks = ceil_div(d->n, nb);
    if (chunks >= p->threads) {
        chunks = ceil_div(chunks, p->threads) * p->threads;
        nb = ceil_div(d->n, chunks);
    }
    p->nb = nb;
}

int64_t lt_conv2d_scratch_numel(const lt_conv2d_dims *d, const lt_conv2d_plan *p, int need_dw) {
    if (p->direct) return 0;
    conv_geom g = conv_geometry(d, p);
    int64_t n = p->threads * g.slot;
    if (need_dw) n += (int64_t)(p->threads - 1) * round16(d->o * g.k);
    return n;
}

/* ---- threading helpers ---- */

/* A barrier among the nth threads sharing a piece; nth == 1 means a thread working alone inside a larger
 * team, which must not wait for the others. */
#define CONV_SYNC(nth)                                                                                       \
    do {                                                                                                     \
        if ((nth) > 1) {                                                                                     \
            _Pragma("omp barrier")                                                                           \
        }                                                                                                    \
    } while (0)

/* This thread's part [*lo, *hi) of [0, n), in blocks of `align` so SIMD rows stay whole. */
static void split_range(int64_t n, int64_t align, int tid, int nth, int64_t *lo, int64_t *hi) {
    int64_t blocks = ceil_div(n, align);
    *lo = blocks * tid / nth * align;
    *hi = blocks * (tid + 1) / nth * align;
    if (*lo > n) *lo = n;
    if (*hi > n) *hi = n;
}

/* This thread's share of C (M x N) = A B + beta C, row-major with cblas's transposes: the larger of M and
 * N is split so that threads write disjoint blocks of C. */
static void gemm_part(int tid, int nth, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int64_t M,
                      int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc) {
    int64_t m0 = 0, m1 = M, n0 = 0, n1 = N;
    if (nth > 1) {
        if (M >= N)
            split_range(M, 16, tid, nth, &m0, &m1);
        else
            split_range(N, 16, tid, nth, &n0, &n1);
    }
    if (m1 <= m0 || n1 <= n0) return;
    const float *a = ta == CblasNoTrans ? A + m0 * lda : A + m0;
    const float *b = tb == CblasNoTrans ? B + n0 : B + n0 * ldb;
    cblas_sgemm(CblasRowMajor, ta, tb, (blasint)(m1 - m0), (blasint)(n1 - n0), (blasint)K, 1.0f, a,
                (blasint)lda, b, (blasint)ldb, beta, C + m0 * ldc + n0, (blasint)ldc);
}

/* ---- im2col / col2im ---- */

/* Output columns [*lo, *hi) whose input column off + ow*stride lies inside [0, w); the rest is padding. */
static void valid_cols(int64_t off, int64_t stride, int64_t w, int64_t ow, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : ceil_div(-off, stride);
    int64_t h = w - 1 - off >= 0 ? (w - 1 - off) / stride + 1 : 0;
    if (l > ow) l = ow;
    if (h > ow) h = ow;
    if (h < l) h = l;
    *lo = l;
    *hi = h;
}

/* col rows [r0, r1) for output rows [oh0, oh1) of one image's group: col[r, (oh - oh0)*OW + ow] is the input
 * pixel tap (kh, kw) of channel c sees from output (oh, ow), 0 in the padding. */
static void im2col(float *col,                    /* (K, ldcol) */
                   int64_t ldcol, const float *x, /* (Cg, H, W) */
                   const conv_geom *g, int64_t oh0, int64_t oh1, int64_t r0, int64_t r1) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t W = d->w, H = d->h, OW = d->ow, KHW = d->kh * d->kw;
    if (g->pointwise) {
        for (int64_t r = r0; r < r1; r++)
            memcpy(col + r * ldcol, x + r * g->hw + oh0 * W, (size_t)((oh1 - oh0) * OW) * sizeof(float));
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        int64_t ch = r / KHW, kh = r / d->kw % d->kh, kw = r % d->kw;
        const float *xc = x + ch * g->hw;
        int64_t off = kw * c->dil_w - c->pad_w, lo, hi;
        valid_cols(off, c->stride_w, W, OW, &lo, &hi);
        for (int64_t oh = oh0; oh < oh1; oh++) {
            float *dst = col + r * ldcol + (oh - oh0) * OW;
            int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, (size_t)OW * sizeof(float));
                continue;
            }
            const float *src = xc + ih * W + off + lo * c->stride_w;
            if (lo > 0) memset(dst, 0, (size_t)lo * sizeof(float));
            if (c->stride_w == 1)
                memcpy(dst + lo, src, (size_t)(hi - lo) * sizeof(float));
            else
                for (int64_t j = 0; j < hi - lo; j++)
                    dst[lo + j] = src[j * c->stride_w];
            if (hi < OW) memset(dst + hi, 0, (size_t)(OW - hi) * sizeof(float));
        }
    }
}

/* The adjoint of im2col for channels [c0, c1): dx[c, ih, iw] += every col entry copied from it. */
static void col2im(float *dx,        /* (Cg, H, W) */
                   const float *col, /* (K, ldcol) */
                   int64_t ldcol, const conv_geom *g, int64_t oh0, int64_t oh1, int64_t c0, int64_t c1) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t W = d->w, H = d->h, OW = d->ow, KHW = d->kh * d->kw;
    if (g->pointwise) {
        for (int64_t ch = c0; ch < c1; ch++) {
            float *dst = dx + ch * g->hw + oh0 * W;
            const float *src = col + ch * ldcol;
            for (int64_t j = 0; j < (oh1 - oh0) * OW; j++)
                dst[j] += src[j];
        }
        return;
    }
    for (int64_t ch = c0; ch < c1; ch++) {
        float *dxc = dx + ch * g->hw;
        for (int64_t r = ch * KHW; r < (ch + 1) * KHW; r++) {
            int64_t kh = r / d->kw % d->kh, kw = r % d->kw;
            int64_t off = kw * c->dil_w - c->pad_w, lo, hi;
            valid_cols(off, c->stride_w, W, OW, &lo, &hi);
            for (int64_t oh = oh0; oh < oh1; oh++) {
                int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                if (ih < 0 || ih >= H) continue;
                float *dst = dxc + ih * W + off + lo * c->stride_w;
                const float *src = col + r * ldcol + (oh - oh0) * OW + lo;
                if (c->stride_w == 1)
                    for (int64_t j = 0; j < hi - lo; j++)
                        dst[j] += src[j];
                else
                    for (int64_t j = 0; j < hi - lo; j++)
                        dst[j * c->stride_w] += src[j];
            }
        }
    }
}

/* ---- im2col + GEMM kernels ---- */

/* Forward of output rows [oh0, oh1) of images [n0, n0 + nbi), shared by nth threads. */
static void gemm_fw_piece(const conv_geom *g, float *out, const float *x, const float *w, const float *b,
                          int64_t n0, int64_t nbi, int64_t oh0, int64_t oh1, float *col, float *stage,
                          int tid, int nth) {
    const lt_conv2d_dims *d = g->d;
    const int64_t P = g->p_out, cols = nbi > 1 ? nbi * P : (oh1 - oh0) * d->ow;
    for (int64_t gr = 0; gr < d->cfg.groups; gr++) {
        const float *wg = w + gr * g->og * g->k; /* (Og, K) */
        const float *cm = col;                   /* (K, ldc) */
        int64_t ldc = cols;
        if (g->pointwise && nbi == 1) {
            cm = x + (n0 * d->c + gr * g->cg) * g->hw + oh0 * d->w;
            ldc = g->hw;
        } else {
            int64_t r0, r1;
            split_range(g->k, 1, tid, nth, &r0, &r1);
            for (int64_t i = 0; i < nbi; i++)
                im2col(col + i * P, cols, x + ((n0 + i) * d->c + gr * g->cg) * g->hw, g, oh0, oh1, r0, r1);
            CONV_SYNC(nth);
        }
        int64_t o0, o1;
        split_range(g->og, 1, tid, nth, &o0, &o1);
        if (nbi == 1) {
            float *y = out + (n0 * d->o + gr * g->og) * P + oh0 * d->ow; /* (Og, P) slice */
            gemm_part(tid, nth, CblasNoTrans, CblasNoTrans, g->og, cols, g->k, wg, g->k, cm, ldc, 0.0f, y, P);
            CONV_SYNC(nth);
            if (b)
                for (int64_t o = o0; o < o1; o++) {
                    float bv = b[gr * g->og + o], *yo = y + o * P;
                    for (int64_t j = 0; j < cols; j++)
                        yo[j] += bv;
                }
        } else {
            gemm_part(tid, nth, CblasNoTrans, CblasNoTrans, g->og, cols, g->k, wg, g->k, cm, ldc, 0.0f, stage,
                      cols);
            CONV_SYNC(nth);
            for (int64_t o = o0; o < o1; o++) {
                float bv = b ? b[gr * g->og + o] : 0.0f;
                for (int64_t i = 0; i < nbi; i++) {
                    float *yo = out + ((n0 + i) * d->o + gr * g->og + o) * P;
                    const float *s = stage + o * cols + i * P;
                    for (int64_t j = 0; j < P; j++)
                        yo[j] = s[j] + bv;
                }
            }
        }
        CONV_SYNC(nth); /* col and stage are reused by the next group */
    }
}

/* Backward of output rows [oh0, oh1) of images [n0, n0 + nbi), shared by nth threads; dw_acc is where this
 * piece's weight gradient goes (dw itself or a thread's private copy). */
static void gemm_bw_piece(const conv_geom *g, float *dx, float *dw_acc, const float *dout, const float *x,
                          const float *w, int64_t n0, int64_t nbi, int64_t oh0, int64_t oh1, float *col,
                          float *stage, int tid, int nth) {
    const lt_conv2d_dims *d = g->d;
    const int64_t P = g->p_out, cols = nbi > 1 ? nbi * P : (oh1 - oh0) * d->ow;
    const int in_place = g->pointwise && nbi == 1;
    for (int64_t gr = 0; gr < d->cfg.groups; gr++) {
        const float *wg = w ? w + gr * g->og * g->k : NULL; /* (Og, K) */
        const float *dy;                                    /* (Og, lddy) */
        int64_t lddy;
        int64_t o0, o1, r0, r1;
        split_range(g->og, 1, tid, nth, &o0, &o1);
        split_range(g->k, 1, tid, nth, &r0, &r1);
        if (nbi == 1) {
            dy = dout + (n0 * d->o + gr * g->og) * P + oh0 * d->ow;
            lddy = P;
        } else {
            for (int64_t o = o0; o < o1; o++)
                for (int64_t i = 0; i < nbi; i++)
                    memcpy(stage + o * cols + i * P, dout + ((n0 + i) * d->o + gr * g->og + o) * P,
                           (size_t)P * sizeof(float));
            dy = stage;
            lddy = cols;
        }
        if (dw_acc) {
            const float *cm = col;
            int64_t ldc = cols;
            if (in_place) {
                cm = x + (n0 * d->c + gr * g->cg) * g->hw + oh0 * d->w;
                ldc = g->hw;
            } else {
                for (int64_t i = 0; i < nbi; i++)
                    im2col(col + i * P, cols, x + ((n0 + i) * d->c + gr * g->cg) * g->hw, g, oh0, oh1, r0,
                           r1);
            }
            CONV_SYNC(nth);
            /* dw_g (Og x K) += dy (Og x cols) @ col^T */
            gemm_part(tid, nth, CblasNoTrans, CblasTrans, g->og, g->k, cols, dy, lddy, cm, ldc, 1.0f,
                      dw_acc + gr * g->og * g->k, g->k);
        }
        CONV_SYNC(nth); /* the gathered dy is complete; col is free to hold dcol */
        if (dx) {
            float *dxg = dx + (n0 * d->c + gr * g->cg) * g->hw; /* (nbi, C, H, W) from channel gr*Cg */
            if (in_place) {
                /* dx_g (Cg x cols) += w_g^T (Cg x Og) @ dy */
                gemm_part(tid, nth, CblasTrans, CblasNoTrans, g->cg, cols, g->og, wg, g->k, dy, lddy, 1.0f,
                          dxg + oh0 * d->w, g->hw);
            } else {
                gemm_part(tid, nth, CblasTrans, CblasNoTrans, g->k, cols, g->og, wg, g->k, dy, lddy, 0.0f,
                          col, cols);
                CONV_SYNC(nth);
                /* each thread adds whole channels of every image, so no two threads touch one dx plane */
                int64_t c0, c1;
                split_range(nbi * g->cg, 1, tid, nth, &c0, &c1);
                for (int64_t j = c0; j < c1; j++) {
                    int64_t i = j / g->cg, ch = j % g->cg;
                    col2im(dxg + i * d->c * g->hw, col + i * P, cols, g, oh0, oh1, ch, ch + 1);
                }
            }
        }
        CONV_SYNC(nth); /* col and stage are reused by the next group */
    }
}

/* ---- direct depthwise kernels (C/groups == 1) ---- */

/* out[n, o] = b[o] + sum_{kh,kw} w[o, 0, kh, kw] x[n, o / Og, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] */
static void direct_forward(float *out, const float *x, const float *w, const float *b, const conv_geom *g) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t P = g->p_out, OW = d->ow, W = d->w, planes = d->n * d->o;
#pragma omp parallel for num_threads(g->p->threads) schedule(static)
    for (int64_t pl = 0; pl < planes; pl++) {
        int64_t n = pl / d->o, o = pl % d->o;
        float *y = out + pl * P;                              /* (OH, OW) */
        const float *xc = x + (n * d->c + o / g->og) * g->hw; /* (H, W) */
        float bv = b ? b[o] : 0.0f;
        for (int64_t j = 0; j < P; j++)
            y[j] = bv;
        for (int64_t kh = 0; kh < d->kh; kh++)
            for (int64_t kw = 0; kw < d->kw; kw++) {
                float wv = w[(o * d->kh + kh) * d->kw + kw];
                int64_t off = kw * c->dil_w - c->pad_w, lo, hi;
                valid_cols(off, c->stride_w, W, OW, &lo, &hi);
                for (int64_t oh = 0; oh < d->oh; oh++) {
                    int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                    if (ih < 0 || ih >= d->h) continue;
                    const float *src = xc + ih * W + off + lo * c->stride_w;
                    float *dst = y + oh * OW + lo;
                    if (c->stride_w == 1)
                        for (int64_t j = 0; j < hi - lo; j++)
                            dst[j] += wv * src[j];
                    else
                        for (int64_t j = 0; j < hi - lo; j++)
                            dst[j] += wv * src[j * c->stride_w];
                }
            }
    }
}

static void direct_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                            const conv_geom *g) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t P = g->p_out, OW = d->ow, W = d->w;
#pragma omp parallel num_threads(g->p->threads)
    {
        /* dx[n, ch] += w[o] taps * dout[n, o] for the Og outputs o reading channel ch */
        if (dx) {
#pragma omp for schedule(static)
            for (int64_t pl = 0; pl < d->n * d->c; pl++) {
                int64_t n = pl / d->c, ch = pl % d->c;
                float *dxc = dx + pl * g->hw;
                for (int64_t o = ch * g->og; o < (ch + 1) * g->og; o++) {
                    const float *dy = dout + (n * d->o + o) * P;
                    for (int64_t kh = 0; kh < d->kh; kh++)
                        for (int64_t kw = 0; kw < d->kw; kw++) {
                            float wv = w[(o * d->kh + kh) * d->kw + kw];
                            int64_t off = kw * c->dil_w - c->pad_w, lo, hi;
                            valid_cols(off, c->stride_w, W, OW, &lo, &hi);
                            for (int64_t oh = 0; oh < d->oh; oh++) {
                                int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                                if (ih < 0 || ih >= d->h) continue;
                                float *dst = dxc + ih * W + off + lo * c->stride_w;
                                const float *src = dy + oh * OW + lo;
                                if (c->stride_w == 1)
                                    for (int64_t j = 0; j < hi - lo; j++)
                                        dst[j] += wv * src[j];
                                else
                                    for (int64_t j = 0; j < hi - lo; j++)
                                        dst[j * c->stride_w] += wv * src[j];
                            }
                        }
                }
            }
        }
        /* dw[o, kh, kw] += sum over n, oh, ow of dout[n, o, oh, ow] * x[n, o / Og, ih, iw] */
        if (dw) {
#pragma omp for schedule(static)
            for (int64_t o = 0; o < d->o; o++) {
                for (int64_t kh = 0; kh < d->kh; kh++)
                    for (int64_t kw = 0; kw < d->kw; kw++) {
                        int64_t off = kw * c->dil_w - c->pad_w, lo, hi;
                        valid_cols(off, c->stride_w, W, OW, &lo, &hi);
                        float s = 0.0f;
                        for (int64_t n = 0; n < d->n; n++) {
                            const float *dy = dout + (n * d->o + o) * P;
                            const float *xc = x + (n * d->c + o / g->og) * g->hw;
                            for (int64_t oh = 0; oh < d->oh; oh++) {
                                int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                                if (ih < 0 || ih >= d->h) continue;
                                const float *src = xc + ih * W + off + lo * c->stride_w;
                                const float *dyr = dy + oh * OW + lo;
                                if (c->stride_w == 1)
                                    for (int64_t j = 0; j < hi - lo; j++)
                                        s += dyr[j] * src[j];
                                else
                                    for (int64_t j = 0; j < hi - lo; j++)
                                        s += dyr[j] * src[j * c->stride_w];
                            }
                        }
                        dw[(o * d->kh + kh) * d->kw + kw] += s;
                    }
            }
        }
    }
}

/* ---- entry points ---- */

void lt_conv2d_forward(float *out, const float *x, const float *w, const float *b, const lt_conv2d_dims *d,
                       const lt_conv2d_plan *p, float *scratch) {
    conv_geom g = conv_geometry(d, p);
    if (p->direct) {
        direct_forward(out, x, w, b, &g);
        return;
    }
#pragma omp parallel num_threads(p->threads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        int64_t alone = nth > 1 ? g.nchunks / nth * nth : 0; /* chunks the threads take one each */
        float *col = scratch + tid * g.slot;
        float *stage = col + round16(g.pointwise && p->nb == 1 ? 0 : g.k * g.ncol);
        for (int64_t ch = tid; ch < alone; ch += nth) {
            int64_t n0 = ch * p->nb, nbi = d->n - n0 < p->nb ? d->n - n0 : p->nb;
            for (int64_t pc = 0; pc < g.npieces; pc++) {
                int64_t oh0 = pc * p->piece_rows,
                        oh1 = oh0 + p->piece_rows > d->oh ? d->oh : oh0 + p->piece_rows;
                gemm_fw_piece(&g, out, x, w, b, n0, nbi, oh0, nbi > 1 ? d->oh : oh1, col, stage, 0, 1);
            }
        }
        if (alone > 0) CONV_SYNC(nth); /* the shared chunks below use thread 0's buffers */
        col = scratch;
        stage = col + round16(g.pointwise && p->nb == 1 ? 0 : g.k * g.ncol);
        for (int64_t ch = alone; ch < g.nchunks; ch++) {
            int64_t n0 = ch * p->nb, nbi = d->n - n0 < p->nb ? d->n - n0 : p->nb;
            for (int64_t pc = 0; pc < g.npieces; pc++) {
                int64_t oh0 = pc * p->piece_rows,
                        oh1 = oh0 + p->piece_rows > d->oh ? d->oh : oh0 + p->piece_rows;
                gemm_fw_piece(&g, out, x, w, b, n0, nbi, oh0, nbi > 1 ? d->oh : oh1, col, stage, tid, nth);
            }
        }
    }
}

void lt_conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const lt_conv2d_dims *d, const lt_conv2d_plan *p, float *scratch) {
    conv_geom g = conv_geometry(d, p);
    const int64_t P = g.p_out, wn = d->o * g.k;
    if (db) {
#pragma omp parallel for num_threads(p->threads) schedule(static)
        for (int64_t o = 0; o < d->o; o++) {
            double s = 0.0;
            for (int64_t n = 0; n < d->n; n++) {
                const float *dy = dout + (n * d->o + o) * P;
                float ps = 0.0f;
                for (int64_t j = 0; j < P; j++)
                    ps += dy[j];
                s += ps;
            }
            db[o] += (float)s;
        }
    }
    if (!dx && !dw) return;
    if (p->direct) {
        direct_backward(dx, dw, dout, x, w, &g);
        return;
    }
    float *priv = scratch + p->threads * g.slot; /* (threads - 1, O*K) private dw copies */
#pragma omp parallel num_threads(p->threads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        int64_t alone = nth > 1 ? g.nchunks / nth * nth : 0;
        float *col = scratch + tid * g.slot;
        float *stage = col + round16(g.pointwise && p->nb == 1 ? 0 : g.k * g.ncol);
        float *mine = NULL; /* where this thread's chunks accumulate dw */
        if (dw) mine = tid == 0 ? dw : priv + (tid - 1) * round16(wn);
        if (dw && tid > 0 && alone > 0) memset(mine, 0, (size_t)wn * sizeof(float));
        for (int64_t ch = tid; ch < alone; ch += nth) {
            int64_t n0 = ch * p->nb, nbi = d->n - n0 < p->nb ? d->n - n0 : p->nb;
            for (int64_t pc = 0; pc < g.npieces; pc++) {
                int64_t oh0 = pc * p->piece_rows,
                        oh1 = oh0 + p->piece_rows > d->oh ? d->oh : oh0 + p->piece_rows;
                gemm_bw_piece(&g, dx, mine, dout, x, w, n0, nbi, oh0, nbi > 1 ? d->oh : oh1, col, stage, 0,
                              1);
            }
        }
        if (alone > 0) CONV_SYNC(nth);
        col = scratch;
        stage = col + round16(g.pointwise && p->nb == 1 ? 0 : g.k * g.ncol);
        for (int64_t ch = alone; ch < g.nchunks; ch++) {
            int64_t n0 = ch * p->nb, nbi = d->n - n0 < p->nb ? d->n - n0 : p->nb;
            for (int64_t pc = 0; pc < g.npieces; pc++) {
                int64_t oh0 = pc * p->piece_rows,
                        oh1 = oh0 + p->piece_rows > d->oh ? d->oh : oh0 + p->piece_rows;
                gemm_bw_piece(&g, dx, dw, dout, x, w, n0, nbi, oh0, nbi > 1 ? d->oh : oh1, col, stage, tid,
                              nth);
            }
        }
        if (dw && alone > 0) {
#pragma omp for schedule(static)
            for (int64_t j = 0; j < wn; j++) {
                float s = 0.0f;
                for (int t = 1; t < nth; t++)
                    s += priv[(t - 1) * round16(wn) + j];
                dw[j] += s;
            }
        }
    }
}

/* ---- naive reference ---- */

void lt_conv2d_forward_ref(float *out, const float *x, const float *w, const float *b,
                           const lt_conv2d_dims *d) {
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t cg = d->c / c->groups, og = d->o / c->groups;
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t o = 0; o < d->o; o++)
            for (int64_t oh = 0; oh < d->oh; oh++)
                for (int64_t ow = 0; ow < d->ow; ow++) {
                    double s = b ? b[o] : 0.0;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t kh = 0; kh < d->kh; kh++)
                            for (int64_t kw = 0; kw < d->kw; kw++) {
                                int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                                int64_t iw = ow * c->stride_w - c->pad_w + kw * c->dil_w;
                                if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                                int64_t ch = o / og * cg + ci;
                                s += (double)x[((n * d->c + ch) * d->h + ih) * d->w + iw] *
                                     w[((o * cg + ci) * d->kh + kh) * d->kw + kw];
                            }
                    out[((n * d->o + o) * d->oh + oh) * d->ow + ow] = (float)s;
                }
}

void lt_conv2d_backward_ref(float *dx, float *dw, float *db, const float *dout, const float *x,
                            const float *w, const lt_conv2d_dims *d) {
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t cg = d->c / c->groups, og = d->o / c->groups;
    for (int64_t n = 0; n < d->n; n++)
        for (int64_t o = 0; o < d->o; o++)
            for (int64_t oh = 0; oh < d->oh; oh++)
                for (int64_t ow = 0; ow < d->ow; ow++) {
                    float g = dout[((n * d->o + o) * d->oh + oh) * d->ow + ow];
                    if (db) db[o] += g;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t kh = 0; kh < d->kh; kh++)
                            for (int64_t kw = 0; kw < d->kw; kw++) {
                                int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                                int64_t iw = ow * c->stride_w - c->pad_w + kw * c->dil_w;
                                if (ih < 0 || ih >= d->h || iw < 0 || iw >= d->w) continue;
                                int64_t xi = ((n * d->c + o / og * cg + ci) * d->h + ih) * d->w + iw;
                                int64_t wi = ((o * cg + ci) * d->kh + kh) * d->kw + kw;
                                if (dx) dx[xi] += g * w[wi];
                                if (dw) dw[wi] += g * x[xi];
                            }
                }
}

/* ---- graph op ---- */

/* ip: 0..6 the cfg (stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups), 7 nb, 8 piece_rows,
 * 9 threads, 10 direct. */
static void conv_node_dims(const lt_node *nd, lt_conv2d_dims *d, lt_conv2d_plan *p) {
    const lt_tensor *x = nd->in[0], *w = nd->in[1];
    d->n = x->shape[0];
    d->c = x->shape[1];
    d->h = x->shape[2];
    d->w = x->shape[3];
    d->o = w->shape[0];
    d->kh = w->shape[2];
    d->kw = w->shape[3];
    d->oh = nd->out->shape[2];
    d->ow = nd->out->shape[3];
    d->cfg = (lt_conv2d_cfg){(int)nd->ip[0], (int)nd->ip[1], (int)nd->ip[2], (int)nd->ip[3],
                             (int)nd->ip[4], (int)nd->ip[5], (int)nd->ip[6]};
    p->nb = nd->ip[7];
    p->piece_rows = nd->ip[8];
    p->threads = (int)nd->ip[9];
    p->direct = (int)nd->ip[10];
}

static void conv_fw(lt_node *nd, const lt_exec *ex) {
    lt_conv2d_dims d;
    lt_conv2d_plan p;
    conv_node_dims(nd, &d, &p);
    lt_tensor *b = nd->in[2];
    lt_conv2d_forward(nd->out->data, nd->in[0]->data, nd->in[1]->data, b ? b->data : NULL, &d, &p,
                      ex->scratch);
}

static void conv_bw(lt_node *nd, const lt_exec *ex) {
    lt_conv2d_dims d;
    lt_conv2d_plan p;
    conv_node_dims(nd, &d, &p);
    lt_tensor *x = nd->in[0], *w = nd->in[1], *b = nd->in[2];
    lt_conv2d_backward(x->grad, w->grad, b ? b->grad : NULL, nd->out->grad, x->data, w->data, &d, &p,
                       ex->scratch);
}

static const lt_op conv_op = {"conv2d", conv_fw, conv_bw};

lt_tensor *lt_conv2d(lt_graph *g, lt_tensor *x, lt_tensor *w, lt_tensor *b, lt_conv2d_cfg cfg) {
    lt_tensor *req[2] = {x, w};
    if (lt_graph_failed(g, req, 2)) return NULL;
    char xs[96], ws[96], bs[96];
    lt_shape_str(x->shape, x->ndim, xs, sizeof xs);
    lt_shape_str(w->shape, w->ndim, ws, sizeof ws);
    if (x->ndim != 4 || w->ndim != 4)
        return lt_graph_fail(g, LT_ERR_SHAPE, "conv2d: input %s and weight %s must both be 4-D", xs, ws);
    if (cfg.groups < 1 || cfg.stride_h < 1 || cfg.stride_w < 1 || cfg.dil_h < 1 || cfg.dil_w < 1 ||
        cfg.pad_h < 0 || cfg.pad_w < 0)
        return lt_graph_fail(
            g, LT_ERR_ARG,
            "conv2d: stride (%d, %d), dilation (%d, %d) and groups %d must be >= 1 and padding "
            "(%d, %d) >= 0",
            cfg.stride_h, cfg.stride_w, cfg.dil_h, cfg.dil_w, cfg.groups, cfg.pad_h, cfg.pad_w);
    int64_t C = x->shape[1], O = w->shape[0];
    if (C % cfg.groups || O % cfg.groups || w->shape[1] * cfg.groups != C)
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "conv2d: input %s and weight %s do not fit groups=%d (need C and O divisible by "
                             "groups and weight dim 1 = C/groups)",
                             xs, ws, cfg.groups);
    if (b && (b->ndim != 1 || b->shape[0] != O))
        return lt_graph_fail(g, LT_ERR_SHAPE, "conv2d: bias %s must be (%lld) for weight %s",
                             lt_shape_str(b->shape, b->ndim, bs, sizeof bs), (long long)O, ws);
    int64_t oh = lt_conv2d_out_size(x->shape[2], w->shape[2], cfg.stride_h, cfg.pad_h, cfg.dil_h);
    int64_t ow = lt_conv2d_out_size(x->shape[3], w->shape[3], cfg.stride_w, cfg.pad_w, cfg.dil_w);
    if (oh < 1 || ow < 1)
        return lt_graph_fail(g, LT_ERR_SHAPE,
                             "conv2d: kernel of weight %s (dilation %d, %d) does not fit input %s padded by "
                             "(%d, %d)",
                             ws, cfg.dil_h, cfg.dil_w, xs, cfg.pad_h, cfg.pad_w);
    int64_t shape[4] = {x->shape[0], O, oh, ow};
    lt_tensor *out = lt_graph_new_tensor(g, shape, 4);
    lt_tensor *ins[3] = {x, w, b};
    lt_node *nd = lt_graph_add_node(g, &conv_op, out, ins, 3);
    if (!nd) return NULL;
    lt_conv2d_dims d = {x->shape[0], C, x->shape[2], x->shape[3], O, w->shape[2], w->shape[3], oh, ow, cfg};
    lt_conv2d_plan p;
    lt_conv2d_plan_auto(&d, omp_get_max_threads(), &p);
    int64_t ip[11] = {cfg.stride_h, cfg.stride_w, cfg.pad_h,    cfg.pad_w, cfg.dil_h, cfg.dil_w,
                      cfg.groups,   p.nb,         p.piece_rows, p.threads, p.direct};
    memcpy(nd->ip, ip, sizeof ip);
    int train = lt_graph_mode(g) == LT_MODE_TRAIN;
    nd->scratch_numel = lt_conv2d_scratch_numel(&d, &p, train && w->requires_grad);
    /* backward reads x only for dw and w only for dx; it never reads b or the output */
    nd->bw_skip_in = 1u << 2;
    if (!w->requires_grad) nd->bw_skip_in |= 1u << 0;
    if (!x->requires_grad) nd->bw_skip_in |= 1u << 1;
    nd->bw_skip_out = 1;
    return out;
}
