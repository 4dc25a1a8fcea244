"""Named one-line mutants of the decoding, schedule, masking, loss and metric modules,
and which of them the unit tests kill. Not part of CI (minutes, not seconds):

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

# the unit tests run for a mutant of each module (files that do not exist are left out)
TESTS = {
    "decoding": (["tests/test_decode.py", "tests/test_inpaint.py", "tests/test_bench.py"], "not quick_run"),
    "schedules": (["tests/test_decode.py", "tests/test_transformer.py"], None),
    "masking": (["tests/test_decode.py", "tests/test_transformer.py", "tests/test_inpaint.py"], None),
    "objective": (["tests/test_objective.py", "tests/test_transformer.py"], None),
    "metrics": (["tests/test_metric_values.py", "tests/test_fid.py"], None),
}


@dataclass
class Mutant:
    name: str  # <module>.<what the bug is>
    edits: list  # candidates (path, old, new); the first whose old text is found applies


def m(name, path, old, new, *alternatives):
    return Mutant(name, [(path, old, new), *alternatives])


MUTANTS = [
    # decoding: the rules of ../shared/GUIDE.md section 1
    m("decoding.tau_not_annealed", DEC, "tau = annealed_temperature(choice_temperature, r)", "tau = choice_temperature"),
    m("decoding.base_tau_in_confidence", DEC, "confidence = chosen_log_prob + tau * _gumbel(",
      "confidence = chosen_log_prob + choice_temperature * _gumbel("),
    m("decoding.tau_grows", DEC, "return choice_temperature * (1.0 - r)", "return choice_temperature * r"),
    m("decoding.confidence_from_raw_logits", DEC, "chosen_log_prob = log_probs.gather(", "chosen_log_prob = logits.gather("),
    m("decoding.known_tokens_replaced", DEC, "chosen = torch.where(masked, sampled, current)", "chosen = sampled"),
    m("decoding.known_tokens_not_infinitely_confident", DEC,
      "confidence = torch.where(masked, confidence, torch.full_like(confidence, math.inf))", "confidence = confidence"),
    m("decoding.n0_from_sequence_length", DEC, "n0 = unknown.sum(dim=1)  #",
      "n0 = torch.full_like(unknown.sum(dim=1), unknown.shape[1])  #"),
    m("decoding.n0_from_first_image", DEC, "n0 = unknown.sum(dim=1)  #", "n0 = unknown.sum(dim=1)[:1].expand(len(unknown))  #"),
    m("decoding.r_off_by_one", DEC, "r = (t + 1) / total_iter", "r = t / total_iter"),
    m("decoding.mask_id_predicted", DEC, "logits = transformer(current)[..., :codebook_size].float()",
      "logits = transformer(current).float()"),
    m("decoding.no_reveal_at_least_one", DEC, "n = torch.minimum(n.clamp(min=1), currently_unknown - 1)",
      "n = torch.minimum(n, currently_unknown - 1)"),
    m("decoding.no_keep_at_least_one", DEC, "n = torch.minimum(n.clamp(min=1), currently_unknown - 1)", "n = n.clamp(min=1)"),
    m("decoding.ceil_not_floor", DEC, "n = torch.floor(n0.double()", "n = torch.ceil(n0.double()"),
    m("decoding.float_floor_without_epsilon", DEC, "* gamma(schedule, r) + 1e-9).long()", "* gamma(schedule, r)).long()"),
    m("decoding.keep_highest_confidence", DEC, "order = torch.sort(confidence, dim=1, stable=True).indices",
      "order = torch.sort(-confidence, dim=1, stable=True).indices"),
    m("decoding.ties_to_higher_index", DEC, "order = torch.sort(confidence, dim=1, stable=True).indices",
      "order = (confidence.shape[1] - 1 - torch.sort(confidence.flip(1), dim=1, stable=True).indices)"),
    m("decoding.sweet_spot_ignored", DEC, "steps = min(sweet_spot, total_iter)", "steps = total_iter"),
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
