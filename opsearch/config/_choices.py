"""The vocabularies settings choose from, each named once: the config validates against them, and the stages
that act on a choice (the quantizer, the timer, the sampler) read them from here."""

from __future__ import annotations

TASKS = ("auto", "classification", "embedding")
MODES = ("dynamic", "static")
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
