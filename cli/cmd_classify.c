/* cmd_classify.c - `lathe train`, `lathe evaluate`, `lathe predict`. */
#include "commands.h"

#include "io/image.h"
#include "tasks/cls_model.h"
#include "tasks/cls_train.h"
#include "tasks/hparams.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char train_help[] =
    "usage: lathe train --algorithm image-classification --dataset PATH --output PATH\n"
    "                   [--hp NAME=VALUE ...] [--pretrained PATH] [--resume] [--seed N]\n"
    "                   [--checkpoint-steps N] [--max-steps N] [--quiet]\n"
    "\n"
    "Trains a model on a data set folder laid out as the algorithms guide says and writes a Hugging Face model\n"
    "directory, metrics.json, trainer_state.json, tensorboard/ and checkpoints/ into the output folder.\n"
    "\n"
    "  --algorithm NAME      image-classification (semantic-segmentation and object-detection: not yet)\n"
    "  --dataset PATH        data set folder (train/, validation/, optional test/)\n"
    "  --output PATH         output folder (created)\n"
    "  --hp NAME=VALUE       a hyperparameter; repeat for several. image-classification's:\n"
    "                          input_size (int, 28, >= 4), learning_rate (float, 0.1, >= 0),\n"
    "                          per_device_train_batch_size (int, 16, >= 2), per_device_eval_batch_size (int, 16, >= 1),\n"
    "                          num_train_epochs (int, 3, >= 1), logging_steps (int, 500, >= 500)\n"
    "  --pretrained PATH     start from a transformers ResNet directory (e.g. a copy of microsoft/resnet-50)\n"
    "  --resume              continue from the output folder's latest checkpoint\n"
    "  --seed N              weight initialization and data order (default 42)\n"
    "  --checkpoint-steps N  also checkpoint every N steps (default: at each epoch end)\n"
    "  --max-steps N         stop after N steps in all (for smoke tests)\n"
    "  --quiet               no progress output\n";

