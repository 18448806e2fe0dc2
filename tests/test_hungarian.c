/* Tests of hungarian.c: optimal cost against exhaustive search on many small random matrices (square and
 * rectangular both ways, with and without ties), against a bitmask dynamic program on larger rectangular
 * ones, scipy's documented example and tie behaviour, and error handling. */
#include "check.h"
#include "core/rng.h"
#include "ops/hungarian.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Minimum over every injective map of the smaller side into the larger one, by recursion. */
static void brute(const float *cost, int rows, int cols, int i, unsigned used, double sum, double *best) {
    int n = rows <= cols ? rows : cols, m = rows <= cols ? cols : rows;
    if (i == n) {
        if (sum < *best) *best = sum;
        return;
    }
    for (int j = 0; j < m; j++) {
        if (used & (1u << j)) continue;
        double c = rows <= cols ? cost[i * cols + j] : cost[j * cols + i];
        brute(cost, rows, cols, i + 1, used | (1u << j), sum + c, best);
    }
}

/* Minimum cost when the smaller side has at most ~12 entries. Entries of the larger side are taken in
 * order; dp[mask] is the cheapest matching of the smaller-side entries in mask to distinct larger-side
 * entries taken so far. O(m * 2^n * n). */
static double dp_min(const float *cost, int rows, int cols) {
    int n = rows <= cols ? rows : cols, m = rows <= cols ? cols : rows;
    size_t states = (size_t)1 << n;
    double *dp = malloc(states * sizeof *dp), *nx = malloc(states * sizeof *nx);
    for (size_t s = 0; s < states; s++)
        dp[s] = INFINITY;
    dp[0] = 0.0;
    for (int j = 0; j < m; j++) {            /* entry j of the larger side */
        memcpy(nx, dp, states * sizeof *dp); /* j left unmatched */
        for (size_t s = 0; s < states; s++) {
            if (dp[s] == INFINITY) continue;
            for (int i = 0; i < n; i++) {
                if (s & ((size_t)1 << i)) continue;
                double c = rows <= cols ? cost[i * cols + j] : cost[j * cols + i];
                size_t t = s | ((size_t)1 << i);
                if (dp[s] + c < nx[t]) nx[t] = dp[s] + c;
            }
        }
        memcpy(dp, nx, states * sizeof *dp);
    }
    double best = dp[states - 1];
    free(dp);
    free(nx);
    return best;
}

/* Checks that col_for_row is a valid assignment (distinct columns, every row of the smaller side matched)
 * whose cost is reported in total; returns the recomputed cost. */
static double check_valid(const float *cost, int rows, int cols, const int *col_for_row, double total,
                          const char *what) {
    int assigned = 0, ok = 1;
    unsigned char *seen = calloc((size_t)cols + 1, 1);
    double sum = 0.0;
    for (int i = 0; i < rows; i++) {
        int j = col_for_row[i];
        if (j < 0) continue;
        if (j >= cols || seen[j])
            ok = 0;
        else {
            seen[j] = 1;
            assigned++;
            sum += cost[i * cols + j];
        }
    }
    free(seen);
    int n = rows <= cols ? rows : cols;
    CHECK_MSG(ok && assigned == n, "%s: %d x %d assignment invalid (%d pairs)", what, rows, cols, assigned);
    CHECK_NEAR(total, sum, 1e-9, 1e-12);
    return sum;
}

static void fill_random(float *cost, int cells, lt_rng *r, int ties) {
    for (int k = 0; k < cells; k++)
        cost[k] = ties ? (float)lt_rng_below(r, 4) - 1.0f : 10.0f * lt_rng_uniform(r) - 3.0f;
}

static void test_against_brute_force(void) {
    lt_rng r;
    lt_rng_seed(&r, 2024, 3);
    lt_hungarian h;
    lt_hungarian_init(&h);
    float cost[64];
    int col_for_row[8];
    lt_err err = {{0}};
    int cases = 0, bad = 0;
    for (int rows = 1; rows <= 6; rows++)
        for (int cols = 1; cols <= 6; cols++)
            for (int rep = 0; rep < 12; rep++) {
                int ties = rep % 2;
                fill_random(cost, rows * cols, &r, ties);
                double total = NAN, best = INFINITY;
                if (lt_linear_sum_assignment(&h, cost, rows, cols, col_for_row, &total, &err) != LT_OK) {
                    CHECK_MSG(0, "%d x %d failed: %s", rows, cols, err.msg);
                    continue;
                }
                double got = check_valid(cost, rows, cols, col_for_row, total, "brute");
                brute(cost, rows, cols, 0, 0, 0.0, &best);
                cases++;
                if (fabs(got - best) > 1e-9) {
                    bad++;
                    CHECK_MSG(0, "%d x %d (ties %d): cost %.9g, optimum %.9g", rows, cols, ties, got, best);
                }
            }
    CHECK_MSG(bad == 0 && cases == 432, "%d of %d brute-force cases wrong", bad, cases);
    lt_hungarian_free(&h);
}

static void test_against_dp(void) {
    lt_rng r;
    lt_rng_seed(&r, 77, 5);
    const int sizes[][2] = {{30, 10}, {10, 30}, {12, 12}, {100, 8}, {9, 50}, {25, 11}};
    for (int k = 0; k < 6; k++)
        for (int ties = 0; ties < 2; ties++) {
            int rows = sizes[k][0], cols = sizes[k][1];
            float *cost = malloc(sizeof(float) * rows * cols);
            int *cfr = malloc(sizeof(int) * rows);
            fill_random(cost, rows * cols, &r, ties);
            double total;
            lt_err err = {{0}};
            /* no workspace: the temporary path */
            CHECK(lt_linear_sum_assignment(NULL, cost, rows, cols, cfr, &total, &err) == LT_OK);
            double got = check_valid(cost, rows, cols, cfr, total, "dp");
            double best = dp_min(cost, rows, cols);
            CHECK_MSG(fabs(got - best) <= 1e-9 * (1 + fabs(best)),
                      "%d x %d (ties %d): cost %.9g, optimum %.9g", rows, cols, ties, got, best);
            free(cost);
            free(cfr);
        }
}

