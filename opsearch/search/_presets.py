"""Known configurations a study tries first, as points of its search space, each with its name.

First the starting points read from the graph, the likeliest to lead: where a fusion level made Attention nodes the
dynamic quantizer takes, that fusion with dynamic Attention and MatMul, and dynamic int8 of the MatMuls with a
constant weight only (what Intel Neural Compressor does by default: attention's MatMuls of two activations stay
fp32), each per-tensor. They run before the cost model is built and are never pruned by it. Then each of them
per-channel, and optimum's ``AutoQuantizationConfig`` presets (arm64, avx2, avx512, avx512_vnni; dynamic, with and
without per-channel), read from optimum itself and translated into the space's parameters: predicted once the model
exists, and one it says cannot reach the front is pruned untimed. Presets that land on the same parameters are
enqueued once under all their names ("avx512 / avx512_vnni").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from opsearch.quantize import SMOOTH_ROLES, QuantRecipe, quantizable_registry
from opsearch.search._space import SearchSpace, params_key

# The instruction sets optimum has a preset for on x86-64 and ARM CPUs.
CPU_PRESETS = ("arm64", "avx2", "avx512", "avx512_vnni")


@dataclass(frozen=True)
class Preset:
    names: tuple[str, ...]
    params: dict
    recipe: QuantRecipe
    starting: bool = False  # one of ``starting_points`` (under any of its names): never pruned by prediction

    @property
    def name(self) -> str:
        return " / ".join(self.names)


def preset_recipes(space: SearchSpace, *, sweep_operators: bool = False) -> list[tuple[str, QuantRecipe]]:
    """The named recipes, before translation: the starting points read from the graph (``starting_points``), each
    per-channel, the fused graph alone per fusion level, then every quantizable operator, optimum's CPU presets,
    MatMul only, with ``sweep_operators`` each dynamic operator alone, and ONNX Runtime's weight-only defaults
    (MatMul, then the embeddings too).

    Presets quantize the exported graph ("none") when the space holds it, else its first fusion level.
    """
    fusion = "none" if "none" in space.fusions else space.fusions[0]
    starts = starting_points(space)
    # each starting point per-channel, right after them: predicted like the presets below
    out: list[tuple[str, QuantRecipe]] = [*starts, *((f"{name}, per-channel", dataclasses.replace(r, per_channel=True))
                                                     for name, r in starts)]
    # each fusion level alone: loses no accuracy by construction, so it gives the cost model its first bar
    out += [(f"fusion only {level}", QuantRecipe(mode=space.modes[0], operators_to_quantize=(), fusion=level))
            for level in space.fusions if level != "none"]
    if "dynamic" in space.modes:
        registry = quantizable_registry()["dynamic"]
        ops = tuple(op for op in space.operators_for(fusion, "dynamic") if op in registry)
        base = {"mode": "dynamic", "fusion": fusion, "weights_symmetric": True}
        if len(ops) > 1:
            out.append(("dynamic: every quantizable operator", QuantRecipe(operators_to_quantize=ops, **base)))
        for cpu in CPU_PRESETS:
            for per_channel in (False, True):
                name = f"{cpu}{' per_channel' if per_channel else ''}"
                out.append((name, from_optimum(_optimum_preset(cpu, per_channel), ops=ops, fusion=fusion)))
        if "MatMul" in ops:
            # The article's best dynamic recipe; after optimum's: every MatMul, the attention ones too, which the
            # weight-MatMul starting point already leaves out for their cost
            out.append(("dynamic: MatMul only", QuantRecipe(operators_to_quantize=("MatMul",), **base)))
        if sweep_operators:
            out += [(f"sweep: {op} alone", QuantRecipe(operators_to_quantize=(op,), **base)) for op in ops]
    if "weight_only" in space.modes and "MatMul" in space.operators_for(fusion, "weight_only"):
        # MatMulNBitsQuantizer's own defaults (4 bits, blocks of 128, asymmetric), then with the embeddings too.
        base = {"mode": "weight_only", "fusion": fusion, "weight_bits": 4, "block_size": 128,
                "weights_symmetric": False}
        out.append(("weight-only: 4-bit MatMul", QuantRecipe(operators_to_quantize=("MatMul",), **base)))
        if "Gather" in space.operators_for(fusion, "weight_only"):
            out.append(("weight-only: 4-bit MatMul and embeddings",
                        QuantRecipe(operators_to_quantize=("Gather", "MatMul"), **base)))
    if "mixed" in space.modes:
        out += _mixed_presets(space, fusion)
    return out


def starting_points(space: SearchSpace) -> list[tuple[str, QuantRecipe]]:
    """The recipes the graph says are likeliest to lead, per-tensor (per-channel weights are slower on the CPUs
    measured, and can saturate without VNNI: each runs next as a preset, predicted), in order:

    - "dynamic: <level> fused attention": per fusion level whose graph has Attention nodes the dynamic quantizer
      takes (QAttention), that fusion with Attention and MatMul dynamic (a fused dynamic recipe leaves any MatMul of
      two activations still standing fp32). Not offered where the level made no Attention node. First: one
      QAttention kernel per layer does what a dozen nodes did, and on MiniLM SST-2 it led on both an AVX2-only
      and an AVX-512 VNNI CPU.
    - "dynamic: weight MatMuls only": the MatMuls with a constant weight, dynamic int8; the MatMuls of two
      activations (attention's scores and context) stay fp32, where the graph has any. Intel Neural Compressor's
      default: each of those costs a DynamicQuantizeLinear per input for an int8 GEMM on tiny tiles.
    - "dynamic: weight MatMuls only, every role smoothed at A", where the study searches smoothing: the same with
      each role's input outliers moved into its weights at the first strength searched (quantize._smooth).

    Empty without dynamic mode. The weights-only recipe quantizes the exported graph when the space holds it.
    """
    if "dynamic" not in space.modes:
        return []
    fusion = "none" if "none" in space.fusions else space.fusions[0]
    registry = quantizable_registry()["dynamic"]
    base = {"mode": "dynamic", "weights_symmetric": True}
    kinds: list[tuple[str, QuantRecipe]] = []
    for level in space.fusions:
        ops = [op for op in space.operators_for(level, "dynamic") if op in registry]
        if level != "none" and "Attention" in ops:
            kinds.append((f"dynamic: {level} fused attention", QuantRecipe(
                operators_to_quantize=tuple(op for op in ("Attention", "MatMul") if op in ops), fusion=level,
                **base)))
    if "MatMul" in space.operators_for(fusion, "dynamic"):
        weights_only = space.asks_weights_only(fusion, "dynamic", ("MatMul",))  # False: no activation MatMul
        plain = QuantRecipe(operators_to_quantize=("MatMul",), fusion=fusion, matmul_weights_only=weights_only,
                            **base)
        kinds.append(("dynamic: weight MatMuls only", plain))
        if space.smoothing:
            alpha = space.smoothing[0]
            kinds.append((f"dynamic: weight MatMuls only, every role smoothed at {alpha:g}", dataclasses.replace(
                plain, smoothing=tuple((role, alpha) for role in SMOOTH_ROLES))))
    return kinds


def presets(space: SearchSpace, *, sweep_operators: bool = False) -> list[Preset]:
    """The presets as the space's parameters, in order, duplicates merged under all their names.

    A preset the space cannot express (an operator it does not offer) is left out.
    """
    merged: dict[tuple, Preset] = {}
    starting = {name for name, _ in starting_points(space)}
    for name, recipe in preset_recipes(space, sweep_operators=sweep_operators):
        params = space.params_for(recipe)
        if params is None:
            continue
        key = params_key(params)
        if key in merged:
            merged[key] = Preset((*merged[key].names, name), params, merged[key].recipe,
                                 merged[key].starting or name in starting)
        else:
            merged[key] = Preset((name,), params, space.recipe_for(params), name in starting)
    return list(merged.values())


def _worst_role(space: SearchSpace, fusion: str) -> str | None:
    """The role whose groups the ranges pass finds worst under dynamic int8 on average (None without the pass, or
    with one role only): an outlier is usually a role's in every layer (the FFN outputs of a base-size encoder)."""
    groups = space.groups[fusion].by_key()
    errors: dict[str, list[float]] = {}
    for key, error in space.sensitivity.items():
        if key in groups and "dynamic" in error:
            errors.setdefault(groups[key].role, []).append(error["dynamic"])
    roles = [r for r in errors if "dynamic" in space.roles(fusion).get(r, ())]
    if len(roles) < 2:
        return None
    return max(roles, key=lambda r: sum(errors[r]) / len(errors[r]))


def _mixed_presets(space: SearchSpace, fusion: str) -> list[tuple[str, QuantRecipe]]:
    """Where the ranges pass warm-starts the search: every group dynamic but the role it finds worst, then but
    the 2, then the 4 groups it ranks worst; with static in the space, static FFNs beside dynamic attention, and
    static projections, each with float outputs and the 2 worst groups fp32."""
    roles = space.roles(fusion)
    projections = [r for r in ("qkv", "attn_out", "ffn_in", "ffn_out", "pooler", "head") if r in roles]
    wanted = []
    if roles:
        dynamic = {f"mixed_{r}": "dynamic" for r in roles}
        worst = _worst_role(space, fusion)
        if worst is not None:
            wanted.append((f"mixed: all dynamic but the worst role ({worst}) fp32",
                           {**dynamic, f"mixed_{worst}": "fp32"}))
        wanted += [(f"mixed: all dynamic but the {k} worst groups", {**dynamic, "fp32_top": k}) for k in (2, 4)]
    if "static" in space.modes:
        ffn = {f"mixed_{r}": "static" for r in ("ffn_in", "ffn_out") if "static" in roles.get(r, ())}
        attention = {f"mixed_{r}": "dynamic" for r in ("qkv", "attn_out") if "dynamic" in roles.get(r, ())}
        static = {f"mixed_{r}": "static" for r in projections if "static" in roles[r]}
        flags = {"float_output": True, "fp32_top": 2}
        if ffn:
            wanted.append(("mixed: static FFN, dynamic attention, 2 worst groups fp32", {**attention, **ffn, **flags}))
        if static:
            wanted.append(("mixed: static projections, 2 worst groups fp32", {**static, **flags}))
    out = []
    for name, partial in wanted:
        params = space.complete({"fusion": fusion, "mode": "mixed", **partial})
        recipe = space.recipe_for(params)
        if recipe.operators_to_quantize:
            out.append((name, recipe))
    return out


def from_optimum(config, *, ops: tuple[str, ...], fusion: str = "none") -> QuantRecipe:
    """optimum's QuantizationConfig as a recipe: its operators that the graph holds, and its flags."""
    wanted = {getattr(op, "value", op) for op in config.operators_to_quantize}
    return QuantRecipe(
        mode="static" if config.is_static else "dynamic",
        operators_to_quantize=tuple(op for op in ops if op in wanted),
        per_channel=bool(config.per_channel),
        reduce_range=bool(config.reduce_range),
        weights_symmetric=bool(config.weights_symmetric),
        activations_symmetric=bool(config.activations_symmetric) if config.is_static else False,
        weights_dtype=config.weights_dtype.name,
        fusion=fusion,
    )


def _optimum_preset(cpu: str, per_channel: bool):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    return getattr(AutoQuantizationConfig, cpu)(is_static=False, per_channel=per_channel)
