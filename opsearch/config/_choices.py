"""The vocabularies settings choose from, each named once: the config validates against them, and the stages
that act on a choice (the quantizer, the timer, the sampler) read them from here."""

from __future__ import annotations

TASKS = ("auto", "classification", "regression", "multi-label", "token-classification", "question-answering",
         "embedding")
# What a study judges a model by (opsearch.measure's metrics); auto: accuracy for classes, Spearman for a regressor.
# A tagger: entity_f1 (seqeval's entity-level micro F1) or accuracy (of word tags); extractive QA: SQuAD's.
METRICS = ("auto", "accuracy", "f1_macro", "f1_micro", "f1_weighted", "mcc", "spearman", "pearson", "entity_f1",
           "exact_match", "squad_f1")
DEFAULT_METRICS = {"classification": "accuracy", "embedding": "accuracy", "regression": "spearman",
                   "multi-label": "f1_micro", "token-classification": "entity_f1",
                   "question-answering": "squad_f1"}
# How reports name each metric.
METRIC_TITLES = {"accuracy": "accuracy", "f1_macro": "macro F1", "f1_micro": "micro F1", "f1_weighted": "weighted F1",
                 "mcc": "MCC", "spearman": "Spearman", "pearson": "Pearson", "entity_f1": "entity F1",
                 "exact_match": "exact match", "squad_f1": "SQuAD F1"}
# weight_only: ONNX Runtime's MatMulNBits (4- or 8-bit weights in blocks, float activations) and 4-bit embeddings
# (GatherBlockQuantized), through onnxruntime.quantization.matmul_nbits_quantizer.
# mixed: a precision per group of layers and roles (opsearch.quantize's groups), static and dynamic in one model
MODES = ("dynamic", "static", "weight_only", "mixed")
CALIBRATED_MODES = ("static", "mixed")  # the modes that calibrate activation ranges on fit rows
# weight_only's choices: bits per weight, weights per block (one scale each), and MatMulNBits' accuracy_level
# (0: float compute; 4: int8 compute where the CPU has a kernel). Embeddings are quantized to 4 bits.
WEIGHT_BITS = (4, 8)
BLOCK_SIZES = (32, 128)
ACCURACY_LEVELS = (0, 4)
# mixed's precisions per group (fp32: left alone), and how many of the first/last layers, and of the groups the
# sensitivity pass ranks worst, it can keep fp32 whole.
MIXED_PRECISIONS = ("fp32", "dynamic", "static")
FP32_ENDS = (0, 1, 2)
FP32_TOP = (0, 1, 2, 4)
# What a study can optimize: throughput (maximized), accuracy loss, the model file's size and the 50th/95th/99th
# percentile latency of single calls (minimized). Any two or more, in any order (opsearch.store.OBJECTIVES).
OBJECTIVES = ("throughput", "accuracy_loss", "size", "p50", "p95", "p99")
# "none" is the exported graph. O1: basic general optimizations; O2: plus the transformer-specific fusions
# (Attention, SkipLayerNormalization, BiasGelu); O3: plus the GELU approximation. O4 (fp16) is for GPUs.
FUSIONS = ("none", "O1", "O2", "O3")
FORMATS = ("QOperator", "QDQ")
WEIGHT_TYPES = ("QInt8", "QUInt8")
ACTIVATION_TYPES = ("QUInt8", "QInt8")
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
SAMPLERS = ("tpe", "nsga2", "random")
ENUMERATE = ("auto", "on", "off")
# How a speedup is estimated from paired rounds (see opsearch.measure's timing).
ESTIMATORS = ("floor", "median")
ISOLATION = ("process", "none")
EXCLUDE_FRAGILE = (True, False, "search")
# What the Pareto plot's axes can show: a speed (or a cost) on y, a cost on x (opsearch plot --y, --x).
PLOT_Y_AXES = ("speedup", "throughput", "size", "p50", "p95", "p99")
PLOT_X_AXES = ("accuracy_loss", "size", "p50", "p95", "p99")
