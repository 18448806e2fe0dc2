/* graph.h - build a computation once, plan its memory once, then run forward and backward many times.
 *
 * Use:
 *     lt_graph *g = lt_graph_create(LT_MODE_TRAIN, &rng);
 *     lt_tensor *x = lt_graph_input(g, "pixel_values", shape, 4, 0);
 *     lt_tensor *y = lt_relu(g, lt_conv2d(g, x, w, NULL, ...));   // builders from ops/ops.h
 *     lt_tensor *loss = lt_cross_entropy(g, y, labels, ...);
 *     lt_graph_keep(g, loss);
 *     if (lt_graph_plan(g, &err) != LT_OK) ...                   // the only allocation
 *     for each step: fill x->data; lt_graph_forward(g); lt_graph_backward(g, loss, NULL); optimizer...
 *
 * Builders never fail loudly: the first error (a shape mismatch, say) is stored in the graph, later builders
 * return a placeholder, and lt_graph_plan() reports it. So model code checks once, at the end.
 *
 * Memory: every non-parameter tensor and every gradient gets an interval on a timeline (forward node i runs
 * at time i, its backward at time 2N-1-i) and intervals that do not overlap share arena bytes. In training
 * mode a tensor lives until the last backward that may read it; in eval mode until its last forward reader.
 * All ops share one scratch buffer (im2col columns and the like) sized to the largest request.
 * Nothing is allocated by forward or backward. */
#ifndef LT_GRAPH_H
#define LT_GRAPH_H

#include "rng.h"
#include "status.h"
#include "tensor.h"

#include <stdint.h>

typedef enum {
    LT_MODE_TRAIN = 0, /* batch statistics, dropout active, activations kept for backward */
    LT_MODE_EVAL,      /* running statistics, no dropout, forward only (no backward) */
    LT_MODE_COUNT
} lt_mode;

#define LT_NODE_MAX_IN 8
#define LT_NODE_IP 16
#define LT_NODE_FP 4

typedef struct lt_graph lt_graph;
typedef struct lt_node lt_node;

/* What an op's forward/backward may use besides its node. */
typedef struct {
    float *scratch;        /* (scratch_numel) shared temporary space; contents undefined on entry */
    int64_t scratch_numel;
    lt_mode mode;
    lt_rng *rng;           /* dropout; owned by the caller of lt_graph_create */
} lt_exec;

/* An op's behaviour. forward computes node->out->data from its inputs. backward *adds* the gradients of
 * every input whose grad is non-NULL, from node->out->grad; it must not assume input grads are zero. */
typedef struct {
    const char *name;
    void (*forward)(lt_node *n, const lt_exec *x);
    void (*backward)(lt_node *n, const lt_exec *x); /* NULL: the op is not differentiable */
} lt_op;

struct lt_node {
    const lt_op *op;
    lt_tensor *in[LT_NODE_MAX_IN]; /* inputs; an optional input may be NULL */
    int n_in;
    lt_tensor *out;                /* the one output */
    int64_t ip[LT_NODE_IP];        /* integer parameters, meaning defined by the op */
    float fp[LT_NODE_FP];          /* float parameters, meaning defined by the op */
    void *aux;                     /* op-specific pointer (not owned), e.g. the BN running-stat tensors */
    float *saved;                  /* (saved_numel) planned per-node memory kept from forward to backward */
    int64_t saved_numel;           /* set by the builder; 4-byte slots, ops may store int32 in them */
    int64_t scratch_numel;         /* set by the builder: floats of lt_exec.scratch this op needs */
    uint32_t bw_skip_in;           /* bit i set: backward never reads in[i]->data (lets the planner free it) */
    int bw_skip_out;               /* 1: backward never reads out->data */
    int index;                     /* position in the graph */
};

/* Creates an empty graph. rng may be NULL when the graph has no random ops. Returns NULL on OOM. */
lt_graph *lt_graph_create(lt_mode mode, lt_rng *rng);
/* Frees the graph, its arena and the tensors it made; parameters are not touched. NULL is a no-op. */
void lt_graph_destroy(lt_graph *g);

lt_mode lt_graph_mode(const lt_graph *g);
/* The rng given to lt_graph_create (may be NULL); builders of random ops check it. */
lt_rng *lt_graph_rng(const lt_graph *g);
/* The first build error, or LT_OK; its message in err when non-NULL. */
lt_status lt_graph_status(const lt_graph *g, lt_err *err);

/* A tensor whose data the caller fills before each forward (images, labels). requires_grad asks for
 * its gradient too (used by tests). The data pointer is valid after planning and stays fixed. */
lt_tensor *lt_graph_input(lt_graph *g, const char *name, const int64_t *shape, int ndim, int requires_grad);

/* Makes t readable after forward (and after backward, for its grad): it is never reused. */
void lt_graph_keep(lt_graph *g, lt_tensor *t);

/* Plans and allocates the arena. After this no more nodes can be added. */
lt_status lt_graph_plan(lt_graph *g, lt_err *err);

/* Runs every node's forward in build order. */
void lt_graph_forward(lt_graph *g);

/* Runs every node's backward in reverse order, starting from root's gradient: root_grad (root->numel
 * floats) or ones when NULL. Gradients of parameters are *added* to (call lt_params_zero_grad once per
 * step); gradients of graph tensors are zeroed by the graph itself. Only valid in LT_MODE_TRAIN. */
void lt_graph_backward(lt_graph *g, lt_tensor *root, const float *root_grad);

/* Arena bytes (activations, gradients, saved buffers) and scratch bytes, after planning. */
/* Adds each node's wall time to node_seconds[i] (forward) and node_seconds[n_nodes + i] (backward, its
 * gradient zeroing included) on every later run; NULL stops it. For benchmarks: two clock reads a node. */
void lt_graph_time_nodes(lt_graph *g, double *node_seconds);
int64_t lt_graph_arena_bytes(const lt_graph *g);
int64_t lt_graph_scratch_bytes(const lt_graph *g);
int lt_graph_node_count(const lt_graph *g);
lt_node *lt_graph_node(lt_graph *g, int i);

/* ---- for op builders (the files in ops/) ---- */

/* Records a build error (only the first one is kept) and returns NULL. */
lt_tensor *lt_graph_fail(lt_graph *g, lt_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 1 when a previous builder failed or any of the n tensors is NULL (then records an error). */
int lt_graph_failed(lt_graph *g, lt_tensor *const *ts, int n);
/* A new graph-owned tensor of the given shape; requires_grad is set by lt_graph_add_node. */
lt_tensor *lt_graph_new_tensor(lt_graph *g, const int64_t *shape, int ndim);
/* A tensor sharing src's data and grad with another shape of the same numel (reshape). */
lt_tensor *lt_graph_view(lt_graph *g, lt_tensor *src, const int64_t *shape, int ndim);
/* Appends a node computing out = op(in[0..n_in-1]). out->requires_grad becomes 1 when any input requires
 * a gradient. Returns the node so the builder can set ip/fp/aux/saved_numel/scratch_numel, or NULL after
 * an earlier error. */
lt_node *lt_graph_add_node(lt_graph *g, const lt_op *op, lt_tensor *out, lt_tensor *const *in, int n_in);

#endif
