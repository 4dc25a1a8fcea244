"""Named one-line mutants of the decoding, schedule, masking, loss and metric modules,
of the trust layer (the evaluate stage's statistics, the per-image metrics, IDS, the
review and experiments pages, the sweep's lookup of pushed points), and which of them
the unit tests kill. Not part of CI (minutes, not seconds):

    python tools/mutants.py                      # every mutant, report to stdout
    python tools/mutants.py --only decoding      # the mutants whose name starts so
    python tools/mutants.py --out docs/mutants.md

Each mutant is one plausible bug, written as (file, original text, mutated text): a
text that must occur exactly once. The project (its git files) is copied once to a
temporary folder beside a link to ../shared when there is one; each mutant is applied
there, the unit tests of its module run (pytest -x: the first failure kills it), and
the file is put back. A mutant "survives" when those tests all pass, "does not apply"
when its original text is not in the file (other code than it was written for). Only
unit tests run, never the pipeline tests: a survivor here may still be caught by a
pipeline test, and it is listed so that a unit test is written for it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

DEC, SCH, MSK = "maskgit/algorithms/decoding.py", "maskgit/algorithms/schedules.py", "maskgit/algorithms/masking.py"
OBJ, FID = "maskgit/algorithms/objective.py", "maskgit/metrics/fid.py"
STAGE = "stages/train_transformer.py"
EVAL, BOOT, INFL = "maskgit/metrics/evaluation.py", "maskgit/metrics/bootstrap.py", "maskgit/metrics/influence.py"
IDS, IMG = "maskgit/metrics/ids.py", "maskgit/metrics/image.py"
REVIEW, EXPP = "maskgit/compare.py", "maskgit/pages/experiments.py"
SWEEP, SJOB = "maskgit/sweep.py", "maskgit/sweeps/job.py"
GRID_PY = "maskgit/project/grid.py"
NUM, VERIFY, MASKS = "maskgit/pipeline/numerics.py", "maskgit/verify.py", "maskgit/data/masks.py"
SCORING, FAMILY, EVALUATE = "maskgit/pipeline/scoring.py", "stages/family.py", "stages/evaluate.py"
# the experiments page's tests that start no `dvc` process
NO_DVC = "not only_the_last_commit and not what_dvc_says and not refuse_unknown"

# the unit tests run for a mutant of each module (files that do not exist are left out)
TESTS = {
    "decoding": (["tests/test_decode.py", "tests/test_inpaint.py", "tests/test_bench.py"], "not quick_run"),
    "schedules": (["tests/test_decode.py", "tests/test_transformer.py"], None),
    "order": (["tests/test_order.py", "tests/test_decode.py"], None),
    "grid": (["tests/test_order.py", "tests/test_bootstrap.py", "tests/test_family.py"], None),
    "masking": (["tests/test_decode.py", "tests/test_transformer.py", "tests/test_inpaint.py"], None),
    "objective": (["tests/test_objective.py", "tests/test_transformer.py"], None),
    "metrics": (["tests/test_metric_values.py", "tests/test_fid.py"], None),
    # the trust layer's: the files that load no torch first (a mutant killed there costs no torch import)
    "evaluation": (["tests/test_verdicts.py", "tests/test_bootstrap_reference.py", "tests/test_ids.py"], None),
    "bootstrap": (["tests/test_bootstrap_reference.py", "tests/test_verdicts.py"], None),
    "influence": (["tests/test_influence.py", "tests/test_bootstrap_reference.py"], None),
    "ids": (["tests/test_ids.py", "tests/test_metric_formulas.py"], None),
    "image": (["tests/test_metric_formulas.py"], None),
    "review": (["tests/test_pages.py"], None),
    "experiments": (["tests/test_pages.py", "tests/test_experiments.py"], NO_DVC),
    "sweep": (["tests/test_sweep_remote.py"], None),
    "numerics": (["tests/test_numerics.py"], None),
    "verify": (["tests/test_verify.py"], None),
    "masks": (["tests/test_masks.py"], None),
    "scoring": (["tests/test_scoring.py"], None),
    "family": (["tests/test_family.py"], None),
    "evaluate": (["tests/test_evaluate.py"], None),
}


@dataclass
class Mutant:
    name: str  # <module>.<what the bug is>
    edits: list  # candidates (path, old, new); the first whose old text is found applies


def m(name, path, old, new, *alternatives):
    return Mutant(name, [(path, old, new), *alternatives])


MUTANTS = [
    # decoding: the rules of the decoding loop (maskgit/algorithms/decoding.py's docstring)
    m("decoding.tau_not_annealed", DEC, "tau = annealed_temperature(decoding.choice_temperature, r)",
      "tau = decoding.choice_temperature"),
    m("decoding.base_tau_in_confidence", DEC, "confidence = chosen_log_prob + tau * _gumbel(",
      "confidence = chosen_log_prob + decoding.choice_temperature * _gumbel("),
    m("decoding.tau_grows", DEC, "return choice_temperature * (1.0 - r)", "return choice_temperature * r"),
    m("decoding.confidence_from_raw_logits", DEC, "chosen_log_prob = log_probs.gather(", "chosen_log_prob = logits.gather("),
    m("decoding.known_tokens_replaced", DEC, "chosen = torch.where(masked, sampled, current)", "chosen = sampled"),
    m("decoding.known_tokens_not_infinitely_confident", DEC,
      "confidence = torch.where(masked, confidence, torch.full_like(confidence, math.inf))", "confidence = confidence"),
    m("decoding.n0_from_sequence_length", DEC, "n0 = unknown.sum(dim=1)  #",
      "n0 = torch.full_like(unknown.sum(dim=1), unknown.shape[1])  #"),
    m("decoding.n0_from_first_image", DEC, "n0 = unknown.sum(dim=1)  #", "n0 = unknown.sum(dim=1)[:1].expand(len(unknown))  #"),
    m("decoding.r_off_by_one", DEC, "r = (t + 1) / total_iter", "r = t / total_iter"),
    m("decoding.mask_id_predicted", DEC,
      "logits = forward_in_chunks(transformer, current, chunk)[..., :codebook_size].float()",
      "logits = forward_in_chunks(transformer, current, chunk).float()"),
    m("decoding.chunks_out_of_order", DEC, "return torch.cat([transformer(part) for part in tokens.split(chunk)])",
      "return torch.cat([transformer(part) for part in reversed(tokens.split(chunk))])"),
    # decoding order (inpaint.orders): which tokens a step reveals
    m("order.halton_bases_swapped", DEC,
      "cell = int(radical_inverse(i, 2) * height) * width + int(radical_inverse(i, 3) * width)",
      "cell = int(radical_inverse(i, 3) * height) * width + int(radical_inverse(i, 2) * width)"),
    m("order.halton_from_index_0", DEC, "seen, order, i = set(), [], 1", "seen, order, i = set(), [], 0"),
    m("order.halton_reversed", DEC, "torch.arange(n, 0, -1, dtype=torch.float32)  # first point: highest",
      "torch.arange(1, n + 1, dtype=torch.float32)"),
    m("order.radical_inverse_not_mirrored", DEC, "value += digit * scale", "value += digit * scale * scale"),
    m("order.shift_ignored", DEC, "if not halton_shift:", "if True:"),
    m("order.one_random_order_for_the_batch", DEC, "        return _uniform(shape, generator, device)",
      "        return _uniform((1, n), generator[0] if _per_image(generator) else generator, device).expand(b, n).clone()"),
    m("order.halton_decided_by_confidence", DEC, 'priority = (None if decoding.order == "confidence" else',
      'priority = (None if decoding.order != "random" else'),
    m("grid.pairs_across_both_axes", GRID_PY, "if a.schedule == b.schedule or a.order == b.order]", "]"),
    m("grid.confidence_named_with_order", GRID_PY,
      'return self.schedule if self.order == "confidence" else f"{self.schedule}-{self.order}"',
      'return f"{self.schedule}-{self.order}"'),
    m("grid.family_reads_the_main_masks", GRID_PY,
      'return paths.TEST / "mask64" if self.family is None else self.folder / "test" / "mask64"',
      'return paths.TEST / "mask64"'),
    m("decoding.no_reveal_at_least_one", DEC, "n = torch.minimum(n.clamp(min=1), currently_unknown - 1)",
      "n = torch.minimum(n, currently_unknown - 1)"),
    m("decoding.no_keep_at_least_one", DEC, "n = torch.minimum(n.clamp(min=1), currently_unknown - 1)", "n = n.clamp(min=1)"),
    m("decoding.ceil_not_floor", DEC, "n = torch.floor(n0.double()", "n = torch.ceil(n0.double()"),
    m("decoding.float_floor_without_epsilon", DEC, "* gamma(schedule, r) + 1e-9).long()", "* gamma(schedule, r)).long()"),
    m("decoding.keep_highest_confidence", DEC, "order = torch.sort(confidence, dim=1, stable=True).indices",
      "order = torch.sort(-confidence, dim=1, stable=True).indices"),
    m("decoding.ties_to_higher_index", DEC, "order = torch.sort(confidence, dim=1, stable=True).indices",
      "order = (confidence.shape[1] - 1 - torch.sort(confidence.flip(1), dim=1, stable=True).indices)"),
    m("decoding.sweet_spot_ignored", DEC, "return min(self.sweet_spot, self.total_iter)", "return self.total_iter"),
    m("decoding.last_step_leaves_masks", DEC, "if t == steps - 1:", "if t == steps:"),
    m("decoding.gumbel_sign", DEC, "return -torch.log(-torch.log(u))", "return torch.log(-torch.log(u))"),
    m("decoding.sampling_ignored", DEC, "sampled = _sample(log_probs.exp(), generator)", "sampled = log_probs.argmax(dim=-1)"),
    m("decoding.prior_ignored", DEC, "logits = logits + prior", "logits = logits"),
    # schedules
    m("schedules.cosine_wrong_period", SCH, "math.cos(r * math.pi / 2)", "math.cos(r * math.pi / 3)"),
    m("schedules.linear_wrong", SCH, "return 1 - r\n", "return 1 - 0.9 * r\n"),
    m("schedules.square_is_cubic", SCH, "return 1 - r**2", "return 1 - r**3"),
    m("schedules.cubic_is_square", SCH, "return 1 - r**3", "return 1 - r**2"),
    m("schedules.sqrt_wrong", SCH, "return 1 - (r**0.5)", "return 1 - (r**0.25)"),
    m("schedules.no_floor", SCH, "GAMMA_MIN = 1e-6", "GAMMA_MIN = -1.0"),
    m("schedules.tensor_not_clipped", SCH, "return g.clamp(GAMMA_MIN, 1.0)", "return g"),
    m("schedules.float_not_clipped", SCH, "return min(max(float(g), GAMMA_MIN), 1.0)", "return float(g)"),
    # masking
    m("masking.token_unknown_when_half_missing", MSK, "return known_fraction_per_token(known, patch) < 1.0",
      "return known_fraction_per_token(known, patch) < 0.5"),
    m("masking.max_not_mean_pool", MSK, "return F.avg_pool2d(known.float(), patch).flatten(1)",
      "return F.max_pool2d(known.float(), patch).flatten(1)"),
    m("masking.floor_not_ceil", MSK, "n_mask = torch.ceil(gamma(schedule, r) * num_tokens)",
      "n_mask = torch.floor(gamma(schedule, r) * num_tokens)"),
    # (clamp(1, ...) -> clamp(0, ...) of n_mask is left out: equivalent, since gamma >= 1e-6 makes ceil(...) >= 1)
    m("masking.r_range_ignores_low", MSK, "r = lo + (hi - lo) * torch.rand(", "r = lo + hi * torch.rand("),
    m("masking.ranks_are_orders", MSK, "ranks = scores.argsort(dim=1).argsort(dim=1)", "ranks = scores.argsort(dim=1)"),
    m("masking.regional_never_used", MSK, "scores = torch.where(use_regional, regional, scores)", "scores = scores"),
    # objective
    m("objective.label_smoothing_ignored", OBJ, "label_smoothing=label_smoothing, reduction=", "label_smoothing=0.0, reduction="),
    m("objective.mean_not_sum", OBJ, 'reduction="sum"', 'reduction="mean"'),
    m("objective.input_not_masked", OBJ, "inputs = torch.where(mask, torch.full_like(tokens, model.mask_token_id), tokens)",
      "inputs = tokens"),
    m("objective.loss_over_every_position", OBJ,
      "loss = F.cross_entropy(logits, tokens[mask],",
      "loss = F.cross_entropy((model if forward is None else forward)(inputs)[..., : model.codebook_size].float()"
      ".flatten(0, 1), tokens.flatten(),"),
    m("objective.mask_id_in_softmax", OBJ, "[..., : model.codebook_size]", "[..., : model.codebook_size + 1]"),
    m("objective.hits_inverted", OBJ, "(logits.argmax(-1) == tokens[mask])", "(logits.argmax(-1) != tokens[mask])"),
    m("objective.ranks_not_scaled", OBJ, "return loss_sum * world_size / (global_count * grad_accum)",
      "return loss_sum / (global_count * grad_accum)",
      (STAGE, '(loss_sum * world.size / (count * tp["grad_accum"])).backward()',
       '(loss_sum / (count * tp["grad_accum"])).backward()')),
    m("objective.warmup_off_by_one", OBJ, "return (step + 1) / warmup", "return step / warmup"),
    m("objective.cosine_not_stopped", OBJ, "math.cos(math.pi * min(progress, 1.0))", "math.cos(math.pi * progress)"),
    m("objective.lr_floor_ignored", OBJ, "return min_ratio + (1 - min_ratio) * 0.5", "return (1 - min_ratio) * 0.5"),
    # metrics
    m("metrics.kid_whole_set", FID, "t1.shape[0] // 2, t2.shape[0] // 2)", "t1.shape[0], t2.shape[0])"),
    m("metrics.kid_subset_max_10", FID, "KID_SUBSET_SIZE_MAX = 1000", "KID_SUBSET_SIZE_MAX = 10"),
    m("metrics.kid_10_subsets", FID, "KID_SUBSETS = 100", "KID_SUBSETS = 10"),
    m("metrics.kid_subset_of_one", FID, "if subset_size < 2:", "if subset_size < 1:"),
    m("metrics.fid_second_set_ignored", FID, "s2 = {k: np.asarray(stats2[k], np.float64)", "s2 = {k: np.asarray(stats1[k], np.float64)"),
    m("metrics.mean_ignored", FID, 'return {"mu": np.asarray(stats["mu"], np.float64),',
      'return {"mu": 0 * np.asarray(stats["mu"], np.float64),'),
    m("metrics.one_vector_accepted", FID, "if f.shape[0] < 2:", "if f.shape[0] < 1:"),
    # evaluation: p-values, corrections, directions, ties, the decisive pair, the mask-area bins
    m("evaluation.p_value_one_sided", EVAL, "return float(min(1.0, 2 * min(np.mean(s <= 0), np.mean(s >= 0))))",
      "return float(min(1.0, min(np.mean(s <= 0), np.mean(s >= 0))))"),
    m("evaluation.p_value_not_centred", EVAL, "s = s - s.mean() + point", "s = s"),
    m("evaluation.holm_is_bonferroni", EVAL, "if p[i] > alpha / (len(tested) - k):", "if p[i] > alpha / len(tested):"),
    m("evaluation.holm_threshold_excluded", EVAL, "if p[i] > alpha / (len(tested) - k):",
      "if p[i] >= alpha / (len(tested) - k):"),
    m("evaluation.holm_counts_untested", EVAL, "if p[i] > alpha / (len(tested) - k):", "if p[i] > alpha / (len(p) - k):"),
    m("evaluation.bh_line_excluded", EVAL, 'method="bh") <= alpha', 'method="bh") < alpha'),
    m("evaluation.bh_is_by", EVAL, 'method="bh") <= alpha', 'method="by") <= alpha'),
    m("evaluation.direction_ignored", EVAL, "lower_is_better=not METRICS[metric].higher_is_better",
      "lower_is_better=True"),
    m("evaluation.diff_b_minus_a", EVAL, "diff = point[a][metric] - point[b][metric]",
      "diff = point[b][metric] - point[a][metric]"),
    m("evaluation.samples_b_minus_a", EVAL, "samples = reps[a][metric] - reps[b][metric]",
      "samples = reps[b][metric] - reps[a][metric]"),
    m("evaluation.correction_ignored", EVAL, 'v["verdict"] = v["uncorrected"] if r else "indistinguishable"',
      'v["verdict"] = v["uncorrected"]'),
    m("evaluation.alpha_halved", EVAL, "return round(1.0 - self.confidence, 12)",
      "return round((1.0 - self.confidence) / 2, 12)"),
    m("evaluation.best_ignores_direction", EVAL, "best = (min if lower else max)(names, key=lambda s: point[s][m])",
      "best = min(names, key=lambda s: point[s][m])"),
    m("evaluation.worse_is_tied", EVAL, 'if v["verdict"] == "indistinguishable"]', 'if v["verdict"] != "better"]'),
    m("evaluation.decisive_worst_pair", EVAL, "a, b = sorted(decoders, key=lambda s: point[s][HEADLINE])[:2]",
      "a, b = sorted(decoders, key=lambda s: point[s][HEADLINE])[-2:]"),
    m("evaluation.decisive_2_wide", EVAL, "bs.images_for_width(samples, n, 1.0, settings.confidence)",
      "bs.images_for_width(samples, n, 2.0, settings.confidence)"),
    # (decisive's interval without its centring is left out: equivalent, a shift leaves the width as it is)
    m("evaluation.bin_low_edge_open", EVAL, "np.flatnonzero((fraction >= lo) &", "np.flatnonzero((fraction > lo) &"),
    m("evaluation.bin_top_edge_open", EVAL, "((fraction <= hi) if last else (fraction < hi))", "(fraction < hi)"),
    m("evaluation.bin_edges_closed", EVAL, "((fraction <= hi) if last else (fraction < hi))", "(fraction <= hi)"),
    m("evaluation.kid_min_images_excluded", EVAL, 'len(idx) >= settings.kid_min_images',
      'len(idx) > settings.kid_min_images'),
    m("evaluation.ids_min_images_excluded", EVAL, "n >= getattr(settings, g.min_images)",
      "n > getattr(settings, g.min_images)"),
    # bootstrap: the draw, the percentile interval, its centring, verdicts, the images for a width
    m("bootstrap.seed_ignored", BOOT, "rng = np.random.default_rng(seed)", "rng = np.random.default_rng(0)"),
    m("bootstrap.last_image_never_drawn", BOOT, "rng.integers(0, n, n)", "rng.integers(0, n - 1, n)"),
    m("bootstrap.one_sided_level", BOOT, "a = (1 - confidence) / 2", "a = 1 - confidence"),
    m("bootstrap.nearest_rank", BOOT, "lo, hi = np.quantile(s, [a, 1 - a])",
      'lo, hi = np.quantile(s, [a, 1 - a], method="nearest")'),
    m("bootstrap.not_centred", BOOT, "s = s - s.mean() + point", "s = s"),
    m("bootstrap.centred_on_the_median", BOOT, "s = s - s.mean() + point", "s = s - np.median(s) + point"),
    m("bootstrap.every_metric_centred", BOOT, "return point if metric in BIASED else None", "return point"),
    m("bootstrap.inf_in_replicates", BOOT, "finite = {(name, metric): np.isfinite(np.asarray(values, np.float64))",
      "finite = {(name, metric): ~np.isnan(np.asarray(values, np.float64))"),
    m("bootstrap.inf_in_point", BOOT, "v = v[np.isfinite(v)]", "v = v[~np.isnan(v)]"),
    m("bootstrap.repeats_not_weighted", BOOT, "C[:, ok] @ v[ok] / drawn", "(C[:, ok] > 0) @ v[ok] / (C[:, ok] > 0).sum(1)"),
    m("bootstrap.verdict_direction_ignored", BOOT, 'return "better" if lower_is_better else "worse"', 'return "better"'),
    m("bootstrap.verdict_touching_zero", BOOT, "if diff_hi < 0:", "if diff_hi <= 0:"),
    m("bootstrap.width_not_squared", BOOT, "return int(np.ceil(n * (now / width) ** 2))",
      "return int(np.ceil(n * (now / width)))"),
    m("bootstrap.width_rounded_down", BOOT, "return int(np.ceil(n * (now / width) ** 2))",
      "return int(n * (now / width) ** 2)"),
    # influence: the first-order route (and the threshold that picks it)
    # (FID's and KID's influence returned without `- influence.mean()` are left out: equivalent, both
    # sum to 0 by construction, U and W having orthonormal columns and the rows centred, so the
    # subtraction only moves rounding)
    m("influence.fid_one_side_of_the_svd", INFL, "- n * ((u * u) @ s + (w * w) @ s)", "- n * (2 * (u * u) @ s)"),
    m("influence.kid_cross_rows_only", INFL, "(rows_xy + cols_xy) / n", "(2 * rows_xy) / n"),
    m("influence.fid_value_over_n", INFL, "(sq_a.sum() + sq_b.sum()) / (n - 1)", "(sq_a.sum() + sq_b.sum()) / n"),
    m("influence.kid_diagonal_kept", INFL, "r_xx, r_yy = (rows_xx - diag_xx) / (n - 1), (rows_yy - diag_yy) / (n - 1)",
      "r_xx, r_yy = rows_xx / n, rows_yy / n"),
    m("influence.block_diagonal_offset", INFL, "k[np.arange(len(k)), start + np.arange(len(k))]",
      "k[np.arange(len(k)), np.arange(len(k))]"),
    m("influence.exact_route_below_threshold", BOOT, "if exact_up_to is None or len(gt) <= exact_up_to:",
      "if exact_up_to is None or len(gt) < exact_up_to:"),
    # ids
    m("ids.tie_counts_whole", IDS, "0.5 * (score_filled == score_real)", "1.0 * (score_filled == score_real)"),
    m("ids.real_at_zero_is_real", IDS, "(score_real <= 0)", "(score_real < 0)"),
    m("ids.p_ids_reversed", IDS, "(score_filled > score_real)", "(score_real > score_filled)"),
    m("ids.labels_swapped", IDS, "np.r_[np.ones(n), np.zeros(n)]", "np.r_[np.zeros(n), np.ones(n)]"),
    # image: the hole's region, SSIM's data range, a perfect hole
    m("image.hole_ssim_over_the_known_region", IMG, "ssim_map[i][:, h].mean()", "ssim_map[i][:, ~h].mean()"),
    m("image.hole_ssim_over_the_whole_image", IMG, "ssim_map[i][:, h].mean()", "ssim_map[i].mean()"),
    m("image.ssim_data_range_1", IMG, 'data_range=DATA_RANGE, reduction="none", return_full_image=True',
      'data_range=1.0, reduction="none", return_full_image=True'),
    m("image.hole_psnr_over_the_whole_image", IMG, "px, py = x[i][:, h], y[i][:, h]", "px, py = x[i], y[i]"),
    m("image.perfect_hole_capped", IMG, 'float("inf") if exact else', '100.0 if exact else'),
    # (hole PSNR without its `exact` branch is left out: equivalent, torchmetrics' PSNR of equal values is inf too)
    m("image.known_fraction", IMG, "return 1.0 - np.asarray(known, bool).reshape(len(known), -1).mean(1)",
      "return np.asarray(known, bool).reshape(len(known), -1).mean(1)"),
    # review page (maskgit.compare): which side is A, which B
    m("review.a_against_b", REVIEW, 'pairs = [(f"B:{s}", f"A:{s}") for s in common]',
      'pairs = [(f"A:{s}", f"B:{s}") for s in common]'),
    m("review.sets_paired_by_position", REVIEW, 'pairs = [(f"B:{s}", f"A:{s}") for s in common]',
      'pairs = [(f"B:{t}", f"A:{s}") for s, t in zip(common, [t for t in sb if t in sa])]'),
    m("review.column_a_shows_b", REVIEW, '"a": table[v["b"]][v["metric"]],', '"a": table[v["a"]][v["metric"]],'),
    # images paired by name: B's rows put in A's order (a run's evidence follows its own ground truth)
    m("review.image_order_unchecked", REVIEW, "return {s: {k: v[order] for k, v in e.items()} for s, e in run_sets.items()}, gt[order]",
      "return run_sets, gt"),
    m("review.buckets_under_holm", REVIEW, 'alpha, "bh")', 'alpha, "holm")'),
    m("review.printed_a_minus_b", REVIEW, "d, lo, hi = signed(metric, [diff, lo, hi])",
      "d, lo, hi = signed(metric, [-diff, -hi, -lo])"),
    # experiments page: the best, the tie rule, the test set
    m("experiments.top_is_highest", EXPP, "top = int(best_fid.idxmin())", "top = int(best_fid.idxmax())"),
    m("experiments.best_schedule_highest", EXPP, "best_schedule = frame[fid_cols].idxmin(axis=1)",
      "best_schedule = frame[fid_cols].idxmax(axis=1)"),
    m("experiments.worse_is_tied", EXPP, 'marks[name] = "tied" if fid["verdict"] in ("indistinguishable", "identical")',
      'marks[name] = "tied" if fid["verdict"] != "better"',
      (EXPP, 'marks[name] = "tied" if fid["verdict"] == "indistinguishable" else ""',
       'marks[name] = "tied" if fid["verdict"] != "better" else ""')),
    m("experiments.identical_not_tied", EXPP, 'if fid["verdict"] in ("indistinguishable", "identical") else ""',
      'if fid["verdict"] == "indistinguishable" else ""'),
    m("experiments.test_set_unchecked", EXPP, "if f.shape != f_top.shape or not np.allclose(gt_i, gt):",
      "if f.shape != f_top.shape:"),
    m("experiments.best_fid_is_highest", EXPP, "best_value = table[fid_cols].min(axis=1)",
      "best_value = table[fid_cols].max(axis=1)"),
    # (pairs=[("top", "x")] for [("x", "top")] is left out: equivalent, the tie rule reads only
    # "indistinguishable", and the percentile interval of -s is minus that of s)
    # sweep: the lookup of a point already pushed
    m("sweep.on_remote_inverted", SWEEP, 'return bool(git("ls-remote", url, exp_ref(commit, name)',
      'return not bool(git("ls-remote", url, exp_ref(commit, name)'),
    m("sweep.on_remote_by_name_alone", SWEEP, 'git("ls-remote", url, exp_ref(commit, name), check=False',
      'git("ls-remote", url, name, check=False'),
    m("sweep.ref_with_the_whole_sha", SJOB, 'return f"refs/exps/{commit[:2]}/{commit[2:]}/{name}"',
      'return f"refs/exps/{commit[:2]}/{commit}/{name}"'),
    m("sweep.remote_has_from_exit_code", SJOB, "return bool(out.stdout.strip())", "return out.returncode == 0"),
    m("sweep.pushed_points_resubmitted", SWEEP, "if not _on_remote(git_url, commit, n)]", "if _on_remote(git_url, commit, n)]"),
    m("sweep.job_on_remote_runs_again", SJOB, "if exists and not spec.read:", "if exists and spec.read:"),
    m("sweep.name_depends_on_order", SJOB, "ordered = sorted(overrides)", "ordered = list(overrides)"),
    # the portable pin: a process that loaded numpy first, and MKL's branch
    m("numerics.pinned_after_numpy", NUM, 'if "numpy" in sys.modules or "torch" in sys.modules:',
      'if "torch" in sys.modules:'),
    m("numerics.mkl_branch_dropped", NUM, '        "MKL_CBWR": "COMPATIBLE",', ''),
    # verify: what is promised, params one side sets, the stage that wrote a difference, the bytes
    m("verify.report_promised", VERIFY, 'UNPROMISED = (TIMINGS, "reports/report.md", PROVENANCE)',
      'UNPROMISED = (TIMINGS, PROVENANCE)'),
    m("verify.params_both_sides_only", VERIFY, "for k in sorted(set(theirs) | set(ours)):",
      "for k in sorted(set(theirs) & set(ours)):"),
    m("verify.reader_before_writer", VERIFY, 'd["path"] == o or d["path"].startswith(o.rstrip("/") + "/") or',
      'd["path"] == o or'),
    m("verify.lock_trusted", VERIFY, "actual, tree = workspace.hash(path)", "actual, tree = outputs(ours).get(path), None"),
    # the Halton shift: every roll reachable
    m("order.shift_never_last_row", DEC, "offsets = (_uniform((b, 2), generator, device) * side).long()",
      "offsets = (_uniform((b, 2), generator, device) * (side - 1)).long()"),
    # LaMa's area cap belongs to LaMa
    m("masks.lama_cap_excluded", MASKS, 'return 0.0 < missing_fraction(known) <= p["max_tamper_area"]',
      'return 0.0 < missing_fraction(known) < p["max_tamper_area"]'),
    # P-IDS / U-IDS never per bucket
    m("evaluation.ids_fitted_per_bucket", EVAL, "fitted=False)", "fitted=True)"),
    # scoring: images paired by name; memory for the images one forward really holds
    m("scoring.paired_by_count", SCORING, "if names != gt_names:", "if len(names) != len(gt_names):"),
    m("scoring.memory_of_a_whole_chunk", SCORING, "return min(inception_chunk(batch_size, device), max(n_images, 1))",
      "return inception_chunk(batch_size, device)"),
    # the family stage: its own masks, for filling and for scoring
    m("family.filled_under_the_main_masks", FAMILY, 'desc=f"{family}: inpaint {decoder.name}", test_set=test)',
      'desc=f"{family}: inpaint {decoder.name}")'),
    m("family.scored_with_the_main_masks", FAMILY, "np.load(paths.GT_FEATURES), test, test.folder",
      "np.load(paths.GT_FEATURES), MAIN, test.folder"),
    # the experiments page: the harmonic fill is a baseline
    m("experiments.harmonic_read_as_a_decoder", EXPP, "if k not in BASELINES} or {",
      'if k not in ("masked_input", "onestep", "recon")} or {'),
    # the evaluate stage: each family on its own evidence
    m("evaluate.family_on_the_main_evidence", EVALUATE, "judge(read_run(decoders, TestSet(f)), gt,",
      "judge(read_run(decoders), gt,"),
]


def module_of(mutant: Mutant) -> str:
    return mutant.name.split(".")[0]


def copy_project(src: Path, dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=src, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        if (src / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dest / name)


def run_mutant(project: Path, mutant: Mutant, timeout: int) -> tuple[str, float, str]:
    for path, old, new in mutant.edits:
        file = project / path
        text = file.read_text() if file.is_file() else ""
        if text.count(old) == 1:
            break
    else:
        return "does not apply", 0.0, ""
    files, keyword = TESTS[module_of(mutant)]
    tests = [f for f in files if (project / f).is_file()]
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-o", "addopts=", "-p", "no:cacheprovider", *tests]
    if keyword:
        cmd += ["-k", keyword]
    env = {**os.environ, "PYTHONPATH": str(project), "PYTHONDONTWRITEBYTECODE": "1"}
    file.write_text(text.replace(old, new))
    started = time.monotonic()
    try:
        result = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - started
        lines = [ln for ln in result.stdout.splitlines() if ln.startswith("FAILED") or ln.startswith("ERROR")]
        if result.returncode == 0:
            return "survived", seconds, ""
        if result.returncode == 1:
            return "killed", seconds, (lines[0] if lines else "").replace("FAILED ", "")[:110]
        return f"error (pytest exit {result.returncode})", seconds, (result.stdout.strip().splitlines() or [""])[-1][:110]
    except subprocess.TimeoutExpired:
        return "killed (timeout)", time.monotonic() - started, ""
    finally:
        file.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=ROOT, help="the checkout whose code and tests to use")
    parser.add_argument("--only", default="", help="run the mutants whose name starts with this")
    parser.add_argument("--timeout", type=int, default=600, help="seconds per mutant")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    src = args.project.resolve()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True).stdout.strip()
    mutants = [mu for mu in MUTANTS if mu.name.startswith(args.only)]
    rows, counts = [], {}
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        project = Path(tmp) / "project"
        copy_project(src, project)
        if (src.parent / "shared").is_dir():  # the tests find ../shared beside the project
            os.symlink(src.parent / "shared", Path(tmp) / "shared")
        for mutant in mutants:
            outcome, seconds, detail = run_mutant(project, mutant, args.timeout)
            key = outcome.split(" ")[0]
            counts[key] = counts.get(key, 0) + 1
            rows.append(f"| {mutant.name} | {outcome} | {seconds:.0f} | {detail} |")
            print(rows[-1], flush=True)
    applied = sum(v for k, v in counts.items() if k != "does")
    report = "\n".join([
        f"Mutants of {commit} ({src}): {len(mutants)} listed, {applied} applied, {counts.get('killed', 0)} killed, "
        f"{counts.get('survived', 0)} survived, {counts.get('error', 0)} errors, {counts.get('does', 0)} did not apply.",
        "", "| mutant | outcome | seconds | first failing test |", "| --- | --- | --- | --- |", *rows, ""])
    print(report.splitlines()[0])
    survivors = [r.split("|")[1].strip() for r in rows if "| survived |" in r]
    if survivors:
        print("survivors: " + ", ".join(survivors))
    if args.out:
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