/* scipy.optimize.linear_sum_assignment's documented example and its tie conventions. */
static void test_known_examples(void) {
    lt_err err = {{0}};
    double total;
    const float doc[9] = {4, 1, 3, 2, 0, 5, 3, 2, 2};
    int cfr[4];
    CHECK(lt_linear_sum_assignment(NULL, doc, 3, 3, cfr, &total, &err) == LT_OK);
    CHECK(cfr[0] == 1 && cfr[1] == 0 && cfr[2] == 2);
    CHECK_NEAR(total, 5.0, 0, 0);
    /* the transpose (3 x 3 is square; use a 4 x 3 by adding an expensive row, which stays unassigned) */
    const float tall[12] = {4, 1, 3, 2, 0, 5, 9, 9, 9, 3, 2, 2};
    CHECK(lt_linear_sum_assignment(NULL, tall, 4, 3, cfr, &total, &err) == LT_OK);
    CHECK(cfr[0] == 1 && cfr[1] == 0 && cfr[2] == -1 && cfr[3] == 2);
    CHECK_NEAR(total, 5.0, 0, 0);
    /* a constant matrix gives the identity, as scipy (#11602), in all three shapes */
    float ones[12];
    for (int i = 0; i < 12; i++)
        ones[i] = 1.0f;
    CHECK(lt_linear_sum_assignment(NULL, ones, 3, 3, cfr, &total, &err) == LT_OK);
    CHECK(cfr[0] == 0 && cfr[1] == 1 && cfr[2] == 2);
    CHECK(lt_linear_sum_assignment(NULL, ones, 3, 4, cfr, &total, &err) == LT_OK);
    CHECK(cfr[0] == 0 && cfr[1] == 1 && cfr[2] == 2);
    CHECK(lt_linear_sum_assignment(NULL, ones, 4, 3, cfr, &total, &err) == LT_OK);
    CHECK(cfr[0] == 0 && cfr[1] == 1 && cfr[2] == 2 && cfr[3] == -1);
    /* negative costs and a 1 x n row */
    const float row[5] = {3, -1, -4, 2, -4};
    CHECK(lt_linear_sum_assignment(NULL, row, 1, 5, cfr, &total, &err) == LT_OK);
    CHECK(cfr[0] == 2 || cfr[0] == 4);
    CHECK_NEAR(total, -4.0, 0, 0);
}

static void test_errors_and_reuse(void) {
    lt_err err = {{0}};
    float cost[6] = {1, 2, 3, 4, 5, 6};
    int cfr[3] = {7, 7, 7};
    double total = 1;
    CHECK(lt_linear_sum_assignment(NULL, cost, 0, 3, cfr, &total, &err) == LT_OK && total == 0.0);
    CHECK(lt_linear_sum_assignment(NULL, cost, 3, 0, cfr, &total, &err) == LT_OK);
    CHECK(cfr[0] == -1 && cfr[1] == -1 && cfr[2] == -1);
    CHECK(lt_linear_sum_assignment(NULL, cost, -1, 3, cfr, &total, &err) == LT_ERR_ARG);
    cost[4] = NAN;
    CHECK(lt_linear_sum_assignment(NULL, cost, 2, 3, cfr, &total, &err) == LT_ERR_ARG);
    CHECK_MSG(strstr(err.msg, "cost[1][1]") != NULL, "message: %s", err.msg);
    cost[4] = INFINITY;
    CHECK(lt_linear_sum_assignment(NULL, cost, 2, 3, cfr, &total, &err) == LT_ERR_ARG);
    cost[4] = -INFINITY;
    CHECK(lt_linear_sum_assignment(NULL, cost, 2, 3, cfr, &total, &err) == LT_ERR_ARG);
    /* one workspace over growing and shrinking sizes gives what fresh temporaries give */
    lt_hungarian h;
    lt_hungarian_init(&h);
    lt_rng r;
    lt_rng_seed(&r, 5, 9);
    const int sizes[][2] = {{3, 5}, {100, 40}, {7, 2}, {40, 100}, {1, 1}, {50, 50}};
    for (int k = 0; k < 6; k++) {
        int rows = sizes[k][0], cols = sizes[k][1];
        float *c = malloc(sizeof(float) * rows * cols);
        int *a = malloc(sizeof(int) * rows), *b = malloc(sizeof(int) * rows);
        fill_random(c, rows * cols, &r, k % 2);
        CHECK(lt_linear_sum_assignment(&h, c, rows, cols, a, NULL, &err) == LT_OK);
        CHECK(lt_linear_sum_assignment(NULL, c, rows, cols, b, NULL, &err) == LT_OK);
        CHECK_MSG(memcmp(a, b, sizeof(int) * rows) == 0, "%d x %d: reused workspace differs", rows, cols);
        free(c);
        free(a);
        free(b);
    }
    lt_hungarian_free(&h);
    lt_hungarian_free(&h); /* twice is fine */
    lt_hungarian_free(NULL);
}

int main(void) {
    test_against_brute_force();
    test_against_dp();
    test_known_examples();
    test_errors_and_reuse();
    return check_summary("test_hungarian");
}
