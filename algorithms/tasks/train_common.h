/* train_common.h - what every training task shares: progress reporting (console, TensorBoard, the
 * Trainer-style log history), events for the worker, cancellation, and checkpoints.
 *
 * Output folder layout (the model files themselves are written by each task):
 *   <output>/tensorboard/events.out.tfevents.*   scalars: train/loss, train/learning_rate, train/grad_norm,
 *                                                train/epoch, eval/<metric>, test/<metric>
 *   <output>/trainer_state.json                  global_step, epoch, log_history (as transformers' Trainer)
 *   <output>/checkpoints/step-<N>/               model.safetensors, optimizer.safetensors, trainer_state.json
 *   <output>/checkpoints/latest                  text file naming the newest complete step-<N> folder
 * A checkpoint folder is written under a temporary name and renamed when complete, then "latest" is
 * replaced atomically, then older checkpoints are removed: a crash at any point leaves a usable one. */
#ifndef LT_TRAIN_COMMON_H
#define LT_TRAIN_COMMON_H

#include "core/params.h"
#include "core/status.h"
#include "io/tbevents.h"
#include "optim/optim.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* How a caller (the CLI, a worker) follows and steers a run. Every member may be NULL. */
typedef struct {
    /* Called with type "progress" ({step, total_steps, epoch}), "log" (a log_history entry), "eval"
     * ({split, step, epoch, metrics}), "checkpoint" ({step, path}). payload is borrowed. */
    void (*event)(void *ctx, const char *type, const cJSON *payload);
    /* Polled between steps: non-zero stops the run (after a checkpoint) with LT_ERR_CANCELLED. */
    int (*should_stop)(void *ctx);
    void *ctx;
} lt_train_hooks;

typedef struct {
    const char *output;      /* output folder */
    lt_train_hooks hooks;
    lt_tb_writer *tb;
    cJSON *history;          /* log_history array */
    int64_t total_steps;
    int64_t logging_steps;
    int64_t images_per_step;
    double loss_sum;         /* since the last log line */
    int64_t loss_count;
    double started;          /* monotonic seconds at start (or resume) */
    int64_t start_step;
    double last_progress;    /* last time the progress bar was drawn */
    double last_line;        /* last plain progress line (when stderr is not a terminal) */
    int tty;                 /* stderr is a terminal: draw a progress bar */
    int quiet;
} lt_train_log;

double lt_now(void); /* monotonic seconds */

/* Opens TensorBoard and the history. history (may be NULL) is adopted (resumed runs pass the old one). */
lt_status lt_train_log_open(lt_train_log *log, const char *output, int64_t total_steps, int64_t logging_steps,
                            int64_t images_per_step, int64_t start_step, cJSON *history, lt_train_hooks hooks,
                            lt_err *err);
void lt_train_log_close(lt_train_log *log);

/* Records one step's loss; every logging_steps steps (and when force is set, e.g. at an epoch end) writes
 * a log entry {loss (mean since the last entry), learning_rate, grad_norm, epoch, step} to the history,
 * TensorBoard, the hooks and stderr. Draws the progress bar. */
lt_status lt_train_log_step(lt_train_log *log, int64_t step, double epoch, double loss, double lr, double grad_norm,
                            int force, lt_err *err);
/* Logs evaluation metrics (every numeric member of metrics) under "<split>/<name>" in TensorBoard and as
 * "<prefix>_<name>" in the history (prefix "eval" for validation, "test" for test). */
lt_status lt_train_log_eval(lt_train_log *log, const char *split, int64_t step, double epoch, const cJSON *metrics,
                            lt_err *err);
/* Emits a hook event (no-op without a hook). */
void lt_train_emit(const lt_train_log *log, const char *type, const cJSON *payload);

/* Writes a checkpoint of params (with buffers), the AdamW moments and state (a JSON object that must hold
 * "global_step"; it is written as trainer_state.json) and makes it the latest; keeps only that one. */
lt_status lt_checkpoint_save(const char *output, const lt_params *p, const lt_adamw *opt, const cJSON *state,
                             char **saved_path, lt_err *err);
/* 1 when output has a complete checkpoint. */
int lt_checkpoint_exists(const char *output);
/* Loads the latest checkpoint into p (same architecture) and opt; *state receives trainer_state.json. */
lt_status lt_checkpoint_load(const char *output, lt_params *p, lt_adamw *opt, cJSON **state, lt_err *err);

#endif
