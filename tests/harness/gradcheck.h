/* gradcheck.h - compares backprop with central finite differences for any graph builder.
 *
 * The harness makes each described input a graph input (random values from a fixed seed), builds the op
 * with `build`, plans a LT_MODE_TRAIN graph, and checks d(sum(r * out))/d(input) for a fixed random r:
 * analytic from lt_graph_backward, numeric from (L(x+eps) - L(x-eps)) / 2eps with L accumulated in double.
 * The graph's rng is reseeded before every forward so dropout masks repeat. At most max_points elements of
 * each input are probed (spread over the tensor), all of them when it is smaller. */
#ifndef LT_GRADCHECK_H
#define LT_GRADCHECK_H

#include "core/graph.h"

#include <stdint.h>

typedef enum {
    GC_NORMAL = 0, /* N(0, 1) * scale + offset */
    GC_UNIFORM,    /* U(lo, hi) */
    GC_INDEX,      /* integers in [lo, hi) (class ids, carried as floats) */
    GC_CONST,      /* every element = lo */
    GC_FILL_COUNT
} gc_fill;

typedef struct {
    const char *name;
    int64_t shape[5];
    int ndim;
    int requires_grad; /* check this input's gradient */
    gc_fill fill;
    float lo, hi;      /* GC_UNIFORM/GC_INDEX range; GC_NORMAL: lo = offset, hi = scale (0 means 1) */
} gc_input;

/* Builds the op on the graph inputs `in` (same order as the descriptions). ctx is passed through. */
typedef lt_tensor *(*gc_build_fn)(lt_graph *g, lt_tensor **in, void *ctx);

typedef struct {
    double eps;      /* default 1e-2 when 0 */
    double atol;     /* default 2e-3 when 0 */
    double rtol;     /* default 2e-2 when 0 */
    int max_points;  /* default 64 when 0 */
    uint64_t seed;   /* input and projection seed */
} gc_opts;

/* Runs the check, reporting failures through check.h. Returns 1 when every probed element passed.
 * If fill_cb is non-NULL it is called after the random fill to let a test set special values. */
int gradcheck(const char *label, const gc_input *ins, int n_in, gc_build_fn build, void *ctx, gc_opts opts);

/* Same, with a callback to adjust inputs after random filling (e.g. make boxes valid). */
typedef void (*gc_fix_fn)(lt_tensor **in, int n_in, void *ctx);
int gradcheck_fix(const char *label, const gc_input *ins, int n_in, gc_build_fn build, gc_fix_fn fix, void *ctx,
                  gc_opts opts);

#endif
