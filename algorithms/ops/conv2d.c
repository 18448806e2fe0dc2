/* conv2d.c - 2-D convolution as torch.nn.functional.conv2d: the graph builder, im2col + sgemm kernels, a
 * direct depthwise kernel, and the naive reference they are tested against.
 *
 * The GEMM view, per group g (Cg = C/groups input and Og = O/groups output channels, K = Cg*KH*KW rows):
 *     out_g (Og x cols) = w_g (Og x K) @ col (K x cols)           forward
 *     dw_g (Og x K)    += dout_g (Og x cols) @ col^T               weight gradient
 *     dcol (K x cols)   = w_g^T (K x Og) @ dout_g (Og x cols)      input gradient, then col2im into dx
 * where col row r = (c*KH + kh)*KW + kw holds the input pixel each output position sees through tap
 * (kh, kw) of channel c. The columns of one GEMM are a unit: output rows of one image (nb == 1; the GEMM
 * then reads and writes the NCHW tensors in place) or nb whole images side by side (copied between NCHW
 * and the GEMM's layout), which keeps GEMMs wide when the output is a few pixels (ResNet's 7x7 .. 1x1
 * stages). A 1x1 stride-1 unpadded convolution with one image per unit uses x itself as col and writes dx
 * by GEMM directly.
 *
 * Threads (a BLAS call inside an OpenMP region runs single-threaded; each thread has its own buffers and
 * no kernel ever waits at a barrier, which matters on a machine shared with other processes):
 *   forward  - threads take whole units while at least one per thread is left; the last units are shared
 *              by splitting their output channels, each thread building the (cheap) col matrix itself.
 *   backward - each thread owns a range of input channels (rows of col): it builds only those rows of col,
 *              and writes only those columns of dw and those channels of dx, so nothing is reduced.
 *
 * Small images: kernel taps that only ever see padding (all but the centre of a 3x3 kernel on a 1x1 image)
 * are cropped away before the GEMM, and im2col/col2im of rows shorter than 16 pixels go through a table of
 * input offsets per tap (permutes inside AVX-512 registers when a plane has at most 64 pixels).
 * Depthwise convolutions (C/groups == 1) skip the GEMM: direct loops over each plane. */
#include "conv2d.h"

#include <cblas.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <math.h>
#include <omp.h>
#include <string.h>

/* Forward GEMMs narrower than this many columns run below sgemm's peak; small images are batched up to
 * it (while keeping a unit per thread). Backward has no balancing to keep, so it batches wider. */
#define CONV_COLS_FW 256
#define CONV_COLS_BW 1024
/* A 1x1 stride-1 convolution reads and writes the tensors in place with one image per unit; batching costs
 * a copy each way and measured slower once an image has 32+ pixels. Below that it batches to this width. */
#define CONV_COLS_POINTWISE 128
/* Convolutions of fewer FLOPs than this run on one thread: a parallel region costs several microseconds
 * (and far more when another process holds the other core). */
#define CONV_PARALLEL_MIN_FLOPS 2e6
/* Forward gives each thread its own units (rather than sharing units by output channel) when they still
 * have this many columns; measured on ResNet-50's 4x4 and 2x2 stages, with 1x1 images staying shared. */
#define CONV_COLS_MIN 32
/* A batch smaller than the thread count is cut into pieces of output rows, one per thread, when a piece
 * keeps this many columns; otherwise the threads share whole images by output channel, each building the
 * full col matrix. For im2col convolutions the duplicated im2col costs more than narrower GEMMs: on
 * ResNet-50's 3x3 layers at 14x14, batch 1, 2 threads, pieces of 98 columns measured 139 -> 155-163 GF/s,
 * while pieces of 21-28 columns (7x7) lost 25%. In-place 1x1 convolutions build nothing and keep 256. */
#define CONV_COLS_PIECE 64
/* Most floats one thread's col buffer may hold; bigger images are cut into pieces of output rows. */
#define CONV_COL_BUDGET ((int64_t)1 << 22)

/* ---- sizes shared by the kernels ---- */

typedef struct {
    const lt_conv2d_dims *d;
    int64_t cg, og, k, khw; /* channels per group, outputs per group, GEMM depth Cg*KH*KW, KH*KW */
    int64_t p_out, hw;      /* OH*OW, H*W */
    int pointwise;          /* 1x1, stride 1, no padding: col rows are input planes */
    int threads;            /* the plan's thread count */
} conv_geom;

/* How one pass cuts the batch into units. */
typedef struct {
    int64_t nb, rows; /* images per unit; output rows per unit when nb == 1 */
    int64_t ncol;     /* most GEMM columns of one unit */
    int64_t npieces, units;
} conv_cut;

static int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

static int64_t round16(int64_t n) {
    return (n + 15) / 16 * 16;
}

static int64_t min64(int64_t a, int64_t b) {
    return a < b ? a : b;
}

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

/* dst[0..n) = src[0..n). The copies of tiny images (a 2x2 plane is 16 bytes) are too short for a
 * memcpy call to pay off. */
static inline void copy_floats(float *dst, const float *src, int64_t n) {
#if defined(__AVX512F__)
    if (n <= 64) {
        for (int64_t j = 0; j < n; j += 16) {
            __mmask16 m = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
            _mm512_mask_storeu_ps(dst + j, m, _mm512_maskz_loadu_ps(m, src + j));
        }
        return;
    }
#endif
    memcpy(dst, src, (size_t)n * sizeof(float));
}

/* acc[j % 16] += a[j] b[j]: 16 partial sums, so the dot product vectorizes (an OpenMP simd reduction
 * measured slow on short rows, as it sums its lanes through memory at every call). */
static inline void dot_acc(float acc[16], const float *a, const float *b, int64_t n) {
    int64_t j = 0;
    for (; j + 16 <= n; j += 16)
        for (int l = 0; l < 16; l++)
            acc[l] += a[j + l] * b[j + l];
    for (int l = 0; j < n; j++, l++)
        acc[l] += a[j] * b[j];
}

static conv_geom conv_geometry(const lt_conv2d_dims *d, int threads) {
    conv_geom g;
    const lt_conv2d_cfg *c = &d->cfg;
    g.d = d;
    g.cg = d->c / c->groups;
    g.og = d->o / c->groups;
    g.khw = d->kh * d->kw;
    g.k = g.cg * g.khw;
    g.p_out = d->oh * d->ow;
    g.hw = d->h * d->w;
    g.pointwise =
        d->kh == 1 && d->kw == 1 && c->stride_h == 1 && c->stride_w == 1 && c->pad_h == 0 && c->pad_w == 0;
    g.threads = threads;
    return g;
}

static conv_cut conv_cutting(const lt_conv2d_dims *d, int64_t nb, int64_t rows) {
    conv_cut c;
    c.nb = nb;
    c.rows = nb > 1 ? d->oh : rows;
    c.ncol = nb > 1 ? nb * d->oh * d->ow : c.rows * d->ow;
    c.npieces = ceil_div(d->oh, c.rows);
    c.units = ceil_div(d->n, nb) * c.npieces;
    return c;
}

