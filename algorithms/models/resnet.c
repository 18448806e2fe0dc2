#include "resnet.h"

#include "ops/conv2d.h"
#include "ops/ops.h"

#include <stdio.h>
#include <string.h>

lt_resnet_config lt_resnet50_config(int num_labels) {
    lt_resnet_config c = {0};
    c.num_channels = 3;
    c.embedding_size = 64;
    int hs[4] = {256, 512, 1024, 2048}, ds[4] = {3, 4, 6, 3};
    memcpy(c.hidden_sizes, hs, sizeof hs);
    memcpy(c.depths, ds, sizeof ds);
    c.n_stages = 4;
    c.layer_type = LT_RESNET_BOTTLENECK;
    c.num_labels = num_labels;
    return c;
}

lt_status lt_resnet_config_check(const lt_resnet_config *c, lt_err *err) {
    if (c->num_channels < 1 || c->num_channels > 16)
        return lt_errorf(err, LT_ERR_ARG, "num_channels must be in [1, 16], got %d", c->num_channels);
    if (c->embedding_size < 1) return lt_errorf(err, LT_ERR_ARG, "embedding_size must be >= 1");
    if (c->n_stages < 1 || c->n_stages > LT_RESNET_MAX_STAGES)
        return lt_errorf(err, LT_ERR_ARG, "hidden_sizes must have 1 to %d entries", LT_RESNET_MAX_STAGES);
    int blocks = 0;
    for (int s = 0; s < c->n_stages; s++) {
        if (c->depths[s] < 1) return lt_errorf(err, LT_ERR_ARG, "depths[%d] must be >= 1", s);
        if (c->hidden_sizes[s] < 4) return lt_errorf(err, LT_ERR_ARG, "hidden_sizes[%d] must be >= 4", s);
        blocks += c->depths[s];
    }
    if (blocks > LT_RESNET_MAX_BLOCKS) return lt_errorf(err, LT_ERR_ARG, "at most %d blocks in all", LT_RESNET_MAX_BLOCKS);
    if (c->layer_type < 0 || c->layer_type >= LT_RESNET_LAYER_TYPE_COUNT)
        return lt_errorf(err, LT_ERR_ARG, "layer_type must be \"bottleneck\" or \"basic\"");
    if (c->num_labels < 0) return lt_errorf(err, LT_ERR_ARG, "num_labels must be >= 0");
    return LT_OK;
}

static lt_status declare_convbn(lt_resnet_convbn *cb, lt_params *p, const char *prefix, int in, int out, int k,
                                int stride, lt_err *err) {
    char name[LT_NAME_MAX];
    int64_t wshape[4] = {out, in, k, k}, cshape[1] = {out};
    cb->kernel = k;
    cb->stride = stride;
    snprintf(name, sizeof name, "%s.convolution.weight", prefix);
    if (!(cb->weight = lt_params_add(p, name, wshape, 4, LT_PARAM_TRAINABLE, err))) return LT_ERR_ARG;
    snprintf(name, sizeof name, "%s.normalization.weight", prefix);
    if (!(cb->bn_weight = lt_params_add(p, name, cshape, 1, LT_PARAM_TRAINABLE, err))) return LT_ERR_ARG;
    snprintf(name, sizeof name, "%s.normalization.bias", prefix);
    if (!(cb->bn_bias = lt_params_add(p, name, cshape, 1, LT_PARAM_TRAINABLE, err))) return LT_ERR_ARG;
    snprintf(name, sizeof name, "%s.normalization.running_mean", prefix);
    if (!(cb->bn_mean = lt_params_add(p, name, cshape, 1, LT_PARAM_BUFFER, err))) return LT_ERR_ARG;
    snprintf(name, sizeof name, "%s.normalization.running_var", prefix);
    if (!(cb->bn_var = lt_params_add(p, name, cshape, 1, LT_PARAM_BUFFER, err))) return LT_ERR_ARG;
    cb->bn_bias->no_decay = 1; /* as the Trainer: biases and LayerNorm weights are not decayed, BN weights are */
    return LT_OK;
}

