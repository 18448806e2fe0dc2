/* optim.h - AdamW, the linear warmup/decay schedule and global gradient-norm clipping, as the Hugging Face
 * Trainer combines them.
 *
 * All three work on the flat layout of an lt_params store: data, grad, m and v share offsets over the
 * trainable tensors, which come first. One training step, in the Trainer's order:
 *
 *     lt_params_zero_grad(&p);  forward; backward;
 *     double norm = lt_clip_grad_norm(&p, 1.0);              // logged as grad_norm
 *     double lr = base_lr * lt_linear_schedule(opt.step, warmup, total);
 *     lt_adamw_step(&opt, &p, lr, &err);                     // opt.step += 1
 *
 * The lr for step s (0-based, s = opt.step before the update) is the schedule at s: the Trainer calls
 * scheduler.step() after optimizer.step(), so with warmup the very first update uses lr 0. */
#ifndef LT_OPTIM_H
#define LT_OPTIM_H

#include "../core/params.h"
#include "../core/status.h"

#include <stdint.h>

/* ---- AdamW (adamw.c) ---- */

/* Hyperparameters and progress of torch.optim.AdamW. Saved in checkpoints together with lt_params' m and v;
 * restoring all of them resumes training bit for bit. */
typedef struct {
    double lr;           /* base learning rate, before the schedule (the Trainer's learning_rate) */
    double beta1;        /* first-moment decay, 0.9 */
    double beta2;        /* second-moment decay, 0.999 */
    double eps;          /* added to sqrt(v_hat), 1e-8 */
    double weight_decay; /* decoupled decay, 0.0 as the Trainer's default */
    int64_t step;        /* updates done so far; bias correction of the next update uses step + 1 */
} lt_adamw;

/* Fills o with torch's defaults (betas 0.9/0.999, eps 1e-8) and the given lr and weight decay, step 0.
 * Can't fail; lt_adamw_check validates the values. */
void lt_adamw_init(lt_adamw *o, double lr, double weight_decay);

/* LT_ERR_ARG with a message naming the field when a hyperparameter is out of range (lr < 0, betas outside
 * [0, 1), eps < 0, weight_decay < 0, step < 0) or not finite. */
lt_status lt_adamw_check(const lt_adamw *o, lt_err *err);

/* One update of every trainable tensor of p with learning rate lr (the scheduled value, usually
 * o->lr * lt_linear_schedule(o->step, ...)), then o->step += 1. Per tensor t, with lr_t = lr * t->lr_scale
 * and wd = (t->no_decay ? 0 : o->weight_decay), exactly as torch.optim.AdamW:
 *     p *= 1 - lr_t * wd
 *     m = beta1 m + (1 - beta1) g;   v = beta2 v + (1 - beta2) g^2
 *     p -= lr_t / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 * Gradients are read, not cleared. LT_ERR_STATE when p is not allocated, LT_ERR_ARG for a negative or
 * non-finite lr; p is untouched then. Non-finite gradients are not detected here (see lt_clip_grad_norm). */
lt_status lt_adamw_step(lt_adamw *o, lt_params *p, double lr, lt_err *err);

/* lt_adamw_step on gradients multiplied by grad_scale (read, not written back): the same result, bit for
 * bit, as scaling the gradients first, in one pass over memory less. With lt_clip_coef this is clipping
 * fused into the update; AdamW's memory traffic dominates a small-image training step. */
lt_status lt_adamw_step_scaled(lt_adamw *o, lt_params *p, double lr, float grad_scale, lt_err *err);

/* ---- schedule (schedule.c) ---- */

/* The lr multiplier of transformers' get_linear_schedule_with_warmup at step (0-based):
 * step / max(1, warmup) while step < warmup, then max(0, (total - step) / max(1, total - warmup)).
 * Can't fail; negative arguments are treated as given (as the Python code does). */
double lt_linear_schedule(int64_t step, int64_t warmup_steps, int64_t total_steps);

/* ---- clipping (clip.c) ---- */

/* Global L2 norm of every trainable gradient of p, accumulated in double, as
 * torch.nn.utils.clip_grad_norm_(params, max_norm): every gradient is scaled by
 * coef = max_norm / (norm + 1e-6) when coef < 1 (torch multiplies by min(coef, 1)), so clipping starts a hair
 * below max_norm exactly as in torch. Returns the norm before clipping (the Trainer logs it as grad_norm);
 * 0 for an unallocated or empty store. A non-finite norm (an inf or NaN gradient) leaves the gradients as
 * they are and is returned as is: the caller decides (skip the step, fail the job) instead of torch's
 * behaviour of turning every gradient into NaN or 0. max_norm <= 0 only measures. Can't fail. */
double lt_clip_grad_norm(lt_params *p, double max_norm);

/* The factor clip_grad_norm_ multiplies gradients by for a measured norm: max_norm / (norm + 1e-6) when
 * that is below 1, else 1 (also for max_norm <= 0 or a non-finite norm). Use with lt_adamw_step_scaled
 * after lt_clip_grad_norm(p, 0) to clip without a separate pass. */
float lt_clip_coef(double norm, double max_norm);

#endif
