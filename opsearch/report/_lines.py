"""The report's sentences, written once and shown alike by the text, markdown and HTML renderers: the trial
counts, what the study optimizes, the fp32 baseline, the knee, the accuracy limit, the best trial by each other
objective, what the numbers are, and what the trials cost."""

from __future__ import annotations

import math

from opsearch.report._predicted import prediction_lines
from opsearch.report._report import StudyReport
from opsearch.report._tables import latency_cell, number_cell
from opsearch.store import OBJECTIVES


def counts_words(report: StudyReport) -> str:
    """How many trials are in each state, e.g. "9 complete, 1 fail"; empty for a study without trials."""
    return ", ".join(f"{n} {state}" for state, n in sorted(report.counts.items()))


def workload_words(workload: dict) -> str:
    """The timed workload in words: what a study's speeds and latencies belong to."""
    if not workload:
        return "workload not recorded"
    batch = int(workload.get("batch_size", 1))
    if workload.get("synthetic"):  # a model without a tokenizer
        return (f"{workload.get('samples', '?')} rows of {workload.get('max_length', '?')} tokens drawn at random "
                f"(the model has no tokenizer), {batch} per call")
    if "windows" in workload:  # questions, each read in windows of its context
        shape = (f"in {workload['windows']} windows, one question's windows per call" if batch == 1
                 else f"in {workload['windows']} windows, {batch} questions' windows per call")
        tokens = f" of at most {workload['max_length']} tokens" if "max_length" in workload else ""
        return (f"{workload.get('samples', '?')} questions {shape}{tokens}, "
                + ("tokenized inside the timed region" if workload.get("end_to_end") else "tokenized beforehand"))
    shape = "one text per call, unpadded" if batch == 1 else f"batches of {batch}, padded to the longest"
    tokens = (f", texts cut to {workload['max_length']} tokens (mean {workload['mean_tokens']:.0f})"
              if "max_length" in workload and "mean_tokens" in workload else "")
    return (f"{workload.get('samples', '?')} texts, {shape}{tokens}, "
            + ("tokenized inside the timed region" if workload.get("end_to_end") else "tokenized beforehand"))


def machine_words(machine: dict) -> str:
    if not machine:
        return "machine not recorded"
    flags = machine.get("int8_flags") or []
    threads = (machine.get("threads") or {}).get("intra_op_threads")
    return (f"{machine.get('cpu', '?')} ({', '.join(flags) if flags else 'no int8 flags read'})"
            + (f", {threads} threads" if threads else ""))


def study_line(report: StudyReport) -> str:
    """What the study optimizes, and the workload and CPU its front belongs to."""
    titles = [OBJECTIVES[o].title.replace("accuracy", report.metric_title) for o in report.objectives]
    return (f"optimizes {', '.join(titles)}; "
            f"workload: {workload_words(report.settings.get('workload', {}))}; CPU: {machine_words(report.machine)}")


def baseline_line(report: StudyReport) -> str:
    base = report.baseline
    if not base:
        return "fp32 baseline: not measured"
    latency = base["timing"].get("latency_ms") or {}
    extra = ([f"{base['size_mb']:.1f} MB"] if base["size_mb"] is not None else []) + (
        [f"latency p50/p95/p99 {latency_cell(latency['p50'], latency['p95'], latency['p99'])} ms"] if latency else [])
    return (f"fp32 baseline: {report.metric_title} {base['metrics'][report.metric]:.4f} (batch "
            f"{report.accuracy_batch_size}), "
            f"{base['timing']['throughput']:.1f} samples/s (timed at batch "
            f"{report.settings.get('workload', {}).get('batch_size', 1)})" + "".join(f", {e}" for e in extra))


_BEST_WORDS = {"size": "smallest file", "p50": "lowest median latency", "p95": "lowest p95 latency",
               "p99": "lowest p99 latency"}


def best_by_lines(report: StudyReport) -> list[str]:
    """For each objective besides throughput and accuracy loss, its best trial within the limit."""
    where = "any loss" if report.max_accuracy_loss is None else f"{100 * report.max_accuracy_loss:.2f} pt"
    out = []
    for name, r in report.best_by().items():
        out.append(f"{_BEST_WORDS[name]} within {where}: trial {r.trial}, {number_cell(r.size_mb, '.1f')} MB, "
                   f"p99 {number_cell(r.latency_p99_ms, '.1f')} ms, {number_cell(r.speedup, '.2f')}x fp32, loss "
                   f"{r.accuracy_loss_pt:+.2f} pt (95% CI {r.loss_ci_low_pt:+.2f} to {r.loss_ci_high_pt:+.2f})")
    return out