/* Images [*n0, *n0 + *nbi) and output rows [*oh0, *oh1) of unit u. */
static void unit_bounds(const conv_cut *c, const lt_conv2d_dims *d, int64_t u, int64_t *n0, int64_t *nbi,
                        int64_t *oh0, int64_t *oh1) {
    int64_t chunk = u / c->npieces, piece = u % c->npieces;
    *n0 = chunk * c->nb;
    *nbi = min64(c->nb, d->n - *n0);
    *oh0 = piece * c->rows;
    *oh1 = min64(d->oh, *oh0 + c->rows);
}

/* The most col rows one of nth backward threads handles at once: a share of whole channels, within one
 * group. */
static int64_t bw_rows(const conv_geom *g, int nth) {
    return min64(g->k, ceil_div(g->d->c, nth) * g->khw);
}

/* Floats of one forward thread's buffers: col (K x ncol) unless in place, stage (Og x ncol) when nb > 1. */
static int64_t fw_slot(const conv_geom *g, const conv_cut *c) {
    int64_t col = g->pointwise && c->nb == 1 ? 0 : round16(g->k * c->ncol);
    return col + (c->nb > 1 ? round16(g->og * c->ncol) : 0);
}

/* Floats of one of nth backward threads' buffers: its col rows, and all of dout_g when nb > 1. */
static int64_t bw_col_floats(const conv_geom *g, const conv_cut *c, int nth) {
    return g->pointwise && c->nb == 1 ? 0 : round16(bw_rows(g, nth) * c->ncol);
}
static int64_t bw_slot(const conv_geom *g, const conv_cut *c, int nth) {
    return bw_col_floats(g, c, nth) + (c->nb > 1 ? round16(g->og * c->ncol) : 0);
}

