/* hungarian.h - minimum-cost assignment of a rectangular cost matrix (DETR's bipartite matcher).
 *
 * Same algorithm and tie-breaking as scipy.optimize.linear_sum_assignment (scipy >= 1.6): the shortest
 * augmenting path method of Crouse (2016), one Dijkstra-like search per row of the smaller side, computed in
 * double, O(n^2 m) for an n x m problem with n <= m. A matrix with more rows than columns is solved
 * transposed, as scipy does, so both give the same assignment, ties included.
 *
 * Use (per image, per step):
 *     lt_hungarian h;                      // once
 *     lt_hungarian_init(&h);
 *     lt_linear_sum_assignment(&h, cost, 100, n_targets, col_for_row, NULL, &err);
 *     ...
 *     lt_hungarian_free(&h);
 * The workspace grows to the largest matrix seen and is reused, so steady-state calls do not allocate. */
#ifndef LT_HUNGARIAN_H
#define LT_HUNGARIAN_H

#include "../core/status.h"

#include <stdint.h>

/* Reusable workspace. Zero-initialized (or lt_hungarian_init) means empty; fields are private. */
typedef struct {
    double *cost;           /* (cap_cells) the cost matrix as double, transposed when rows > cols */
    double *u, *v;          /* (cap_n) dual variables of rows and columns */
    double *dist;           /* (cap_n) shortest path cost to each column in the current search */
    int *path;              /* (cap_n) the row preceding each column on the shortest path */
    int *col4row, *row4col; /* (cap_n) the current partial assignment, -1 for none */
    int *remaining;         /* (cap_n) columns not yet reached by the current search */
    unsigned char *sr, *sc; /* (cap_n) rows and columns reached by the current search */
    int64_t cap_cells;      /* doubles allocated in cost */
    int cap_n;              /* entries allocated in each per-row/column array */
} lt_hungarian;

/* Makes h empty. Can't fail. */
void lt_hungarian_init(lt_hungarian *h);
/* Frees what h holds and leaves it empty; NULL is a no-op. */
void lt_hungarian_free(lt_hungarian *h);
/* Grows h to fit a rows x cols problem (no-op when it already fits). On failure h keeps its old,
 * still valid, buffers. */
lt_status lt_hungarian_reserve(lt_hungarian *h, int rows, int cols, lt_err *err);

/* Solves min sum_i cost[i, col_for_row[i]] over assignments that give every row of the smaller side a
 * distinct partner. cost is (rows, cols) row-major; every entry must be finite (NaN or +-inf returns
 * LT_ERR_ARG). Writes col_for_row (rows entries): the assigned column, or -1 for a row left over when
 * rows > cols. Pairs read in row order are exactly scipy's (row_ind, col_ind). total_cost (optional)
 * receives the sum of the assigned costs in double. h may be NULL: a temporary workspace is used (two
 * allocations per call). rows or cols of 0 is valid (no pairs). On error col_for_row is unspecified. */
lt_status lt_linear_sum_assignment(lt_hungarian *h, const float *cost, int rows, int cols, int *col_for_row,
                                   double *total_cost, lt_err *err);

#endif
