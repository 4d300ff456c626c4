"""The search space: one boolean per operator type the graph variant can quantize, plus the quantization flags.

A variant is (fusion level, mode, static format): each has its own operator set, read from ONNX Runtime's
registries on that graph (a fused graph offers Attention, the exported one does not). Parameters are
flat scalars asked conditionally, in this order: ``fusion``, ``mode``, ``format`` (static), ``op_<Type>``
for the variant's operators, ``matmul_weights_only`` (MatMul chosen, on a graph with MatMuls of both kinds),
``smooth_<role>`` for each smoothable role (a projection chosen, smoothing searched: quantize._smooth), then the
flags. An operator parameter has the same name and choices in every variant that offers it, so
TPE, random and NSGA-II samplers all cope; a combination the quantizer would ignore is never asked. A fused
graph with no operator chosen is a candidate (fusion alone); the exported graph with none is the fp32 model and
not a recipe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import optuna

from opsearch.config import (
    ACCURACY_LEVELS,
    BLOCK_SIZES,
    FP32_ENDS,
    FP32_TOP,
    MIXED_PRECISIONS,
    WEIGHT_BITS,
    WEIGHT_TYPES,
)
from opsearch.quantize import SMOOTH_ROLES, SMOOTHED_OPS, GraphGroups, GraphInfo, QuantRecipe, plan, precisions_for
from opsearch.search._space_size import space_size

# The registry whose operators each (mode, format) offers.
_REGISTRY = {("dynamic", "QOperator"): "dynamic", ("static", "QOperator"): "static_qoperator",
             ("static", "QDQ"): "static_qdq", ("weight_only", "QOperator"): "weight_only"}

Ask = Callable[[str, Sequence], object]


def variant_key(fusion: str, mode: str, fmt: str = "QOperator") -> str:
    """"dynamic", "static", "static/QDQ", "dynamic/O2", ...: the exported graph's keys are the bare modes."""
    parts = [mode]
    if mode == "static" and fmt == "QDQ":
        parts.append("QDQ")
    if fusion != "none":
        parts.append(fusion)
    return "/".join(parts)


def _split_key(key: str) -> tuple[str, str, str]:
    parts = key.split("/")
    fmt = "QDQ" if "QDQ" in parts[1:] else "QOperator"
    fusion = next((p for p in parts[1:] if p != "QDQ"), "none")
    return fusion, parts[0], fmt


def _tuple(value) -> tuple:
    return tuple(value) if isinstance(value, list | tuple) else (value,)