int64_t lt_conv2d_out_size(int64_t in, int64_t k, int stride, int pad, int dil) {
    if (stride < 1 || dil < 1 || pad < 0 || k < 1) return 0;
    int64_t span = in + 2 * (int64_t)pad - (int64_t)dil * (k - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

/* Images per unit for GEMMs about `target` columns wide. */
static int64_t want_nb(const conv_geom *g, int64_t target) {
    if (g->pointwise) return g->p_out >= 32 ? 1 : ceil_div(CONV_COLS_POINTWISE, g->p_out);
    return ceil_div(target, g->p_out);
}

void lt_conv2d_plan_auto(const lt_conv2d_dims *d, int threads, lt_conv2d_plan *p) {
    conv_geom g = conv_geometry(d, threads < 1 ? 1 : threads);
    const int64_t P = g.p_out;
    const int T = 2.0 * (double)(d->n * d->o * P * g.k) < CONV_PARALLEL_MIN_FLOPS ? 1 : g.threads;
    p->threads = T;
    p->direct = g.cg == 1 && d->cfg.groups > 1;
    p->nb = p->nb_bw = 1;
    p->piece_rows = p->piece_rows_bw = d->oh;
    if (p->direct) return;
    /* forward: batch small images up to CONV_COLS_FW columns, then cut the batch into a multiple of the
     * thread count; a batch smaller than the thread count is cut into pieces of rows if they stay wide */
    if (g.k * P > CONV_COL_BUDGET) {
        p->piece_rows = max64(1, CONV_COL_BUDGET / (g.k * d->ow));
    } else {
        int64_t nb = min64(min64(want_nb(&g, CONV_COLS_FW), d->n), max64(1, CONV_COL_BUDGET / (g.k * P)));
        int64_t chunks = ceil_div(d->n, nb);
        if (chunks < T && ceil_div(d->n, T) * P >= CONV_COLS_MIN) {
            nb = ceil_div(d->n, T); /* a unit per thread beats sharing wider units by output channel */
            chunks = ceil_div(d->n, nb);
        }
        if (chunks >= T) {
            chunks = ceil_div(chunks, T) * T;
            nb = ceil_div(d->n, chunks);
        } else if (nb == 1 && P / ceil_div(T, d->n) >= (g.pointwise ? CONV_COLS_FW : CONV_COLS_PIECE)) {
            p->piece_rows = ceil_div(d->oh, ceil_div(T, d->n));
        }
        p->nb = nb;
    }
    /* backward: each thread handles a share of the rows of col, so units only need to be wide */
    int64_t rows = bw_rows(&g, T);
    if (rows * P > CONV_COL_BUDGET) {
        p->piece_rows_bw = max64(1, CONV_COL_BUDGET / (rows * d->ow));
    } else {
        p->nb_bw = min64(min64(want_nb(&g, CONV_COLS_BW), d->n), max64(1, CONV_COL_BUDGET / (rows * P)));
    }
}

/* ---- im2col / col2im ---- */

/* This thread's part [*lo, *hi) of [0, n), in blocks of `align`. */
static void split_range(int64_t n, int64_t align, int tid, int nth, int64_t *lo, int64_t *hi) {
    int64_t blocks = ceil_div(n, align);
    *lo = min64(n, blocks * tid / nth * align);
    *hi = min64(n, blocks * (tid + 1) / nth * align);
}

/* Output columns [*lo, *hi) whose input column off + ow*stride lies inside [0, w); the rest is padding. */
static void valid_cols(int64_t off, int64_t stride, int64_t w, int64_t ow, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : ceil_div(-off, stride);
    int64_t h = w - 1 - off >= 0 ? (w - 1 - off) / stride + 1 : 0;
    l = min64(l, ow);
    h = min64(h, ow);
    *lo = l;
    *hi = max64(h, l);
}

/* Small outputs (ResNet's 7x7 .. 1x1 stages) make rows of a few pixels, where a memcpy per row costs more
 * than the copy: there im2col gathers through a table of the input offset each (tap, output position)
 * reads, built once per unit. Padding entries read offset 0 and mask the value's bits to +0.0, so the
 * gather has no branch (a multiply by 0 would turn an inf at offset 0 into NaN). */
#define CONV_MAP_MAX 4096

typedef struct {
    int32_t off[CONV_MAP_MAX];   /* ih*W + iw, 0 in the padding */
    uint32_t keep[CONV_MAP_MAX]; /* all ones, 0 in the padding */
} conv_map;

static int use_map(const conv_geom *g, int64_t npos) {
    return g->d->ow < 16 && g->khw * npos <= CONV_MAP_MAX;
}

/* Entry t*npos + (oh - oh0)*OW + ow: what tap t reads for output (oh, ow). */
static void tap_map(conv_map *map, const conv_geom *g, int64_t oh0, int64_t oh1) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t npos = (oh1 - oh0) * d->ow;
    for (int64_t t = 0; t < g->khw; t++) {
        int64_t kh = t / d->kw, kw = t % d->kw;
        for (int64_t oh = oh0; oh < oh1; oh++)
            for (int64_t ow = 0; ow < d->ow; ow++) {
                int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                int64_t iw = ow * c->stride_w - c->pad_w + kw * c->dil_w;
                int ok = ih >= 0 && ih < d->h && iw >= 0 && iw < d->w;
                int64_t e = t * npos + (oh - oh0) * d->ow + ow;
                map->off[e] = ok ? (int32_t)(ih * d->w + iw) : 0;
                map->keep[e] = ok ? 0xffffffffu : 0u;
            }
    }
}

/* src[off] with its bits masked by keep (so +0.0 where keep is 0). */
static inline float masked_load(const float *src, int32_t off, uint32_t keep) {
    uint32_t u;
    memcpy(&u, src + off, sizeof u);
    u &= keep;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#if defined(__AVX512F__)
/* Planes and output pieces of at most 64 pixels (ResNet's 7x7 and smaller stages) fit in four AVX-512
 * registers, where a table lookup is two permutes and a blend per 16 values: im2col permutes each input
 * plane into its taps' rows, and col2im permutes each tap's row back into plane order (the inverse table)
 * and accumulates there. Gathers and scatters measured no faster than scalar code on AMD Zen 4. */
#define CONV_REG_TAPS 49

typedef struct {
    __m512i idx[CONV_REG_TAPS][4];     /* per tap and 16 lanes of the result: the index read, < 64 */
    __mmask16 upper[CONV_REG_TAPS][4]; /* lanes whose index is >= 32 */
    __mmask16 keep[CONV_REG_TAPS][4];  /* lanes that are not padding */
} conv_perm;

static int use_regs(const conv_geom *g, int64_t npos) {
    return g->hw <= 64 && npos <= 64 && g->khw <= CONV_REG_TAPS;
}

/* The lookup table of map (inverse = 0: result lane j of tap t reads plane offset off[t][j]), or of its
 * inverse (inverse = 1: result lane q, a plane offset, reads the j with off[t][j] == q). */
static void perm_build(conv_perm *pm, const conv_map *map, const conv_geom *g, int64_t npos, int inverse) {
    const int64_t n = inverse ? g->hw : npos;
    for (int64_t t = 0; t < g->khw; t++)
        for (int64_t b = 0; b < 4; b++) {
            int32_t idx[16] = {0};
            uint32_t up = 0, keep = 0;
            for (int64_t l = 0; l < 16 && b * 16 + l < n; l++) {
                int64_t want = b * 16 + l, found = -1;
                if (!inverse) {
                    if (map->keep[t * npos + want]) found = map->off[t * npos + want];
                } else {
                    for (int64_t j = 0; j < npos && found < 0; j++)
                        if (map->keep[t * npos + j] && map->off[t * npos + j] == want) found = j;
                }
                if (found < 0) continue;
                idx[l] = (int32_t)found;
                keep |= 1u << l;
                if (found >= 32) up |= 1u << l;
            }
            pm->idx[t][b] = _mm512_loadu_si512(idx);
            pm->upper[t][b] = (__mmask16)up;
            pm->keep[t][b] = (__mmask16)keep;
        }
}

/* Loads n <= 64 floats into r[0..3] (zeros past n; no memory past n is read). */
static inline void regs_load(__m512 r[4], const float *p, int64_t n) {
    for (int64_t b = 0; b < 4; b++) {
        int64_t m = n - 16 * b;
        __mmask16 lanes = m >= 16 ? (__mmask16)0xffff : m > 0 ? (__mmask16)((1u << m) - 1) : 0;
        r[b] = _mm512_maskz_loadu_ps(lanes, p + 16 * b);
    }
}

static inline __m512 regs_lookup(const __m512 r[4], __m512i idx, __mmask16 upper, __mmask16 keep) {
    __m512 lo = _mm512_permutex2var_ps(r[0], idx, r[1]), hi = _mm512_permutex2var_ps(r[2], idx, r[3]);
    return _mm512_maskz_mov_ps(keep, _mm512_mask_blend_ps(upper, lo, hi));
}

static inline void regs_store(float *p, __m512 v, int64_t b, int64_t n) {
    int64_t m = n - 16 * b;
    if (m > 0) _mm512_mask_storeu_ps(p + 16 * b, m >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1), v);
}

static void im2col_regs(float *col, int64_t ldcol, const float *x, int64_t xstride, int64_t nbi,
                        const conv_geom *g, const conv_map *map, int64_t npos, int64_t r0, int64_t r1) {
    conv_perm pm;
    perm_build(&pm, map, g, npos, 0);
    for (int64_t ch = r0 / g->khw; ch * g->khw < r1; ch++) {
        int64_t t0 = max64(r0 - ch * g->khw, 0), t1 = min64(r1 - ch * g->khw, g->khw);
        for (int64_t i = 0; i < nbi; i++) {
            __m512 plane[4];
            regs_load(plane, x + i * xstride + ch * g->hw, g->hw);
            for (int64_t t = t0; t < t1; t++) {
                float *dst = col + (ch * g->khw + t - r0) * ldcol + i * npos;
                for (int64_t b = 0; b * 16 < npos; b++)
                    regs_store(dst, regs_lookup(plane, pm.idx[t][b], pm.upper[t][b], pm.keep[t][b]), b, npos);
            }
        }
    }
}

static void col2im_regs(float *dx, int64_t xstride, int64_t nbi, const float *col, int64_t ldcol,
                        const conv_geom *g, const conv_map *map, int64_t npos, int64_t c0, int64_t c1) {
    conv_perm pm;
    perm_build(&pm, map, g, npos, 1);
    for (int64_t ch = c0; ch < c1; ch++)
        for (int64_t i = 0; i < nbi; i++) {
            float *plane = dx + i * xstride + ch * g->hw;
            __m512 acc[4], row[4];
            regs_load(acc, plane, g->hw);
            for (int64_t t = 0; t < g->khw; t++) {
                regs_load(row, col + ((ch - c0) * g->khw + t) * ldcol + i * npos, npos);
                for (int64_t b = 0; b * 16 < g->hw; b++)
                    acc[b] =
                        _mm512_add_ps(acc[b], regs_lookup(row, pm.idx[t][b], pm.upper[t][b], pm.keep[t][b]));
            }
            for (int64_t b = 0; b * 16 < g->hw; b++)
                regs_store(plane, acc[b], b, g->hw);
        }
}
#endif

/* Rows [r0, r1) of col for output rows [oh0, oh1) of nbi images: row r, stored at col + (r - r0)*ldcol,
 * holds at i*npos + (oh - oh0)*OW + ow the pixel of image i that tap (kh, kw) of channel c sees from
 * output (oh, ow), 0 in the padding (npos = (oh1 - oh0)*OW, r = (c*KH + kh)*KW + kw). */
static void im2col(float *col, /* (r1 - r0, ldcol) */
                   int64_t ldcol,
                   const float *x, /* (nbi, xstride): image i's Cg channels of this group at x + i*xstride */
                   int64_t xstride, int64_t nbi, const conv_geom *g, int64_t oh0, int64_t oh1, int64_t r0,
                   int64_t r1) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t W = d->w, H = d->h, OW = d->ow, npos = (oh1 - oh0) * OW;
    if (g->pointwise) {
        for (int64_t r = r0; r < r1; r++)
            for (int64_t i = 0; i < nbi; i++)
                copy_floats(col + (r - r0) * ldcol + i * npos, x + i * xstride + r * g->hw + oh0 * W, npos);
        return;
    }
    if (use_map(g, npos)) {
        conv_map map;
        tap_map(&map, g, oh0, oh1);
#if defined(__AVX512F__)
        if (use_regs(g, npos)) {
            im2col_regs(col, ldcol, x, xstride, nbi, g, &map, npos, r0, r1);
            return;
        }
#endif
        for (int64_t r = r0; r < r1; r++) {
            const int32_t *off = map.off + r % g->khw * npos;
            const uint32_t *keep = map.keep + r % g->khw * npos;
            for (int64_t i = 0; i < nbi; i++) {
                const float *src = x + i * xstride + r / g->khw * g->hw;
                float *dst = col + (r - r0) * ldcol + i * npos;
                for (int64_t j = 0; j < npos; j++)
                    dst[j] = masked_load(src, off[j], keep[j]);
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++) {
        int64_t ch = r / g->khw, kh = r / d->kw % d->kh, kw = r % d->kw;
        int64_t off = kw * c->dil_w - c->pad_w, lo, hi;
        valid_cols(off, c->stride_w, W, OW, &lo, &hi);
        for (int64_t i = 0; i < nbi; i++) {
            const float *xc = x + i * xstride + ch * g->hw;
            for (int64_t oh = oh0; oh < oh1; oh++) {
                float *dst = col + (r - r0) * ldcol + i * npos + (oh - oh0) * OW;
                int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                if (ih < 0 || ih >= H) {
                    memset(dst, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                const float *src = xc + ih * W + off + lo * c->stride_w;
                if (lo > 0) memset(dst, 0, (size_t)lo * sizeof(float));
                if (c->stride_w == 1) {
                    memcpy(dst + lo, src, (size_t)(hi - lo) * sizeof(float));
                } else if (c->stride_w == 2) {
                    /* a constant stride lets the compiler gather with shuffles (the stem's 7x7/2) */
#pragma omp simd
                    for (int64_t j = 0; j < hi - lo; j++)
                        dst[lo + j] = src[2 * j];
                } else {
                    for (int64_t j = 0; j < hi - lo; j++)
                        dst[lo + j] = src[j * c->stride_w];
                }
                if (hi < OW) memset(dst + hi, 0, (size_t)(OW - hi) * sizeof(float));
            }
        }
    }
}

/* The adjoint of im2col for channels [c0, c1), whose rows start at col: dx[i, c, ih, iw] += every col
 * entry copied from it. */
static void col2im(float *dx,                                      /* (nbi, xstride) as im2col's x */
                   int64_t xstride, int64_t nbi, const float *col, /* ((c1 - c0) * KH*KW, ldcol) */
                   int64_t ldcol, const conv_geom *g, int64_t oh0, int64_t oh1, int64_t c0, int64_t c1) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t W = d->w, H = d->h, OW = d->ow, npos = (oh1 - oh0) * OW;
    if (g->pointwise) {
        for (int64_t ch = c0; ch < c1; ch++)
            for (int64_t i = 0; i < nbi; i++) {
                float *dst = dx + i * xstride + ch * g->hw + oh0 * W;
                const float *src = col + (ch - c0) * ldcol + i * npos;
#pragma omp simd
                for (int64_t j = 0; j < npos; j++)
                    dst[j] += src[j];
            }
        return;
    }
    if (use_map(g, npos)) {
        conv_map map;
        tap_map(&map, g, oh0, oh1);
#if defined(__AVX512F__)
        if (use_regs(g, npos)) {
            col2im_regs(dx, xstride, nbi, col, ldcol, g, &map, npos, c0, c1);
            return;
        }
#endif
        for (int64_t ch = c0; ch < c1; ch++)
            for (int64_t t = 0; t < g->khw; t++) {
                const int32_t *off = map.off + t * npos;
                const uint32_t *keep = map.keep + t * npos;
                for (int64_t i = 0; i < nbi; i++) {
                    float *dst = dx + i * xstride + ch * g->hw;
                    const float *src = col + ((ch - c0) * g->khw + t) * ldcol + i * npos;
                    for (int64_t j = 0; j < npos; j++)
                        dst[off[j]] += masked_load(src, (int32_t)j, keep[j]); /* pads add +0.0 at 0 */
                }
            }
        return;
    }
    for (int64_t ch = c0; ch < c1; ch++) {
        for (int64_t r = ch * g->khw; r < (ch + 1) * g->khw; r++) {
            int64_t kh = r / d->kw % d->kh, kw = r % d->kw;
            int64_t off = kw * c->dil_w - c->pad_w, lo, hi;
            valid_cols(off, c->stride_w, W, OW, &lo, &hi);
            for (int64_t i = 0; i < nbi; i++) {
                float *dxc = dx + i * xstride + ch * g->hw;
                for (int64_t oh = oh0; oh < oh1; oh++) {
                    int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                    if (ih < 0 || ih >= H) continue;
                    float *dst = dxc + ih * W + off + lo * c->stride_w;
                    const float *src = col + (r - c0 * g->khw) * ldcol + i * npos + (oh - oh0) * OW + lo;
                    if (c->stride_w == 1) {
#pragma omp simd
                        for (int64_t j = 0; j < hi - lo; j++)
                            dst[j] += src[j];
                    } else {
                        for (int64_t j = 0; j < hi - lo; j++)
                            dst[j * c->stride_w] += src[j];
                    }
                }
            }
        }
    }
}

/* ---- im2col + GEMM kernels ---- */

/* Row-major single-threaded sgemm: C (M x N) = A B + beta C, with cblas's transposes. */
static void sgemm(enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int64_t M, int64_t N, int64_t K,
                  const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                  int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta, tb, (blasint)M, (blasint)N, (blasint)K, 1.0f, A, (blasint)lda, B,
                (blasint)ldb, beta, C, (blasint)ldc);
}

/* dst[j] = epilogue(src[j]) for output channel o: src * scale[o] + shift[o] (1 and 0 when NULL), plus
 * res[j] when res is non-NULL, then max(., 0) when e->relu. Run right after the GEMM wrote src, while it
 * is still in cache, this replaces the separate bias, batch-norm, residual-add and ReLU passes. The order of
 * the float operations is that of those passes, so fused and unfused results agree. */
static void epi_row(float *dst, const float *src, const float *res, int64_t n, int64_t o,
                    const lt_conv2d_epi *e) {
    const float a = e->scale ? e->scale[o] : 1.0f, b = e->shift ? e->shift[o] : 0.0f;
    if (!res && !e->relu) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            dst[j] = src[j] * a + b;
    } else if (!res) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            float v = src[j] * a + b;
            dst[j] = v > 0.0f ? v : 0.0f;
        }
    } else if (!e->relu) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            dst[j] = (src[j] * a + b) + res[j];
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++) {
            float v = (src[j] * a + b) + res[j];
            dst[j] = v > 0.0f ? v : 0.0f;
        }
    }
}

