#include "check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

int check_passed, check_failed;

void check_report(int ok, const char *file, int line, const char *fmt, ...) {
    if (ok) {
        check_passed++;
        return;
    }
    check_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int check_close_array(const char *what, const float *got, const float *want, int64_t n, double atol, double rtol,
                      const char *file, int line) {
    int64_t worst = -1;
    double worst_excess = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        double lim = atol + rtol * fabs((double)want[i]);
        if (!(d <= lim) && (worst < 0 || d - lim > worst_excess)) {
            worst = i;
            worst_excess = isnan(d) ? INFINITY : d - lim;
        }
    }
    if (worst < 0) {
        check_passed++;
        return 1;
    }
    check_report(0, file, line, "%s: element %lld of %lld is %.9g, expected %.9g", what, (long long)worst,
                 (long long)n, got[worst], want[worst]);
    return 0;
}

int check_summary(const char *test_name) {
    printf("%s: %d passed, %d failed\n", test_name, check_passed, check_failed);
    return check_failed ? 1 : 0;
}