@dataclass(frozen=True)
class SearchSpace:
    operators: dict[str, tuple[str, ...]]  # variant key -> operator types offered
    calibration_method: tuple[str, ...] | str = ("minmax",)  # static: searched when more than one
    calibration_samples: tuple[int, ...] | int = (64,)
    formats: tuple[str, ...] = ("QOperator",)  # static formats searched
    activation_types: tuple[str, ...] = ("QUInt8",)  # static activation types searched (QInt8 with QInt8 weights)
    exclude_fragile: tuple[bool, ...] = (False,)  # static: keep the fragile nodes in fp32, or search it
    fusions: tuple[str, ...] = field(default=())  # () : the fusion levels the variants hold
    # mixed: each fusion level's groups (quantize.find_groups), and each group's int8 error quantized alone
    # ({key: {"dynamic": e, "static": e}}, from the study's ranges pass) that ranks the groups kept fp32.
    groups: dict[str, GraphGroups] = field(default_factory=dict)
    sensitivity: dict[str, dict[str, float]] = field(default_factory=dict)
    # The fusion levels whose graph holds MatMuls with a constant weight and MatMuls of two activations: there a
    # dynamic (exported graph) or static recipe that quantizes MatMul chooses ``matmul_weights_only``. () : nowhere.
    matmul_weights_only: tuple[str, ...] = ()
    # The smoothing strengths searched for each role of SMOOTH_ROLES beside none (0.0); () : smoothing not searched.
    smoothing: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for name in ("calibration_method", "calibration_samples", "formats", "activation_types",
                     "exclude_fragile", "fusions", "matmul_weights_only", "smoothing"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        object.__setattr__(self, "operators", {k: tuple(v) for k, v in self.operators.items()})
        if not self.fusions:
            levels = dict.fromkeys(_split_key(k)[0] for k in self.operators)
            object.__setattr__(self, "fusions", tuple(levels))

    @classmethod
    def from_graph(cls, graph: GraphInfo, *, modes: list[str], all_operators: bool = False,
                   calibration_method: str | Sequence[str] = "minmax",
                   calibration_samples: int | Sequence[int] = 64, fusions: Sequence[str] = ("none",),
                   fused: Mapping[str, GraphInfo] | None = None, formats: Sequence[str] = ("QOperator",),
                   activation_types: Sequence[str] = ("QUInt8",),
                   exclude_fragile: bool | Sequence[bool] = False,
                   groups: Mapping[str, GraphGroups] | None = None,
                   sensitivity: Mapping[str, dict[str, float]] | None = None,
                   matmul_weights_only: bool = True, smoothing: Sequence[float] = ()) -> SearchSpace:
        """``all_operators`` offers every type in the graph, quantizable or not, to show which change nothing.

        ``fused`` holds the fused graphs' inspections, one per level of ``fusions`` other than "none"; ``groups``
        each level's groups, needed by the mixed mode. ``matmul_weights_only`` offers that choice on each level
        whose graph has MatMuls of both kinds (False: on none, as studies made before it). ``smoothing``: the
        strengths each role's smoothing is searched at (quantize._smooth), beside none.
        """
        graphs = {"none": graph, **(fused or {})}
        missing = [level for level in fusions if level not in graphs]
        if missing:
            raise ValueError(f"no inspected graph for fusion level(s) {missing}")
        operators = {}
        groups = dict(groups or {})
        if "mixed" in modes and any(level not in groups for level in fusions):
            raise ValueError("the mixed mode needs each fusion level's groups (quantize.find_groups)")
        for level in fusions:
            for mode in modes:
                if mode == "mixed":
                    operators[variant_key(level, mode)] = tuple(sorted({t for g in groups[level].groups
                                                                         for t in g.op_types}))
                    continue
                for fmt in (formats if mode == "static" else ("QOperator",)):
                    g = graphs[level]
                    operators[variant_key(level, mode, fmt)] = tuple(
                        g.op_types() if all_operators else g.quantizable_in(_REGISTRY[mode, fmt]))
        # Where the choice gives another graph: a static recipe, or a dynamic one of the exported graph (a fused
        # dynamic recipe always leaves activation MatMuls fp32, see QuantRecipe.matmul_weights_only).
        weights_only = tuple(level for level in fusions if matmul_weights_only and graphs[level].mixes_matmuls
                             and ("static" in modes or ("dynamic" in modes and level == "none")))
        return cls(operators, calibration_method, calibration_samples, tuple(formats), tuple(activation_types),
                   _tuple(exclude_fragile), tuple(fusions),
                   {level: groups[level] for level in fusions if level in groups} if "mixed" in modes else {},
                   dict(sensitivity or {}) if "mixed" in modes else {}, weights_only,
                   tuple(float(a) for a in smoothing))

    def precisions(self) -> tuple[str, ...]:
        """The precisions mixed mode asks of every role (static only when the study searches static mode)."""
        return tuple(p for p in MIXED_PRECISIONS if p != "static" or "static" in self.modes)

    def roles(self, fusion: str) -> dict[str, tuple[str, ...]]:
        """Mixed mode on ``fusion``'s graph: each role and the precisions every group of that role can take."""
        out: dict[str, tuple[str, ...]] = {}
        for g in self.groups[fusion].groups:
            allowed = tuple(p for p in precisions_for(g) if p in self.precisions())
            out[g.role] = tuple(p for p in out.get(g.role, allowed) if p in allowed)
        return {role: choices for role, choices in out.items() if len(choices) > 1}

    @property
    def modes(self) -> list[str]:
        return list(dict.fromkeys(_split_key(k)[1] for k in self.operators))

    def _formats_of(self, fusion: str, mode: str) -> list[str]:
        return [fmt for fmt in dict.fromkeys(_split_key(k)[2] for k in self.operators)
                if (mode == "static" or fmt == "QOperator") and variant_key(fusion, mode, fmt) in self.operators]

    def static_variants(self) -> dict[str, tuple[str, ...]]:
        """"<fusion>|<format>" -> the operator types a static recipe may quantize there (every static variant)."""
        return {f"{fusion}|{fmt}": self.operators_for(fusion, "static", fmt) for fusion in self.fusions
                for fmt in self._formats_of(fusion, "static") if self.operators_for(fusion, "static", fmt)}

    def operators_for(self, fusion: str, mode: str, fmt: str = "QOperator") -> tuple[str, ...]:
        return self.operators.get(variant_key(fusion, mode, fmt), ())

    def asks_weights_only(self, fusion: str, mode: str, operators: Sequence[str]) -> bool:
        """Whether a recipe quantizing ``operators`` on this variant chooses ``matmul_weights_only`` (a choice that
        changes nothing is never asked: a fused dynamic recipe, or a graph whose MatMuls are all of one kind).
        The mixed mode sets the attention MatMuls' precision by role (``mixed_scores``, ``mixed_context``)."""
        return ("MatMul" in operators and fusion in self.matmul_weights_only
                and (mode == "static" or (mode == "dynamic" and fusion == "none")))

    def asks_smoothing(self, operators: Sequence[str]) -> bool:
        """Whether a dynamic or static recipe quantizing ``operators`` chooses smoothing (it quantizes a projection)."""
        return bool(self.smoothing) and bool(set(operators) & SMOOTHED_OPS)

    def _smoothing(self, ask: Ask, roles: Sequence[str]) -> tuple[tuple[str, float], ...]:
        """Each of ``roles``' smoothing strength (0.0: none), asked in SMOOTH_ROLES' order."""
        chosen = ((role, ask(f"smooth_{role}", [0.0, *self.smoothing])) for role in SMOOTH_ROLES if role in roles)
        return tuple((role, alpha) for role, alpha in chosen if alpha)

    # Sampling --------------------------------------------------------------------------------------------

    def suggest(self, trial: optuna.Trial) -> QuantRecipe:
        return self._build(trial.suggest_categorical)

    def _build(self, ask: Ask) -> QuantRecipe:
        """The one walk through the space: ``suggest``, ``enumerate_params`` and ``params_for`` all replay it."""
        def pick(name: str, choices: Sequence):
            choices = list(choices)
            return ask(name, choices) if len(choices) > 1 else choices[0]

        fusion = pick("fusion", self.fusions)
        mode = pick("mode", [m for m in self.modes if self._formats_of(fusion, m)])
        static = mode == "static"
        fmt = pick("format", self._formats_of(fusion, mode)) if static else "QOperator"
        if mode == "mixed":
            return self._build_mixed(fusion, ask, pick)
        chosen = tuple(op for op in self.operators_for(fusion, mode, fmt) if ask(f"op_{op}", [False, True]))
        if not chosen:  # fusion alone (or the fp32 model): no quantization flag changes the graph
            return QuantRecipe(mode=mode, operators_to_quantize=(), fusion=fusion, format=fmt)
        if mode == "weight_only":  # bits and accuracy_level are MatMulNBits' own: embeddings are 4-bit
            matmul = "MatMul" in chosen
            return QuantRecipe(mode=mode, operators_to_quantize=chosen, fusion=fusion,
                               weight_bits=ask("weight_bits", list(WEIGHT_BITS)) if matmul else WEIGHT_BITS[0],
                               block_size=ask("block_size", list(BLOCK_SIZES)),
                               weights_symmetric=ask("weights_symmetric", [False, True]),
                               accuracy_level=ask("accuracy_level", list(ACCURACY_LEVELS)) if matmul
                               else ACCURACY_LEVELS[0])
        weights_only = self.asks_weights_only(fusion, mode, chosen) and ask("matmul_weights_only", [False, True])
        smoothing = self._smoothing(ask, SMOOTH_ROLES) if self.asks_smoothing(chosen) else ()
        per_channel = ask("per_channel", [False, True])
        reduce_range = ask("reduce_range", [False, True])
        weights_symmetric = ask("weights_symmetric", [False, True])
        activations_symmetric = ask("activations_symmetric", [False, True]) if static else False
        weights_dtype = ask("weights_dtype", list(WEIGHT_TYPES))
        activations_dtype = "QUInt8"
        if static and weights_dtype == "QInt8":  # ONNX Runtime has no s8 activations with u8 weights
            activations_dtype = pick("activations_dtype", self.activation_types)
        return QuantRecipe(
            mode=mode,
            operators_to_quantize=chosen,
            per_channel=per_channel,
            reduce_range=reduce_range,
            weights_symmetric=weights_symmetric,
            activations_symmetric=activations_symmetric,
            weights_dtype=weights_dtype,
            format=fmt,
            calibration_method=pick("calibration_method", self.calibration_method) if static
            else self.calibration_method[0],
            calibration_samples=pick("calibration_samples", self.calibration_samples) if static
            else self.calibration_samples[0],
            fusion=fusion,
            activations_dtype=activations_dtype,
            exclude_fragile=pick("exclude_fragile", self.exclude_fragile) if static else False,
            matmul_weights_only=weights_only,
            smoothing=smoothing,
        )

    def _build_mixed(self, fusion: str, ask: Ask, pick) -> QuantRecipe:
        """A precision per role, how many first and last layers stay fp32, how many of the groups the ranges pass
        ranks worst stay fp32, then the flags of the quantizers the precisions call for."""
        graph = self.groups[fusion]
        # Every parameter keeps one set of choices in every variant (Optuna's distributions cannot change): a
        # precision a role cannot take on this graph (static for a fused Attention) falls back to dynamic.
        by_role = {role: ask(f"mixed_{role}", list(self.precisions())) for role in self.roles(fusion)}
        by_role = {role: p if p in self.roles(fusion)[role] else "dynamic" for role, p in by_role.items()}
        precisions = tuple((role, p) for role, p in by_role.items() if p != "fp32")
        ends = [n for n in FP32_ENDS if 2 * n < graph.layers] or [0]
        first = pick("fp32_first", ends) if precisions else 0
        last = pick("fp32_last", ends) if precisions else 0
        draft = QuantRecipe(mode="mixed", operators_to_quantize=(), precisions=precisions, fp32_first=first,
                            fp32_last=last)
        assigned = {k: p for k, p in plan(draft, graph).items() if p != "fp32"}
        if not assigned:  # nothing left to quantize: the fp32 model (or the fused graph alone)
            return QuantRecipe(mode="mixed", operators_to_quantize=(), fusion=fusion)
        ranked = sorted((k for k in assigned if assigned[k] in self.sensitivity.get(k, {})),
                        key=lambda k: -self.sensitivity[k][assigned[k]])
        top = pick("fp32_top", list(FP32_TOP) if self.sensitivity else [0])
        kept = tuple(ranked[:min(top, len(assigned) - 1)])  # at least one group stays quantized
        groups = graph.by_key()
        ops = tuple(sorted({t for k in assigned if k not in kept for t in groups[k].op_types}))
        smoothing = self._smoothing(ask, [role for role, _ in precisions]) if self.smoothing else ()
        static = any(p == "static" for k, p in assigned.items() if k not in kept)
        per_channel = ask("per_channel", [False, True])
        reduce_range = ask("reduce_range", [False, True])
        weights_dtype = ask("weights_dtype", list(WEIGHT_TYPES))
        flags = {}
        if static:
            flags = {"activations_symmetric": ask("activations_symmetric", [False, True]),
                     "float_output": ask("float_output", [False, True]),
                     "calibration_method": pick("calibration_method", self.calibration_method),
                     "calibration_samples": pick("calibration_samples", self.calibration_samples)}
            if weights_dtype == "QInt8":
                flags["activations_dtype"] = pick("activations_dtype", self.activation_types)
        else:
            flags = {"calibration_method": self.calibration_method[0],
                     "calibration_samples": self.calibration_samples[0]}
        return QuantRecipe(mode="mixed", operators_to_quantize=ops, fusion=fusion, precisions=precisions,
                           fp32_first=first, fp32_last=last, fp32_groups=kept, per_channel=per_channel,
                           reduce_range=reduce_range, weights_dtype=weights_dtype, smoothing=smoothing, **flags)

    def recipe_for(self, params: dict) -> QuantRecipe:
        """The recipe these (complete) parameters make, as ``suggest`` would build it."""
        return self._build(lambda name, choices: params[name])

    def complete(self, params: dict) -> dict:
        """``params`` with every other parameter the walk asks set to its first choice (False before True)."""
        out: dict = {}

        def ask(name: str, choices: Sequence):
            out[name] = params[name] if name in params and params[name] in choices else list(choices)[0]
            return out[name]

        self._build(ask)
        return out

    def enumerate_params(self) -> Iterator[dict]:
        """Every recipe of the space as Optuna parameters, each once (the fp32 model and repeats left out).

        Replays the walk of ``suggest`` like an odometer over the choices each step offered.
        """
        for params, _, _ in self._odometer(frozenset()):
            yield params

    def speed_classes(self) -> Iterator[tuple[dict, QuantRecipe, int]]:
        """The space with the parameters that change a recipe's numbers but not its kernels (``NUMBERS_ONLY``) set
        to their first choice: each configuration left once, its recipe, and how many configurations of the space
        it stands for (they share its speed)."""
        return self._odometer(NUMBERS_ONLY)

    def _odometer(self, fixed: frozenset[str]) -> Iterator[tuple[dict, QuantRecipe, int]]:
        """Every walk of ``suggest``, each recipe once (the fp32 model left out), the questions in ``fixed`` at
        their first choice: (parameters, recipe, configurations it stands for)."""
        path: list[int] = []
        seen: set = set()
        while True:
            walk = _Replay(path, fixed=fixed)
            recipe = self._build(walk.ask)
            del path[len(walk.sizes):]
            key = _fusion_only(recipe) if not recipe.operators_to_quantize else recipe
            if not recipe.is_fp32 and key not in seen:
                seen.add(key)
                yield walk.params, recipe, walk.members if recipe.operators_to_quantize else 1
            j = len(path) - 1
            while j >= 0 and path[j] + 1 >= walk.sizes[j]:
                j -= 1
            if j < 0:
                return
            path[j] += 1
            del path[j + 1:]

    def neighbour(self, params: dict, rng: np.random.Generator) -> dict | None:
        """A configuration one parameter away from ``params`` (Optuna parameters of this space): one parameter it
        sets takes another of its choices; parameters the change brings in are drawn at random. None when the
        change gives the fp32 model."""
        names = sorted(params)
        change = names[rng.integers(len(names))] if names else None
        return self._walk(lambda name, choices: (
            _other(choices, params.get(name), rng) if name == change else
            params[name] if name in params and params[name] in choices else choices[rng.integers(len(choices))]))

    def neighbours(self, params: dict) -> Iterator[dict]:
        """Every configuration one parameter away from ``params``, each once: one parameter takes each of its other
        choices, and parameters the change brings in take their first (the fp32 model left out)."""
        def keep(name: str, options: list):
            return params[name] if name in params and params[name] in options else options[0]

        choices: dict[str, list] = {}  # each question the walk of ``params`` itself asks, with its choices
        self._walk(lambda name, options: choices.setdefault(name, options) and keep(name, options))
        seen = {params_key(params)}
        for changed, options in choices.items():
            for value in options:
                candidate = self._walk(lambda name, o, changed=changed, value=value:
                                       value if name == changed else keep(name, o))
                key = None if candidate is None else params_key(candidate)
                if key is not None and key not in seen:
                    seen.add(key)
                    yield candidate

    def random_params(self, rng: np.random.Generator) -> dict | None:
        """A configuration drawn uniformly at each step of the walk; None when it is the fp32 model."""
        return self._walk(lambda name, choices: choices[rng.integers(len(choices))])

    def _walk(self, choose: Callable[[str, list], object]) -> dict | None:
        params: dict = {}

        def ask(name: str, choices: Sequence):
            params[name] = choose(name, list(choices))
            return params[name]

        return None if self._build(ask).is_fp32 else params

    def params_for(self, recipe: QuantRecipe) -> dict | None:
        """The parameters that make ``recipe``, or None when the space cannot express it."""
        def ask(name: str, choices: Sequence):
            if name.startswith("op_"):
                value = name[3:] in recipe.operators_to_quantize
            elif name.startswith("mixed_"):
                value = dict(recipe.precisions).get(name[len("mixed_"):], "fp32")
            elif name == "fp32_top":
                value = len(recipe.fp32_groups)
            elif name.startswith("smooth_"):
                value = dict(recipe.smoothing).get(name[len("smooth_"):], 0.0)
            else:
                value = getattr(recipe, name)
            if value not in choices:
                raise LookupError(name)
            params[name] = value
            return value

        params: dict = {}
        try:
            built = self._build(ask)
        except LookupError:
            return None
        if recipe.mode == "dynamic" or (recipe.mode == "mixed" and "float_output" not in params):
            # calibration settings mean nothing to a dynamic recipe (nor to a mixed one without static groups)
            recipe = dataclasses.replace(recipe, calibration_method=built.calibration_method,
                                         calibration_samples=built.calibration_samples)
        same = built == recipe or (not recipe.operators_to_quantize and _fusion_only(built) == _fusion_only(recipe))
        return params if same else None

    def size(self) -> int:
        """How many distinct recipes the space holds (what ``enumerate_params`` yields, counted without it)."""
        return space_size(self)

    def to_dict(self) -> dict:
        return {"operators": {k: list(o) for k, o in self.operators.items()}, "fusions": list(self.fusions),
                "groups": {level: g.to_dict() for level, g in self.groups.items()},
                "sensitivity": self.sensitivity,
                "calibration_method": list(self.calibration_method),
                "calibration_samples": list(self.calibration_samples), "formats": list(self.formats),
                "activation_types": list(self.activation_types), "exclude_fragile": list(self.exclude_fragile),
                "matmul_weights_only": list(self.matmul_weights_only), "smoothing": list(self.smoothing)}

    @classmethod
    def from_dict(cls, data: dict) -> SearchSpace:
        """A stored space (``to_dict``; a study's record reads an older one in this shape: ``opsearch.store``)."""
        return cls({k: tuple(v) for k, v in data["operators"].items()},
                   **{k: _tuple(data[k]) for k in ("calibration_method", "calibration_samples", "formats",
                                                   "activation_types", "exclude_fragile", "fusions",
                                                   "matmul_weights_only")},
                   groups={level: GraphGroups.from_dict(g) for level, g in data["groups"].items()},
                   sensitivity=data["sensitivity"], smoothing=_tuple(data.get("smoothing", ())))


# The parameters that change a recipe's numbers (its scales and zero points) but not which kernels run: as the cost
# model's kinds see it (``measure._kernels``), configurations that differ only in these run at one speed.
NUMBERS_ONLY = frozenset({"reduce_range", "weights_symmetric", "activations_symmetric", "calibration_method",
                          "calibration_samples"})


def params_key(params: dict) -> tuple:
    """A configuration's parameters as a hashable key: two draws of one configuration give the same key."""
    return tuple(sorted(params.items()))


def speed_key(params: dict) -> tuple:
    """The key of the configurations that run at the speed of these parameters (``NUMBERS_ONLY`` left out)."""
    return tuple(sorted((k, v) for k, v in params.items() if k not in NUMBERS_ONLY))


class _Replay:
    """Answers each question with the choice ``path`` names (the first one past its end), and records them. A
    question in ``fixed`` takes its first choice, off the path: ``members`` counts the configurations that stand
    behind each answer so."""

    def __init__(self, path: list[int], fixed: frozenset[str] = frozenset()) -> None:
        self.path, self.sizes, self.params, self.fixed, self.members = path, [], {}, fixed, 1

    def ask(self, name: str, choices: Sequence):
        if name in self.fixed:
            self.members *= len(choices)
            self.params[name] = choices[0]
            return choices[0]
        i = len(self.sizes)
        if i == len(self.path):
            self.path.append(0)
        self.sizes.append(len(choices))
        self.params[name] = choices[self.path[i]]
        return self.params[name]


def _other(choices: list, current, rng: np.random.Generator):
    others = [c for c in choices if c != current] or choices
    return others[rng.integers(len(others))]


def _fusion_only(recipe: QuantRecipe) -> tuple[str, ...]:
    return ("fusion-only", recipe.fusion)