static int epi_active(const lt_conv2d_epi *e) {
    return e->scale || e->shift || e->res || e->relu;
}

/* Forward of unit u, output channels [o0, o1) only. */
static void gemm_fw_unit(const conv_geom *g, const conv_cut *cut, float *out, /* (N, O, OH, OW) */
                         const float *x,                                      /* (N, C, H, W) */
                         const float *w,                                      /* (O, Cg, KH, KW) */
                         const lt_conv2d_epi *e, int64_t u, int64_t o0, int64_t o1,
                         float *col, /* (K, ncol) */
                         float *stage) /* (Og, ncol) */ {
    const lt_conv2d_dims *d = g->d;
    int64_t n0, nbi, oh0, oh1;
    unit_bounds(cut, d, u, &n0, &nbi, &oh0, &oh1);
    const int64_t P = g->p_out, cols = nbi > 1 ? nbi * P : (oh1 - oh0) * d->ow;
    for (int64_t gr = 0; gr < d->cfg.groups; gr++) {
        int64_t lo = max64(o0, gr * g->og), hi = min64(o1, (gr + 1) * g->og);
        if (lo >= hi) continue;
        const float *cm = col; /* (K, ldc) */
        int64_t ldc = cols;
        if (g->pointwise && nbi == 1) {
            cm = x + (n0 * d->c + gr * g->cg) * g->hw + oh0 * d->w;
            ldc = g->hw;
        } else {
            im2col(col, cols, x + (n0 * d->c + gr * g->cg) * g->hw, d->c * g->hw, nbi, g, oh0, oh1, 0, g->k);
        }
        if (nbi == 1) {
            float *y = out + (n0 * d->o + lo) * P + oh0 * d->ow; /* (hi - lo, P) */
            sgemm(CblasNoTrans, CblasNoTrans, hi - lo, cols, g->k, w + lo * g->k, g->k, cm, ldc, 0.0f, y, P);
            if (epi_active(e))
                for (int64_t o = lo; o < hi; o++) {
                    int64_t at = (o - lo) * P;
                    epi_row(y + at, y + at, e->res ? e->res + (y - out) + at : NULL, cols, o, e);
                }
        } else {
            sgemm(CblasNoTrans, CblasNoTrans, hi - lo, cols, g->k, w + lo * g->k, g->k, cm, ldc, 0.0f, stage,
                  cols);
            for (int64_t o = lo; o < hi; o++)
                for (int64_t i = 0; i < nbi; i++) {
                    int64_t at = ((n0 + i) * d->o + o) * P;
                    epi_row(out + at, stage + (o - lo) * cols + i * P, e->res ? e->res + at : NULL, P, o, e);
                }
        }
    }
}

