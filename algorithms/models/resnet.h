/* resnet.h - ResNet (Hugging Face's ResNetForImageClassification layout) on the lathe graph.
 *
 * Parameter names are exactly transformers' state-dict names, e.g.
 *   resnet.embedder.embedder.convolution.weight                     (64, 3, 7, 7)
 *   resnet.encoder.stages.0.layers.0.shortcut.convolution.weight    (256, 64, 1, 1)
 *   resnet.encoder.stages.0.layers.0.layer.1.normalization.running_mean (64)
 *   classifier.1.weight                                             (num_labels, 2048)
 * so a model loads from and saves to a transformers model directory unchanged. ResNet v1.5: the stride
 * of a downsampling bottleneck sits on its 3x3 convolution unless downsample_in_bottleneck is set. */
#ifndef LT_RESNET_H
#define LT_RESNET_H

#include "core/graph.h"
#include "core/params.h"

#define LT_RESNET_MAX_STAGES 4
#define LT_RESNET_MAX_BLOCKS 64

typedef enum { LT_RESNET_BOTTLENECK = 0, LT_RESNET_BASIC, LT_RESNET_LAYER_TYPE_COUNT } lt_resnet_layer_type;

typedef struct {
    int num_channels;                          /* input channels, 3 */
    int embedding_size;                        /* stem width, 64 */
    int hidden_sizes[LT_RESNET_MAX_STAGES];    /* stage output widths, (256, 512, 1024, 2048) */
    int depths[LT_RESNET_MAX_STAGES];          /* blocks per stage, (3, 4, 6, 3) */
    int n_stages;
    lt_resnet_layer_type layer_type;
    int downsample_in_first_stage;             /* stride 2 in stage 0 (0 for ResNet-50) */
    int downsample_in_bottleneck;              /* stride on the first 1x1 instead of the 3x3 */
    int num_labels;                            /* classifier outputs; 0 = no classifier head */
} lt_resnet_config;

/* A convolution (no bias) followed by batch norm, as transformers' ResNetConvLayer / ResNetShortCut. */
typedef struct {
    lt_tensor *weight;                         /* (out, in, k, k) */
    lt_tensor *bn_weight, *bn_bias;            /* (out) */
    lt_tensor *bn_mean, *bn_var;               /* (out) running statistics (buffers) */
    int stride, kernel;
} lt_resnet_convbn;

typedef struct {
    lt_resnet_convbn layer[3];                 /* bottleneck: 1x1, 3x3, 1x1; basic: 3x3, 3x3 */
    lt_resnet_convbn shortcut;                 /* valid when has_shortcut */
    int has_shortcut, n_layers;
} lt_resnet_block;

typedef struct {
    lt_resnet_config cfg;
    lt_resnet_convbn stem;
    lt_resnet_block blocks[LT_RESNET_MAX_BLOCKS];
    int n_blocks;
    int stage_end[LT_RESNET_MAX_STAGES];       /* index one past each stage's last block */
    lt_tensor *classifier_weight;              /* (num_labels, hidden_sizes[last]) or NULL */
    lt_tensor *classifier_bias;                /* (num_labels) or NULL */
} lt_resnet;

/* microsoft/resnet-50's architecture with num_labels outputs. */
lt_resnet_config lt_resnet50_config(int num_labels);

/* Checks a configuration (from a user's config.json); LT_ERR_ARG naming the field otherwise. */
lt_status lt_resnet_config_check(const lt_resnet_config *cfg, lt_err *err);

/* Declares every parameter and buffer in p under its transformers name (prefix "resnet." for the
 * backbone; pass prefix "" to declare a bare backbone). p must not be allocated yet. */
lt_status lt_resnet_declare(lt_resnet *m, const lt_resnet_config *cfg, lt_params *p, lt_err *err);

/* transformers' ResNetPreTrainedModel init: kaiming_normal(fan_out, relu) convolutions, BN weight 1 bias 0,
 * running mean 0 var 1, the classifier as nn.Linear's default. Call after lt_params_alloc. */
void lt_resnet_init(lt_resnet *m, lt_rng *r);
/* Re-initializes only the classifier (used when a pretrained head has another label count). */
void lt_resnet_init_classifier(lt_resnet *m, lt_rng *r);

/* Builds the forward pass. pixels (N, num_channels, H, W). bn_mode selects batch or running statistics.
 * Returns logits (N, num_labels), or the pooled features (N, C) when there is no classifier;
 * stage_out (optional, n_stages entries) receives each stage's output feature map. */
lt_tensor *lt_resnet_forward(lt_resnet *m, lt_graph *g, lt_tensor *pixels, int bn_mode, lt_tensor **stage_out);

#endif