lt_status lt_resnet_declare(lt_resnet *m, const lt_resnet_config *cfg, lt_params *p, lt_err *err) {
    lt_status st = lt_resnet_config_check(cfg, err);
    if (st != LT_OK) return st;
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    if ((st = declare_convbn(&m->stem, p, "resnet.embedder.embedder", cfg->num_channels, cfg->embedding_size, 7, 2,
                             err)) != LT_OK)
        return st;
    int in = cfg->embedding_size;
    char prefix[LT_NAME_MAX];
    for (int s = 0; s < cfg->n_stages; s++) {
        int out = cfg->hidden_sizes[s];
        int stage_stride = s == 0 ? (cfg->downsample_in_first_stage ? 2 : 1) : 2;
        for (int l = 0; l < cfg->depths[s]; l++) {
            lt_resnet_block *b = &m->blocks[m->n_blocks++];
            int stride = l == 0 ? stage_stride : 1;
            int block_in = l == 0 ? in : out;
            b->has_shortcut = block_in != out || stride != 1;
            if (b->has_shortcut) {
                snprintf(prefix, sizeof prefix, "resnet.encoder.stages.%d.layers.%d.shortcut", s, l);
                if ((st = declare_convbn(&b->shortcut, p, prefix, block_in, out, 1, stride, err)) != LT_OK) return st;
            }
            if (cfg->layer_type == LT_RESNET_BOTTLENECK) {
                int mid = out / 4, s0 = cfg->downsample_in_bottleneck ? stride : 1;
                int ins[3] = {block_in, mid, mid}, outs[3] = {mid, mid, out}, ks[3] = {1, 3, 1};
                int strides[3] = {s0, cfg->downsample_in_bottleneck ? 1 : stride, 1};
                b->n_layers = 3;
                for (int k = 0; k < 3; k++) {
                    snprintf(prefix, sizeof prefix, "resnet.encoder.stages.%d.layers.%d.layer.%d", s, l, k);
                    if ((st = declare_convbn(&b->layer[k], p, prefix, ins[k], outs[k], ks[k], strides[k], err)) != LT_OK)
                        return st;
                }
            } else {
                b->n_layers = 2;
                for (int k = 0; k < 2; k++) {
                    snprintf(prefix, sizeof prefix, "resnet.encoder.stages.%d.layers.%d.layer.%d", s, l, k);
                    if ((st = declare_convbn(&b->layer[k], p, prefix, k ? out : block_in, out, 3, k ? 1 : stride,
                                             err)) != LT_OK)
                        return st;
                }
            }
        }
        m->stage_end[s] = m->n_blocks;
        in = out;
    }
    if (cfg->num_labels > 0) {
        int64_t wshape[2] = {cfg->num_labels, in}, bshape[1] = {cfg->num_labels};
        if (!(m->classifier_weight = lt_params_add(p, "classifier.1.weight", wshape, 2, LT_PARAM_TRAINABLE, err)))
            return LT_ERR_ARG;
        if (!(m->classifier_bias = lt_params_add(p, "classifier.1.bias", bshape, 1, LT_PARAM_TRAINABLE, err)))
            return LT_ERR_ARG;
        m->classifier_bias->no_decay = 1;
    }
    return LT_OK;
}

static void init_convbn(lt_resnet_convbn *cb, lt_rng *r) {
    lt_init_kaiming_normal_fan_out(cb->weight, r);
    lt_init_const(cb->bn_weight, 1.0f);
    lt_init_const(cb->bn_bias, 0.0f);
    lt_init_const(cb->bn_mean, 0.0f);
    lt_init_const(cb->bn_var, 1.0f);
}

void lt_resnet_init(lt_resnet *m, lt_rng *r) {
    init_convbn(&m->stem, r);
    for (int i = 0; i < m->n_blocks; i++) {
        lt_resnet_block *b = &m->blocks[i];
        if (b->has_shortcut) init_convbn(&b->shortcut, r);
        for (int k = 0; k < b->n_layers; k++) init_convbn(&b->layer[k], r);
    }
    lt_resnet_init_classifier(m, r);
}

void lt_resnet_init_classifier(lt_resnet *m, lt_rng *r) {
    if (m->classifier_weight) lt_init_default_linear(m->classifier_weight, m->classifier_bias, r);
}

/* relu?(bn(conv(x)) + res?). An inference graph with running statistics runs it as one fused node (the
 * batch norm, residual add and ReLU in the convolution's output pass); otherwise as a convolution and one
 * fused batch-norm node. */
static lt_tensor *convbn(lt_graph *g, const lt_resnet_convbn *cb, lt_tensor *x, int bn_mode, lt_tensor *res,
                         int relu) {
    lt_conv2d_cfg c = {cb->stride, cb->stride, cb->kernel / 2, cb->kernel / 2, 1, 1, 1};
    if (lt_graph_mode(g) == LT_MODE_EVAL && bn_mode != LT_BN_TRAIN)
        return lt_conv2d_bn_eval(g, x, cb->weight, c, cb->bn_weight, cb->bn_bias, cb->bn_mean, cb->bn_var,
                                 (lt_bn_mode)bn_mode, 1e-5f, res, relu);
    lt_tensor *y = lt_conv2d(g, x, cb->weight, NULL, c);
    return lt_batchnorm2d_fused(g, y, cb->bn_weight, cb->bn_bias, cb->bn_mean, cb->bn_var, (lt_bn_mode)bn_mode, 0.1f,
                                1e-5f, res, relu);
}

lt_tensor *lt_resnet_forward(lt_resnet *m, lt_graph *g, lt_tensor *pixels, int bn_mode, lt_tensor **stage_out) {
    if (pixels && (pixels->ndim != 4 || pixels->shape[1] != m->cfg.num_channels))
        return lt_graph_fail(g, LT_ERR_SHAPE, "resnet: expected pixel values (N, %d, H, W)", m->cfg.num_channels);
    lt_tensor *x = convbn(g, &m->stem, pixels, bn_mode, NULL, 1);
    x = lt_maxpool2d(g, x, 3, 3, 2, 2, 1, 1);
    int stage = 0;
    for (int i = 0; i < m->n_blocks; i++) {
        lt_resnet_block *b = &m->blocks[i];
        lt_tensor *residual = b->has_shortcut ? convbn(g, &b->shortcut, x, bn_mode, NULL, 0) : x;
        lt_tensor *h = x;
        for (int k = 0; k < b->n_layers; k++) {
            int last = k == b->n_layers - 1;
            h = convbn(g, &b->layer[k], h, bn_mode, last ? residual : NULL, 1);
        }
        x = h;
        if (i + 1 == m->stage_end[stage]) {
            if (stage_out) stage_out[stage] = x;
            stage++;
        }
    }
    x = lt_adaptive_avgpool2d(g, x, 1, 1);
    x = lt_flatten(g, x, 1, -1);
    if (!m->classifier_weight) return x;
    return lt_linear(g, x, m->classifier_weight, m->classifier_bias);
}