/* Backward of unit u for the rows [R0, R1) of col, counted over all groups (R = group*K + r): adds into
 * those columns of dw and, when dx is wanted (then R0, R1 fall on channel boundaries), those channels of dx.
 */
static void gemm_bw_unit(const conv_geom *g, const conv_cut *cut, float *dx, /* (N, C, H, W) or NULL */
                         float *dw,                                          /* (O, Cg, KH, KW) or NULL */
                         const float *dout,                                  /* (N, O, OH, OW) */
                         const float *x,                                     /* (N, C, H, W) */
                         const float *w,                                     /* (O, Cg, KH, KW) */
                         int64_t u, int64_t R0, int64_t R1, float *col,      /* (bw_rows, ncol) */
                         float *stage) /* (Og, ncol) */ {
    const lt_conv2d_dims *d = g->d;
    int64_t n0, nbi, oh0, oh1;
    unit_bounds(cut, d, u, &n0, &nbi, &oh0, &oh1);
    const int64_t P = g->p_out, cols = nbi > 1 ? nbi * P : (oh1 - oh0) * d->ow;
    const int in_place = g->pointwise && nbi == 1;
    for (int64_t gr = 0; gr < d->cfg.groups; gr++) {
        int64_t lo = max64(R0, gr * g->k), hi = min64(R1, (gr + 1) * g->k);
        if (lo >= hi) continue;
        int64_t r0 = lo - gr * g->k, r1 = hi - gr * g->k;
        const float *dy; /* (Og, lddy): dout of this group and unit */
        int64_t lddy;
        if (nbi == 1) {
            dy = dout + (n0 * d->o + gr * g->og) * P + oh0 * d->ow;
            lddy = P;
        } else {
            for (int64_t o = 0; o < g->og; o++)
                for (int64_t i = 0; i < nbi; i++)
                    copy_floats(stage + o * cols + i * P, dout + ((n0 + i) * d->o + gr * g->og + o) * P, P);
            dy = stage;
            lddy = cols;
        }
        const float *xg = x ? x + (n0 * d->c + gr * g->cg) * g->hw : NULL; /* image n0, channel gr*Cg */
        if (dw) {
            const float *cm = col; /* (r1 - r0, ldc) */
            int64_t ldc = cols;
            if (in_place) {
                cm = xg + r0 * g->hw + oh0 * d->w;
                ldc = g->hw;
            } else {
                im2col(col, cols, xg, d->c * g->hw, nbi, g, oh0, oh1, r0, r1);
            }
            /* dw_g[:, r0:r1] (Og x m) += dy (Og x cols) @ col^T (cols x m) */
            sgemm(CblasNoTrans, CblasTrans, g->og, r1 - r0, cols, dy, lddy, cm, ldc, 1.0f,
                  dw + gr * g->og * g->k + r0, g->k);
        }
        if (dx) {
            const float *wr = w + gr * g->og * g->k + r0;       /* (Og, K) from column r0 */
            float *dxg = dx + (n0 * d->c + gr * g->cg) * g->hw; /* image n0, channel gr*Cg */
            if (in_place) {
                /* dx_g[r0:r1] (m x cols) += w_g[:, r0:r1]^T (m x Og) @ dy */
                sgemm(CblasTrans, CblasNoTrans, r1 - r0, cols, g->og, wr, g->k, dy, lddy, 1.0f,
                      dxg + r0 * g->hw + oh0 * d->w, g->hw);
            } else {
                sgemm(CblasTrans, CblasNoTrans, r1 - r0, cols, g->og, wr, g->k, dy, lddy, 0.0f, col, cols);
                col2im(dxg, d->c * g->hw, nbi, col, cols, g, oh0, oh1, r0 / g->khw, r1 / g->khw);
            }
        }
    }
}

/* ---- direct depthwise kernels (C/groups == 1) ---- */

/* out[n, o] = b[o] + sum_{kh,kw} w[o, 0, kh, kw] x[n, o / Og, oh*sh - ph + kh*dh, ow*sw - pw + kw*dw] */
static void direct_forward(float *out,     /* (N, O, OH, OW) */
                           const float *x, /* (N, C, H, W) */
                           const float *w, /* (O, 1, KH, KW) */
                           const float *b, /* (O) or NULL */
                           const conv_geom *g) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t P = g->p_out, OW = d->ow, W = d->w, planes = d->n * d->o;
#pragma omp parallel for num_threads(g->threads) schedule(static)
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
                    if (c->stride_w == 1) {
#pragma omp simd
                        for (int64_t j = 0; j < hi - lo; j++)
                            dst[j] += wv * src[j];
                    } else {
                        for (int64_t j = 0; j < hi - lo; j++)
                            dst[j] += wv * src[j * c->stride_w];
                    }
                }
            }
    }
}