int cmd_train(int argc, char **argv) {
    static const struct option opts[] = {{"algorithm", required_argument, 0, 'a'},
                                         {"dataset", required_argument, 0, 'd'},
                                         {"output", required_argument, 0, 'o'},
                                         {"hp", required_argument, 0, 'H'},
                                         {"pretrained", required_argument, 0, 'p'},
                                         {"resume", no_argument, 0, 'r'},
                                         {"seed", required_argument, 0, 's'},
                                         {"checkpoint-steps", required_argument, 0, 'c'},
                                         {"max-steps", required_argument, 0, 'm'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    lt_cls_train_opts o = {0};
    o.seed = 42;
    const char *algorithm = NULL;
    char *hps[64];
    int n_hp = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'a': algorithm = optarg; break;
        case 'd': o.dataset = optarg; break;
        case 'o': o.output = optarg; break;
        case 'H':
            if (n_hp == 64) return cli_usage_error("train", "too many --hp options");
            hps[n_hp++] = optarg;
            break;
        case 'p': o.pretrained = optarg; break;
        case 'r': o.resume = 1; break;
        case 's': o.seed = strtoull(optarg, NULL, 10); break;
        case 'c': o.checkpoint_steps = atoll(optarg); break;
        case 'm': o.max_steps = atoll(optarg); break;
        case 'q': o.quiet = 1; break;
        case 'h': fputs(train_help, stdout); return 0;
        default: return cli_usage_error("train", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("train", "unexpected argument '%s'", argv[optind]);
    if (!algorithm) return cli_usage_error("train", "--algorithm is required");
    if (!o.dataset) return cli_usage_error("train", "--dataset is required");
    if (!o.output) return cli_usage_error("train", "--output is required");
    lt_err err = {{0}};
    lt_algorithm algo;
    if (lt_algorithm_parse(algorithm, &algo, &err) != LT_OK) return cli_fail("train", err.msg);
    if (algo != LT_ALGO_IMAGE_CLASSIFICATION)
        return cli_fail("train", "only image-classification can be trained so far (segmentation and detection are "
                                 "not built yet)");
    lt_hparams_defaults(&o.hp, algo);
    for (int i = 0; i < n_hp; i++)
        if (lt_hparams_set_assignment(&o.hp, hps[i], &err) != LT_OK) return cli_fail("train", err.msg);
    cJSON *metrics = NULL;
    if (lt_cls_train(&o, &metrics, &err) != LT_OK) return cli_fail("train", err.msg);
    const cJSON *test = cJSON_GetObjectItem(metrics, "test"), *val = cJSON_GetObjectItem(metrics, "validation");
    const cJSON *shown = test ? test : val;
    if (!o.quiet)
        fprintf(stderr, "done: %s accuracy %.4f, f1 %.4f; model in %s\n", test ? "test" : "validation",
                cJSON_GetNumberValue(cJSON_GetObjectItem(shown, "accuracy")),
                cJSON_GetNumberValue(cJSON_GetObjectItem(shown, "f1")), o.output);
    cJSON_Delete(metrics);
    return 0;
}

static const char evaluate_help[] =
    "usage: lathe evaluate --model PATH --dataset PATH [--split test|validation] [--batch-size N]\n"
    "\n"
    "Prints one JSON object: accuracy, precision, recall, f1 (macro), loss, per_class and confusion_matrix.\n"
    "The split defaults to test.\n";

int cmd_evaluate(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'},   {"dataset", required_argument, 0, 'd'},
                                         {"split", required_argument, 0, 's'},   {"batch-size", required_argument, 0, 'b'},
                                         {"help", no_argument, 0, 'h'},          {0, 0, 0, 0}};
    const char *model = NULL, *dataset = NULL, *split = "test";
    int batch = 16, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'd': dataset = optarg; break;
        case 's': split = optarg; break;
        case 'b': batch = atoi(optarg); break;
        case 'h': fputs(evaluate_help, stdout); return 0;
        default: return cli_usage_error("evaluate", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("evaluate", "unexpected argument '%s'", argv[optind]);
    if (!model || !dataset) return cli_usage_error("evaluate", "--model and --dataset are required");
    if (batch < 1) return cli_usage_error("evaluate", "--batch-size must be >= 1");
    lt_err err = {{0}};
    cJSON *metrics = NULL;
    if (lt_cls_evaluate(model, dataset, split, batch, &metrics, &err) != LT_OK) return cli_fail("evaluate", err.msg);
    char *s = cJSON_PrintUnformatted(metrics);
    puts(s);
    free(s);
    cJSON_Delete(metrics);
    return 0;
}

static const char predict_help[] =
    "usage: lathe predict --model PATH IMAGE ...\n"
    "\n"
    "Prints one line of JSON per image, in order: the guide's classification response, a list of\n"
    "{\"score\", \"label\"} over every label, softmax scores, highest first. The model is a lathe output folder\n"
    "or any transformers ResNetForImageClassification directory.\n";

int cmd_predict(int argc, char **argv) {
    static const struct option opts[] = {{"model", required_argument, 0, 'm'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    const char *model = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case 'h': fputs(predict_help, stdout); return 0;
        default: return cli_usage_error("predict", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (!model) return cli_usage_error("predict", "--model is required");
    if (optind >= argc) return cli_usage_error("predict", "no image given");
    lt_err err = {{0}};
    lt_cls_model m;
    if (lt_cls_model_load(&m, model, NULL, 0, 0, 42, NULL, &err) != LT_OK) return cli_fail("predict", err.msg);
    float *probs = malloc((size_t)m.n_labels * sizeof *probs);
    int rc = probs ? 0 : cli_fail("predict", "out of memory");
    for (int i = optind; i < argc && rc == 0; i++) {
        lt_image img = {0};
        if (lt_image_load(argv[i], NULL, &img, &err) != LT_OK || lt_cls_model_predict(&m, &img, probs, &err) != LT_OK) {
            rc = cli_fail("predict", err.msg);
        } else {
            cJSON *j = lt_cls_prediction_json(&m, probs);
            char *s = cJSON_PrintUnformatted(j);
            puts(s);
            free(s);
            cJSON_Delete(j);
        }
        lt_image_free(&img);
    }
    free(probs);
    lt_cls_model_free(&m);
    return rc;
}
