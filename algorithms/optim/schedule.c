/* schedule.c - learning-rate schedules. */
#include "optim.h"

/* transformers.get_linear_schedule_with_warmup's lr_lambda, line for line. */
double lt_linear_schedule(int64_t step, int64_t warmup_steps, int64_t total_steps) {
    if (step < warmup_steps) return (double)step / (double)(warmup_steps > 1 ? warmup_steps : 1);
    int64_t decay_steps = total_steps - warmup_steps;
    double mult = (double)(total_steps - step) / (double)(decay_steps > 1 ? decay_steps : 1);
    return mult > 0.0 ? mult : 0.0;
}