static void direct_backward(float *dx,         /* (N, C, H, W) or NULL */
                            float *dw,         /* (O, 1, KH, KW) or NULL */
                            const float *dout, /* (N, O, OH, OW) */
                            const float *x,    /* (N, C, H, W) */
                            const float *w,    /* (O, 1, KH, KW) */
                            const conv_geom *g) {
    const lt_conv2d_dims *d = g->d;
    const lt_conv2d_cfg *c = &d->cfg;
    const int64_t P = g->p_out, OW = d->ow, W = d->w;
    /* a thread owns input channel ch: its dx planes and the dw of the Og outputs reading it, so each dout,
     * x and dx plane is visited once, for every tap while it is in cache */
#pragma omp parallel for num_threads(g->threads) schedule(static)
    for (int64_t ch = 0; ch < d->c; ch++)
        for (int64_t o = ch * g->og; o < (ch + 1) * g->og; o++)
            for (int64_t n = 0; n < d->n; n++) {
                const float *dy = dout + (n * d->o + o) * P;   /* (OH, OW) */
                const float *xc = x + (n * d->c + ch) * g->hw; /* (H, W) */
                float *dxc = dx ? dx + (n * d->c + ch) * g->hw : NULL;
                for (int64_t kh = 0; kh < d->kh; kh++)
                    for (int64_t kw = 0; kw < d->kw; kw++) {
                        /* forward: out[oh, ow] += w[o, kh, kw] * x[ih, iw] */
                        float wv = w[(o * d->kh + kh) * d->kw + kw], s = 0.0f, acc[16] = {0};
                        int64_t off = kw * c->dil_w - c->pad_w, lo, hi;
                        valid_cols(off, c->stride_w, W, OW, &lo, &hi);
                        for (int64_t oh = 0; oh < d->oh; oh++) {
                            int64_t ih = oh * c->stride_h - c->pad_h + kh * c->dil_h;
                            if (ih < 0 || ih >= d->h) continue;
                            int64_t at = ih * W + off + lo * c->stride_w;
                            const float *dyr = dy + oh * OW + lo;
                            if (c->stride_w == 1) {
                                if (dxc) {
                                    float *dst = dxc + at;
#pragma omp simd
                                    for (int64_t j = 0; j < hi - lo; j++)
                                        dst[j] += wv * dyr[j];
                                }
                                if (dw) dot_acc(acc, dyr, xc + at, hi - lo);
                            } else {
                                for (int64_t j = 0; dxc && j < hi - lo; j++)
                                    dxc[at + j * c->stride_w] += wv * dyr[j];
                                for (int64_t j = 0; dw && j < hi - lo; j++)
                                    s += dyr[j] * xc[at + j * c->stride_w];
                            }
                        }
                        for (int l = 0; l < 16; l++)
                            s += acc[l];
                        if (dw) dw[(o * d->kh + kh) * d->kw + kw] += s;
                    }
            }
}

/* ---- taps that only ever see padding ---- */

/* Taps [*t0, *t1) along one axis that read an input pixel for at least one output position; the others
 * see only padding (a 3x3 kernel on a 1x1 image uses only its centre). *t1 <= *t0 when none does. */
static void active_taps(int64_t in, int64_t out, int64_t k, int stride, int pad, int dil, int64_t *t0,
                        int64_t *t1) {
    *t0 = k;
    *t1 = 0;
    for (int64_t t = 0; t < k; t++) {
        /* is there an output o in [0, out) with 0 <= o*stride - pad + t*dil < in? */
        int64_t lo = pad - t * dil, hi = in - 1 + pad - t * dil;
        int64_t o = lo <= 0 ? 0 : ceil_div(lo, stride);
        if (o < out && o * stride <= hi) {
            if (t < *t0) *t0 = t;
            *t1 = t + 1;
        }
    }
}

/* d with its kernel cropped to the active taps (first ones at *kh0, *kw0), which computes the same
 * convolution with less work; padding shrinks by the taps dropped in front (and may turn negative, which
 * the kernels handle). dc->kh or dc->kw is 0 when no tap ever reads input. Returns 0 when nothing is
 * cropped. */
static int conv_crop(const lt_conv2d_dims *d, lt_conv2d_dims *dc, int64_t *kh0, int64_t *kw0) {
    const lt_conv2d_cfg *c = &d->cfg;
    int64_t kh1, kw1;
    active_taps(d->h, d->oh, d->kh, c->stride_h, c->pad_h, c->dil_h, kh0, &kh1);
    active_taps(d->w, d->ow, d->kw, c->stride_w, c->pad_w, c->dil_w, kw0, &kw1);
    *dc = *d;
    if (*kh0 == 0 && kh1 == d->kh && *kw0 == 0 && kw1 == d->kw) return 0;
    dc->kh = max64(0, kh1 - *kh0);
    dc->kw = max64(0, kw1 - *kw0);
    dc->cfg.pad_h = c->pad_h - (int)(*kh0 * c->dil_h);
    dc->cfg.pad_w = c->pad_w - (int)(*kw0 * c->dil_w);
    return 1;
}

/* Copies the active taps of w into wc (to_crop = 1), or adds wc into those taps of w (to_crop = 0). */
static void crop_weights(float *restrict wc, /* (O, Cg, KHc, KWc) */
                         float *restrict w,  /* (O, Cg, KH, KW) */
                         const lt_conv2d_dims *d, const lt_conv2d_dims *dc, int64_t kh0, int64_t kw0,
                         int to_crop, int threads) {
    const int64_t rows = d->o * (d->c / d->cfg.groups), khc = dc->kh, kwc = dc->kw, kh = d->kh, kw = d->kw;
    const int64_t first = kh0 * kw + kw0;
    if (to_crop) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < khc; i++)
                for (int64_t j = 0; j < kwc; j++)
                    wc[(r * khc + i) * kwc + j] = w[r * kh * kw + first + i * kw + j];
    } else {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < khc; i++)
                for (int64_t j = 0; j < kwc; j++)
                    w[r * kh * kw + first + i * kw + j] += wc[(r * khc + i) * kwc + j];
    }
}

/* ---- entry points ---- */

/* lt_conv2d_forward through im2col + GEMM, the tensors shaped as there (w possibly cropped, see conv_crop).
 */
static void gemm_forward(float *out, const float *x, const float *w, const lt_conv2d_epi *e,
                         const lt_conv2d_dims *d, const lt_conv2d_plan *p, float *scratch) {
    conv_geom g = conv_geometry(d, p->threads);
    conv_cut cut = conv_cutting(d, p->nb, p->piece_rows);
    const int64_t slot = fw_slot(&g, &cut), colsz = g.pointwise && cut.nb == 1 ? 0 : round16(g.k * cut.ncol);
#pragma omp parallel num_threads(p->threads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        float *col = scratch + tid * slot, *stage = col + colsz;
        int64_t alone = cut.units / nth * nth; /* units the threads take whole */
        for (int64_t u = tid; u < alone; u += nth)
            gemm_fw_unit(&g, &cut, out, x, w, e, u, 0, d->o, col, stage);
        if (alone < cut.units) {
            int64_t o0, o1;
            split_range(d->o, 8, tid, nth, &o0, &o1);
            for (int64_t u = alone; u < cut.units; u++)
                gemm_fw_unit(&g, &cut, out, x, w, e, u, o0, o1, col, stage);
        }
    }
}

/* lt_conv2d_backward's dx and dw through im2col + GEMM, shaped as there. */
static void gemm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const lt_conv2d_dims *d, const lt_conv2d_plan *p, float *scratch) {
    conv_geom g = conv_geometry(d, p->threads);
    conv_cut cut = conv_cutting(d, p->nb_bw, p->piece_rows_bw);
#pragma omp parallel num_threads(p->threads)
    {
        int tid = omp_get_thread_num(), nth = omp_get_num_threads();
        int64_t R0, R1; /* this thread's rows of col over all groups; whole channels when dx is wanted */
        split_range(d->cfg.groups * g.k, dx ? g.khw : 1, tid, nth, &R0, &R1);
        float *col = scratch + tid * bw_slot(&g, &cut, nth), *stage = col + bw_col_floats(&g, &cut, nth);
        for (int64_t u = 0; R0 < R1 && u < cut.units; u++)
            gemm_bw_unit(&g, &cut, dx, dw, dout, x, w, u, R0, R1, col, stage);
    }
}

