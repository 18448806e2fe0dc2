/* check.h - the assertions every test uses. A failed CHECK prints file:line and the expression and counts
 * a failure; the test goes on so one run shows every broken case. check_summary() prints
 * "<test>: N passed, N failed" and returns the exit status for main(). */
#ifndef LT_CHECK_H
#define LT_CHECK_H

#include <math.h>
#include <stdint.h>

extern int check_passed, check_failed;

void check_report(int ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define CHECK(cond) check_report(!!(cond), __FILE__, __LINE__, "%s", #cond)
#define CHECK_MSG(cond, ...) check_report(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
/* |a - b| <= atol + rtol * |b| */
#define CHECK_NEAR(a, b, atol, rtol)                                                                        \
    do {                                                                                                    \
        double a_ = (a), b_ = (b);                                                                          \
        check_report(fabs(a_ - b_) <= (atol) + (rtol)*fabs(b_), __FILE__, __LINE__, "%s = %.9g, expected %.9g", \
                     #a, a_, b_);                                                                           \
    } while (0)

/* Compares n floats; reports the worst element once. Returns 1 when all are within tolerance. */
int check_close_array(const char *what, const float *got, const float *want, int64_t n, double atol, double rtol,
                      const char *file, int line);
#define CHECK_CLOSE(what, got, want, n, atol, rtol) check_close_array(what, got, want, n, atol, rtol, __FILE__, __LINE__)

int check_summary(const char *test_name);

#endif