def limit_line(report: StudyReport) -> str:
    """The accuracy limit and the fastest trial within it; empty without a limit."""
    if report.max_accuracy_loss is None:
        return ""
    limit = f"{100 * report.max_accuracy_loss:.2f} pt"
    best = report.best_feasible
    faster = report.faster_uncertain
    maybe = ("" if not faster else "; faster but uncertain (their loss intervals straddle the limit: more "
             "evaluation rows would decide): " + ", ".join(
                 f"trial {r.trial} {r.speedup:.2f}x, loss {r.loss_ci_low_pt:+.2f} to {r.loss_ci_high_pt:+.2f} pt"
                 for r in faster))
    if best is None and not faster:
        return (f"no trial loses at most {limit} of {report.metric_title}: raise --max-accuracy-loss or run more "
                "trials.")
    if best is None:
        return (f"no trial is surely within {limit} {report.metric_title} loss{maybe}; raise --max-accuracy-loss, "
                "or evaluate "
                "on more rows (--max-samples, a larger dataset) to decide.")
    tied = [r.trial for r in report.rows if best.tie_group is not None and r.tie_group == best.tie_group
            and r.trial != best.trial]
    tie = ("" if not tied else f"; tied in speed with trial{'s' if len(tied) > 1 else ''} "
           f"{', '.join(map(str, tied))}, chosen for the lower {report.metric_title} loss, then fewer quantized nodes")
    return (f"best within {limit}: trial {best.trial}, {best.speedup:.2f}x fp32 "
            f"({best.samples_per_s:.1f} samples/s), loss {best.accuracy_loss_pt:+.2f} pt "
            f"(95% CI {best.loss_ci_low_pt:+.2f} to {best.loss_ci_high_pt:+.2f}){tie}{maybe}")


def knee_line(report: StudyReport) -> str:
    knee = report.knee
    if knee is None:
        return "knee: none (the front has fewer than three points, or no bend)"
    return (f"knee of the front: trial {knee.trial}, {knee.speedup:.2f}x fp32 at {knee.accuracy_loss_pt:+.2f} pt "
            "(the point farthest above the line joining the front's ends, both axes scaled to the front)")


def footnotes(report: StudyReport) -> list[str]:
    """What the numbers are: the speedup's estimator and interval, and the loss's."""
    how = ("each side's summed fastest time per text over paired rounds" if report.estimator == "floor"
           else "median of per-round ratios")
    return [f"throughput = fp32 reference samples/s x paired speedup ({how}); the speedup's 95% interval (+-) "
            "takes in the sessions (a bootstrap over the session pairs the rounds rotated over, then over rounds) "
            "and the study's drift term (see \"Honest answers\" in docs/measuring.md).",
            report.drift,
            f"loss 95% CI: paired bootstrap over the evaluation rows (both models answered the same rows, at batch "
            f"{report.accuracy_batch_size}); vs limit: within (the whole interval at most the limit), over (all of "
            "it above), uncertain (it straddles the limit: more evaluation rows would decide)."]


def cost_lines(report: StudyReport) -> list[str]:
    """The study's cost, what early stopping cut short and what the cost model pruned, for the report; empty for a
    study that kept none of them."""
    return _spent_lines(report) + prediction_lines(report.predictions)


def _spent_lines(report: StudyReport) -> list[str]:
    cost = report.cost
    if cost is None or not cost.trials:
        return []
    lines = [f"cost: {len(cost.trials)} trials measured, {cost.evaluate_s:.0f} s evaluating, {cost.timing_s:.0f} s "
             "timing"]
    stopped = cost.stopped_evaluations + cost.raced
    if not stopped:
        lines[0] += "; early stopping " + ("stopped none" if cost.early_stop else f"off ({cost.why_off})")
        return lines
    saved = cost.saved_s
    lines[0] += (f"; early stopping cut {len(cost.stopped_evaluations)} evaluations and {len(cost.raced)} timings "
                 "short" + ("" if math.isnan(saved) else f", saving about {saved:.0f} s (estimated from the trials "
                                                             "that ran whole)"))
    lines += [f"  trial {t.trial}: {t.stopped_early} ({t.evaluate_s:.1f} s evaluating"
              + (f", {t.timing_s:.1f} s timing)" if t.timing_s else ")") for t in stopped]
    return lines