int64_t lt_conv2d_scratch_numel(const lt_conv2d_dims *d, const lt_conv2d_plan *p, int with_backward) {
    if (p->direct) return 0;
    lt_conv2d_dims dc;
    int64_t kh0, kw0, n = 0;
    if (conv_crop(d, &dc, &kh0, &kw0)) {
        if (dc.kh == 0 || dc.kw == 0) return 0;
        n = 2 * round16(dc.o * (dc.c / dc.cfg.groups) * dc.kh * dc.kw); /* cropped w and dw */
    }
    conv_geom g = conv_geometry(&dc, p->threads);
    conv_cut fw = conv_cutting(&dc, p->nb, p->piece_rows), bw = conv_cutting(&dc, p->nb_bw, p->piece_rows_bw);
    int64_t slots = p->threads * fw_slot(&g, &fw);
    /* a smaller team gives each backward thread more rows, so size for the worst team size */
    for (int nth = 1; with_backward && nth <= p->threads; nth++)
        slots = max64(slots, nth * bw_slot(&g, &bw, nth));
    return n + slots;
}

void lt_conv2d_forward_epi(float *out, const float *x, const float *w, const lt_conv2d_epi *e,
                           const lt_conv2d_dims *d, const lt_conv2d_plan *p, float *scratch) {
    conv_geom g = conv_geometry(d, p->threads);
    const int64_t P = g.p_out;
    lt_conv2d_dims dc;
    int64_t kh0, kw0;
    if (p->direct || (conv_crop(d, &dc, &kh0, &kw0) && (dc.kh == 0 || dc.kw == 0))) {
        /* rare paths (depthwise, or no tap ever reads input): the plain output, then the epilogue in place */
        const int bias_only = !e->scale && !e->res && !e->relu;
        if (p->direct && bias_only) {
            direct_forward(out, x, w, e->shift, &g); /* the bias starts the sum, as before the epilogue */
            return;
        }
        if (p->direct) {
            direct_forward(out, x, w, NULL, &g);
        } else {
#pragma omp parallel for num_threads(p->threads) schedule(static)
            for (int64_t i = 0; i < d->n * d->o * P; i++)
                out[i] = 0.0f;
        }
        if (!epi_active(e)) return;
#pragma omp parallel for num_threads(p->threads) schedule(static)
        for (int64_t pl = 0; pl < d->n * d->o; pl++)
            epi_row(out + pl * P, out + pl * P, e->res ? e->res + pl * P : NULL, P, pl % d->o, e);
    } else if (!conv_crop(d, &dc, &kh0, &kw0)) {
        gemm_forward(out, x, w, e, d, p, scratch);
    } else {
        float *wc = scratch;
        crop_weights(wc, (float *)w, d, &dc, kh0, kw0, 1, p->threads);
        gemm_forward(out, x, wc, e, &dc, p, scratch + 2 * round16(d->o * g.cg * dc.kh * dc.kw));
    }
}

void lt_conv2d_forward(float *out, const float *x, const float *w, const float *b, const lt_conv2d_dims *d,
                       const lt_conv2d_plan *p, float *scratch) {
    lt_conv2d_epi e = {NULL, b, NULL, 0};
    lt_conv2d_forward_epi(out, x, w, &e, d, p, scratch);
}

