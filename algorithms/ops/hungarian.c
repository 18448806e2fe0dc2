/* hungarian.c - shortest augmenting path assignment (Crouse 2016), as scipy's linear_sum_assignment.
 *
 * The solver works on an n x m matrix with n <= m. Rows are added one at a time; for each, a Dijkstra-like
 * search over reduced costs cost[i][j] - u[i] - v[j] finds the cheapest path to a free column, the duals are
 * updated so reduced costs stay non-negative, and the path is flipped. The tie rules (columns scanned from
 * the last to the first, a free column preferred among equally short ones) follow scipy so the assignment,
 * not only its cost, is the same. */
#include "hungarian.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lt_hungarian_init(lt_hungarian *h) {
    memset(h, 0, sizeof *h);
}

void lt_hungarian_free(lt_hungarian *h) {
    if (!h) return;
    free(h->cost);
    free(h->u); /* one block holds every per-row/column array */
    memset(h, 0, sizeof *h);
}

lt_status lt_hungarian_reserve(lt_hungarian *h, int rows, int cols, lt_err *err) {
    if (rows < 0 || cols < 0)
        return lt_errorf(err, LT_ERR_ARG, "assignment: negative size %d x %d", rows, cols);
    long long cells;
    if (!lt_mul_ok(rows, cols, &cells) || (size_t)cells > SIZE_MAX / sizeof(double))
        return lt_errorf(err, LT_ERR_NOMEM, "assignment: a %d x %d cost matrix is too large", rows, cols);
    int n = rows > cols ? rows : cols;
    if (cells > h->cap_cells) {
        double *c = malloc((size_t)cells * sizeof *c);
        if (!c)
            return lt_errorf(err, LT_ERR_NOMEM, "assignment: out of memory for a %d x %d matrix", rows, cols);
        free(h->cost);
        h->cost = c;
        h->cap_cells = cells;
    }
    if (n > h->cap_n) {
        /* 3 double arrays, 4 int arrays and 2 byte arrays in one block, doubles first for alignment */
        size_t bytes = (size_t)n * (3 * sizeof(double) + 4 * sizeof(int) + 2);
        char *blk = malloc(bytes);
        if (!blk)
            return lt_errorf(err, LT_ERR_NOMEM, "assignment: out of memory for a %d x %d matrix", rows, cols);
        free(h->u);
        h->u = (double *)blk;
        h->v = h->u + n;
        h->dist = h->v + n;
        h->path = (int *)(h->dist + n);
        h->col4row = h->path + n;
        h->row4col = h->col4row + n;
        h->remaining = h->row4col + n;
        h->sr = (unsigned char *)(h->remaining + n);
        h->sc = h->sr + n;
        h->cap_n = n;
    }
    return LT_OK;
}

/* Finds the shortest augmenting path from row i of the n x m problem to a free column; returns that
 * column (the sink) and the path length in *min_out. Reduced costs are non-negative, so the first free
 * column taken off the frontier ends the search. Can't fail for finite costs. */
static int augmenting_path(lt_hungarian *h, int n, int m, int i, double *min_out) {
    const double *cost = h->cost; // (n, m)
    double min_val = 0.0;
    int num_remaining = m;
    /* reverse order, as scipy: a constant matrix then gets the identity assignment */
    for (int it = 0; it < m; it++)
        h->remaining[it] = m - it - 1;
    memset(h->sr, 0, (size_t)n);
    memset(h->sc, 0, (size_t)m);
    for (int j = 0; j < m; j++)
        h->dist[j] = INFINITY;
    int sink = -1;
    while (sink == -1) {
        int index = -1;
        double lowest = INFINITY;
        h->sr[i] = 1;
        for (int it = 0; it < num_remaining; it++) {
            int j = h->remaining[it];
            double r = min_val + cost[(int64_t)i * m + j] - h->u[i] - h->v[j];
            if (r < h->dist[j]) {
                h->path[j] = i;
                h->dist[j] = r;
            }
            /* among equally short columns prefer a free one: it ends the search (matters for integer costs)
             */
            if (h->dist[j] < lowest || (h->dist[j] == lowest && h->row4col[j] == -1)) {
                lowest = h->dist[j];
                index = it;
            }
        }
        min_val = lowest;
        int j = h->remaining[index];
        if (h->row4col[j] == -1)
            sink = j;
        else
            i = h->row4col[j];
        h->sc[j] = 1;
        h->remaining[index] = h->remaining[--num_remaining];
    }
    *min_out = min_val;
    return sink;
}

/* Solves the n x m problem in h->cost (n <= m), leaving the result in h->col4row. */
static void solve(lt_hungarian *h, int n, int m) {
    for (int i = 0; i < n; i++) {
        h->u[i] = 0.0;
        h->col4row[i] = -1;
    }
    for (int j = 0; j < m; j++) {
        h->v[j] = 0.0;
        h->row4col[j] = -1;
        h->path[j] = -1;
    }
    for (int cur = 0; cur < n; cur++) {
        double min_val;
        int sink = augmenting_path(h, n, m, cur, &min_val);
        /* dual update keeps every reduced cost >= 0 and those on the assignment at 0 */
        h->u[cur] += min_val;
        for (int i = 0; i < n; i++)
            if (h->sr[i] && i != cur) h->u[i] += min_val - h->dist[h->col4row[i]];
        for (int j = 0; j < m; j++)
            if (h->sc[j]) h->v[j] -= min_val - h->dist[j];
        /* flip the path: each column on it takes the row that reached it */
        int j = sink;
        for (;;) {
            int i = h->path[j];
            h->row4col[j] = i;
            int prev = h->col4row[i];
            h->col4row[i] = j;
            j = prev;
            if (i == cur) break;
        }
    }
}

lt_status lt_linear_sum_assignment(lt_hungarian *h, const float *cost, int rows, int cols, int *col_for_row,
                                   double *total_cost, lt_err *err) {
    lt_hungarian tmp;
    lt_hungarian_init(&tmp);
    lt_hungarian *w = h ? h : &tmp;
    if (total_cost) *total_cost = 0.0;
    lt_status st = lt_hungarian_reserve(w, rows, cols, err);
    if (st != LT_OK) goto done;
    for (int64_t k = 0; k < (int64_t)rows * cols; k++) {
        if (!isfinite(cost[k])) {
            st = lt_errorf(err, LT_ERR_ARG,
                           "assignment: cost[%lld][%lld] is %g; matching costs must be finite",
                           (long long)(k / cols), (long long)(k % cols), (double)cost[k]);
            goto done;
        }
    }
    for (int i = 0; i < rows; i++)
        col_for_row[i] = -1;
    if (rows == 0 || cols == 0) goto done;
    const int transpose = rows > cols;
    const int n = transpose ? cols : rows, m = transpose ? rows : cols;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            w->cost[transpose ? (int64_t)j * rows + i : (int64_t)i * cols + j] = cost[(int64_t)i * cols + j];
    solve(w, n, m);
    for (int i = 0; i < n; i++) {
        if (transpose)
            col_for_row[w->col4row[i]] = i;
        else
            col_for_row[i] = w->col4row[i];
    }
    if (total_cost) {
        double s = 0.0;
        for (int i = 0; i < rows; i++)
            if (col_for_row[i] >= 0) s += cost[(int64_t)i * cols + col_for_row[i]];
        *total_cost = s;
    }
done:
    lt_hungarian_free(&tmp);
    return st;
}