void lt_conv2d_backward(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w,
                        const lt_conv2d_dims *d, const lt_conv2d_plan *p, float *scratch) {
    conv_geom g = conv_geometry(d, p->threads);
    const int64_t P = g.p_out;
    if (db) {
#pragma omp parallel for num_threads(p->threads) schedule(static)
        for (int64_t o = 0; o < d->o; o++) {
            double s = 0.0;
            for (int64_t n = 0; n < d->n; n++) {
                const float *dy = dout + (n * d->o + o) * P;
                float ps = 0.0f;
#pragma omp simd reduction(+ : ps)
                for (int64_t j = 0; j < P; j++)
                    ps += dy[j];
                s += ps;
            }
            db[o] += (float)s;
        }
    }
    if (!dx && !dw) return;
    lt_conv2d_dims dc;
    int64_t kh0, kw0;
    if (p->direct) {
        direct_backward(dx, dw, dout, x, w, &g);
    } else if (!conv_crop(d, &dc, &kh0, &kw0)) {
        gemm_backward(dx, dw, dout, x, w, d, p, scratch);
    } else if (dc.kh > 0 && dc.kw > 0) {
        const int64_t wcn = round16(d->o * g.cg * dc.kh * dc.kw);
        float *wc = scratch, *dwc = scratch + wcn;
        if (dx) crop_weights(wc, (float *)w, d, &dc, kh0, kw0, 1, p->threads);
        if (dw) memset(dwc, 0, (size_t)wcn * sizeof(float));
        gemm_backward(dx, dw ? dwc : NULL, dout, x, wc, &dc, p, scratch + 2 * wcn);
        if (dw) crop_weights(dwc, dw, d, &dc, kh0, kw0, 0, p->threads);
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

/* ip: 0..6 the cfg (stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups), then the plan: 7 nb,
 * 8 piece_rows, 9 nb_bw, 10 piece_rows_bw, 11 threads, 12 direct. */
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
    p->nb_bw = nd->ip[9];
    p->piece_rows_bw = nd->ip[10];
    p->threads = (int)nd->ip[11];
    p->direct = (int)nd->ip[12];
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

/* Validates a convolution and appends its node running op, with inputs {x, w, b, extra[0..n_extra)};
 * returns the output, NULL after an error. */
static lt_tensor *conv_node(lt_graph *g, const lt_op *op, lt_tensor *x, lt_tensor *w, lt_tensor *b,
                            lt_conv2d_cfg cfg, lt_tensor *const *extra, int n_extra) {
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
    if (b && (b->ndim != 1 || b->shape[0] != O)) {
        lt_graph_fail(g, LT_ERR_SHAPE, "conv2d: bias %s must be (%lld) for weight %s",
                      lt_shape_str(b->shape, b->ndim, bs, sizeof bs), (long long)O, ws);
        return NULL;
    }
    int64_t oh = lt_conv2d_out_size(x->shape[2], w->shape[2], cfg.stride_h, cfg.pad_h, cfg.dil_h);
    int64_t ow = lt_conv2d_out_size(x->shape[3], w->shape[3], cfg.stride_w, cfg.pad_w, cfg.dil_w);
    if (oh < 1 || ow < 1) {
        lt_graph_fail(
            g, LT_ERR_SHAPE,
            "conv2d: kernel of weight %s (dilation %d, %d) does not fit input %s padded by (%d, %d)", ws,
            cfg.dil_h, cfg.dil_w, xs, cfg.pad_h, cfg.pad_w);
        return NULL;
    }
    if (x->shape[2] * x->shape[3] > INT32_MAX || oh * ow > INT32_MAX) {
        lt_graph_fail(g, LT_ERR_SHAPE, "conv2d: planes of input %s exceed 2^31 pixels", xs);
        return NULL;
    }
    int64_t shape[4] = {x->shape[0], O, oh, ow};
    lt_tensor *out = lt_graph_new_tensor(g, shape, 4);
    lt_tensor *ins[LT_NODE_MAX_IN] = {x, w, b};
    for (int i = 0; i < n_extra && 3 + i < LT_NODE_MAX_IN; i++)
        ins[3 + i] = extra[i];
    lt_node *nd = lt_graph_add_node(g, op, out, ins, 3 + n_extra);
    if (!nd) return NULL;
    lt_conv2d_dims d = {x->shape[0], C, x->shape[2], x->shape[3], O, w->shape[2], w->shape[3], oh, ow, cfg};
    lt_conv2d_plan p;
    lt_conv2d_plan_auto(&d, omp_get_max_threads(), &p);
    int64_t ip[13] = {cfg.stride_h,    cfg.stride_w, cfg.pad_h, cfg.pad_w,    cfg.dil_h,
                      cfg.dil_w,       cfg.groups,   p.nb,      p.piece_rows, p.nb_bw,
                      p.piece_rows_bw, p.threads,    p.direct};
    memcpy(nd->ip, ip, sizeof ip);
    int train = lt_graph_mode(g) == LT_MODE_TRAIN;
    nd->scratch_numel = lt_conv2d_scratch_numel(&d, &p, train);
    /* backward reads x only for dw and w only for dx; it never reads b or the output */
    nd->bw_skip_in = 1u << 2;
    if (!w->requires_grad) nd->bw_skip_in |= 1u << 0;
    if (!x->requires_grad) nd->bw_skip_in |= 1u << 1;
    nd->bw_skip_out = 1;
    return out;
}

lt_tensor *lt_conv2d(lt_graph *g, lt_tensor *x, lt_tensor *w, lt_tensor *b, lt_conv2d_cfg cfg) {
    return conv_node(g, &conv_op, x, w, b, cfg, NULL, 0);
}

/* ---- convolution + eval-mode batch norm (+ residual) (+ ReLU), inference only ---- */

/* node: in = {x, w, NULL, bn weight, bn bias, running_mean, running_var, res}, ip as conv2d's plus 13 the
 * lt_bn_mode, 14 relu; fp[0] eps; saved (2 O) = scale, shift. */
enum { CBN_W = 3, CBN_B, CBN_RM, CBN_RV, CBN_RES };

static const float *data_or_null(const lt_tensor *t) {
    return t ? t->data : NULL;
}

/* The per-channel scale and shift batchnorm2d (norm.c) applies in eval or frozen mode, computed the way it
 * does (eval: rstd in double, then alpha = rstd * weight; frozen: all float, as DETR's FrozenBatchNorm2d),
 * so that the fused output equals conv2d followed by batchnorm2d. Recomputed every forward: cheap, and
 * weights or statistics loaded after the graph was built are picked up. */
static void bn_affine(float *scale, float *shift, const float *weight, const float *bias, const float *rm,
                      const float *rv, int64_t C, lt_bn_mode mode, float eps) {
    for (int64_t c = 0; c < C; c++) {
        float a;
        if (mode == LT_BN_FROZEN)
            a = (weight ? weight[c] : 1.0f) * (1.0f / sqrtf(rv[c] + eps));
        else
            a = (float)(1.0 / sqrt((double)rv[c] + (double)eps)) * (weight ? weight[c] : 1.0f);
        scale[c] = a;
        shift[c] = (bias ? bias[c] : 0.0f) - rm[c] * a;
    }
}

static void conv_bn_fw(lt_node *nd, const lt_exec *ex) {
    lt_conv2d_dims d;
    lt_conv2d_plan p;
    conv_node_dims(nd, &d, &p);
    float *scale = nd->saved, *shift = nd->saved + d.o; /* (O), (O) */
    bn_affine(scale, shift, data_or_null(nd->in[CBN_W]), data_or_null(nd->in[CBN_B]), nd->in[CBN_RM]->data,
              nd->in[CBN_RV]->data, d.o, (lt_bn_mode)nd->ip[13], nd->fp[0]);
    lt_conv2d_epi e = {scale, shift, data_or_null(nd->in[CBN_RES]), (int)nd->ip[14]};
    lt_conv2d_forward_epi(nd->out->data, nd->in[0]->data, nd->in[1]->data, &e, &d, &p, ex->scratch);
}

static const lt_op conv_bn_op = {"conv2d_bn", conv_bn_fw, NULL};

lt_tensor *lt_conv2d_bn_eval(lt_graph *g, lt_tensor *x, lt_tensor *w, lt_conv2d_cfg cfg, lt_tensor *bn_weight,
                             lt_tensor *bn_bias, lt_tensor *running_mean, lt_tensor *running_var,
                             lt_bn_mode mode, float eps, lt_tensor *res, int relu) {
    if (lt_graph_status(g, NULL) != LT_OK) return NULL;
    if (lt_graph_mode(g) != LT_MODE_EVAL)
        return lt_graph_fail(g, LT_ERR_ARG, "conv2d_bn: inference only (an LT_MODE_EVAL graph)");
    if (mode != LT_BN_EVAL && mode != LT_BN_FROZEN)
        return lt_graph_fail(g, LT_ERR_ARG, "conv2d_bn: batch norm mode must be eval or frozen, got %d",
                             (int)mode);
    if (!(eps > 0.0f)) return lt_graph_fail(g, LT_ERR_ARG, "conv2d_bn: eps must be > 0, got %g", eps);
    if (!w || !running_mean || !running_var)
        return lt_graph_fail(g, LT_ERR_ARG, "conv2d_bn: weight, running_mean and running_var are required");
    const int64_t O = w->shape[0];
    lt_tensor *vecs[4] = {bn_weight, bn_bias, running_mean, running_var};
    static const char *names[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        if (!vecs[i] || (vecs[i]->ndim == 1 && vecs[i]->shape[0] == O)) continue;
        char vs[96];
        return lt_graph_fail(g, LT_ERR_SHAPE, "conv2d_bn: batch norm %s must be (%lld), got %s", names[i],
                             (long long)O, lt_shape_str(vecs[i]->shape, vecs[i]->ndim, vs, sizeof vs));
    }
    lt_tensor *extra[5] = {bn_weight, bn_bias, running_mean, running_var, res};
    lt_tensor *out = conv_node(g, &conv_bn_op, x, w, NULL, cfg, extra, 5);
    if (!out) return NULL;
    lt_node *nd = lt_graph_node(g, out->producer);
    if (res && (res->ndim != 4 || memcmp(res->shape, nd->out->shape, 4 * sizeof(int64_t)))) {
        char rs[96], os[96];
        return lt_graph_fail(g, LT_ERR_SHAPE, "conv2d_bn: residual %s must match the output %s",
                             lt_shape_str(res->shape, res->ndim, rs, sizeof rs),
                             lt_shape_str(nd->out->shape, 4, os, sizeof os));
    }
    nd->ip[13] = mode;
    nd->ip[14] = relu != 0;
    nd->fp[0] = eps;
    nd->saved_numel = 2 * O;
    return nd->out;
}
