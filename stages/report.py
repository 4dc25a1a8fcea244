"""Stage report: reports/report.md from the files the pipeline wrote.

Everything in it comes from files (params, metrics, tables, figures, timings), so
the same inputs give the same report; the one exception is the git revision.
Not timed itself (record_time=False): the report cannot contain its own time.
"""

import json
import subprocess
from pathlib import Path

import yaml

from maskgit.pipeline import paths
from maskgit.pipeline import plotting
from maskgit.pipeline.runtime import run_stage
from maskgit.pipeline.files import atomic_write_bytes
from maskgit.pipeline.params import load_params
from maskgit.pipeline.errors import InputError

REPORTS = paths.REPORTS
# the order stages run in; timings of other names follow alphabetically
STAGE_ORDER = ["prepare", "train_vqgan", "tokenize", "train_transformer", "inpaint", "baselines",
               "fid-reference", "fid-baselines", "fid-schedules", "plots"]
# what counts as "the code and params" when telling whether the tree is dirty: the
# pipeline's own outputs (dvc.lock, metrics, timings, reports) change on every
# run and would otherwise always mark it dirty
SOURCE_PATHS = ["params.yaml", "dvc.yaml", "pyproject.toml", "maskgit", "stages"]
PREPARED = paths.PREPARED


def read_json(path):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found (run the stage that writes it first)")
    return json.loads(path.read_text())


def git_state() -> str:
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=30).stdout.strip()

    try:
        revision = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=all", "--", *SOURCE_PATHS).splitlines()
    except (OSError, subprocess.SubprocessError):
        return "git revision unknown (not a git checkout, or git not installed)"
    if changed:
        return (f"git revision `{revision}` with uncommitted changes in {len(changed)} file(s) "
                f"under {', '.join(SOURCE_PATHS)}")
    return f"git revision `{revision}` (clean: code and params as committed)"


def fmt(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}/"))
        else:
            out[f"{prefix}{key}"] = value
    return out


def metrics_section(title: str, path: str) -> list[str]:
    metrics = flatten(read_json(path))
    # dvclive's "step" is the last log index, not a result
    rows = [[f"`{k}`", fmt(v)] for k, v in metrics.items() if k != "step"]
    return [f"### {title}", "", f"From `{path}` (the last logged values and the final summary).", "",
            plotting.markdown_table(["metric", "value"], rows, "lr")]


def timings_section(schedules: list[str]) -> list[str]:
    timings = {}
    for path in sorted(paths.TIMINGS.glob("*.json")):
        entry = json.loads(path.read_text())
        if not isinstance(entry, dict) or not isinstance(entry.get("seconds"), (int, float)):
            raise InputError(f"{path}: expected {{\"stage\": name, \"seconds\": number}}")
        name = entry.get("stage", path.stem)
        # a schedule removed from params leaves its old timing file behind: not part of this run
        if name.startswith("inpaint-") and name.removeprefix("inpaint-") not in schedules:
            continue
        timings[name] = float(entry["seconds"])
    if not timings:
        return ["No timings found in `timings/`.", ""]

    def order(name):
        base = "inpaint" if name.startswith("inpaint-") else name
        schedule = name.removeprefix("inpaint-")
        if base in STAGE_ORDER:
            return (STAGE_ORDER.index(base), schedules.index(schedule) if base == "inpaint" else 0, name)
        return (len(STAGE_ORDER), 0, name)

    total = sum(timings.values())
    rows = [[name, f"{s:.1f}", f"{s / 60:.1f}", f"{s / total * 100:.1f} %" if total else "—"]
            for name, s in sorted(timings.items(), key=lambda kv: order(kv[0]))]
    rows.append(["**total**", f"**{total:.1f}**", f"**{total / 60:.1f}**", "100 %" if total else "—"])
    return [plotting.markdown_table(["stage", "seconds", "minutes", "share"], rows, "lrrr"),
            "Wall time of each stage's last run (`timings/*.json`); a stage DVC skipped keeps its earlier time.", ""]


def reading(table) -> list[str]:
    """The numbers a reader looks for first, said in words."""
    best = plotting.best_schedule(table)
    masked, onestep, recon, harmonic = (plotting.row(table, n) for n in ("masked_input", "onestep", "recon", "harmonic"))
    gain = (masked["fid"] - best["fid"]) / masked["fid"] * 100
    lines = [f"- Best schedule: **{best['name']}** with FID **{best['fid']:.2f}** "
             f"(KID {best['kid']:.4f} ± {best['kid_std']:.4f})."]
    if gain >= 0:
        lines.append(f"- It improves on the masked input (FID {masked['fid']:.2f}) by **{gain:.1f} %**.")
    else:
        lines.append(f"- It is **{-gain:.1f} % worse** than the masked input (FID {masked['fid']:.2f}).")
    diff = onestep["fid"] - best["fid"]
    if diff > 0:
        lines.append(f"- It beats one-step decoding (FID {onestep['fid']:.2f}) by {diff:.2f} FID "
                     f"({diff / onestep['fid'] * 100:.1f} %).")
    else:
        lines.append(f"- It does **not** beat one-step decoding (FID {onestep['fid']:.2f}, {-diff:.2f} lower): "
                     f"iterative decoding does not help in this run.")
    diff = harmonic["fid"] - best["fid"]
    if diff > 0:
        lines.append(f"- It beats the harmonic fill, which uses no model (FID {harmonic['fid']:.2f}), by {diff:.2f} FID.")
    else:
        lines.append(f"- It does **not** beat the harmonic fill, which uses no model (FID {harmonic['fid']:.2f}, "
                     f"{-diff:.2f} lower): the model has not learned more than smooth continuation of the border.")
    gap = best["fid"] - recon["fid"]
    span = masked["fid"] - recon["fid"]
    if gap > 0:
        closed = f"; it closes {(masked['fid'] - best['fid']) / span * 100:.1f} % of the distance from the masked " \
                 f"input to the floor" if span > 0 else ""
        lines.append(f"- Gap to the VQGAN reconstruction floor (FID {recon['fid']:.2f}): **{gap:.2f}** FID, "
                     f"{gap / recon['fid'] * 100:.1f} % above the floor{closed}.")
    else:
        lines.append(f"- It reaches the VQGAN reconstruction floor (FID {recon['fid']:.2f}, {-gap:.2f} below it): "
                     f"the tokenizer, not the transformer, limits the result.")
    schedules = table[table["kind"] == "schedule"]
    if len(schedules) > 1:
        by_kid = schedules.loc[schedules["kid"].idxmin(), "name"]
        ranking = ", ".join(f"{r['name']} {r['fid']:.2f}" for r in schedules.sort_values("fid", kind="stable")
                            .to_dict("records"))
        agree = "KID agrees" if by_kid == best["name"] else f"KID instead ranks **{by_kid}** best"
        lines.append(f"- Ranking by FID: {ranking}. {agree}.")
    return lines + [""]


def data_line(pr: dict, size: int) -> str:
    # counted on disk: with source folders the n_* params do not apply
    count = {split: len(list((PREPARED / split).glob("*.png"))) for split in ("train", "val", "test/gt")}
    where = f"procedural (seed {pr['seed']})" if pr["source"] == "procedural" else f"folders (`{pr['train_dir']}`, ...)"
    return (f"{where}, {size}x{size}; {count['train']} train, {count['val']} val, "
            f"{count['test/gt']} test images")


def main():
    params = load_params()
    ip, pr, vq = params["inpaint"], params["prepare"], params["vqgan"]
    schedules = ip["schedules"]
    table = plotting.fid_table(read_json(paths.FID_SCHEDULES), read_json(paths.FID_BASELINES),
                               schedules)
    fid_md = (REPORTS / "tables" / "fid.md")
    if not fid_md.is_file():
        raise InputError(f"{fid_md}: not found (run the plots stage first)")
    steps = min(ip["sweet_spot"], ip["total_iter"])
    tokens = vq["latent_resolution"] ** 2

    out = [
        "# MaskGIT inpainting: report",
        "",
        "## What was run",
        "",
        f"- Code: {git_state()}.",
        f"- Data: {data_line(pr, params['data']['image_size'])}.",
        f"- Tokens: {vq['latent_resolution']}x{vq['latent_resolution']} = {tokens} per image, "
        f"codebook of {vq['num_codebook_vectors']}"
        + (f"; pretrained VQGAN `{vq['checkpoint']}`, not trained here." if vq["checkpoint"] else "."),
        f"- Decoding: schedules {', '.join(schedules)}; total_iter {ip['total_iter']}, sweet spot {ip['sweet_spot']} "
        f"({steps} steps run), {ip['sampling']}, choice temperature {ip['choice_temperature']}, "
        f"composite: {ip['composite']}, pixel guidance {ip['pixel_guidance']}"
        + (" (the lab's decoding)." if ip["pixel_guidance"] == 0 else " (partly known tokens weigh their known pixels)."),
        "",
        "<details><summary>params.yaml</summary>",
        "",
        "```yaml",
        # flow style for lists only: one line per key, compact but still YAML
        yaml.safe_dump(params, sort_keys=False, default_flow_style=None, width=120).rstrip(),
        "```",
        "",
        "</details>",
        "",
        "## Results",
        "",
        f"FID and KID of each set of {pr['n_test']} inpainted test images against the ground truth "
        "(lower is better). *vs masked input*: change of FID relative to the masked input; "
        "*gap to floor*: FID above the VQGAN reconstruction, the best token inpainting can do.",
        "",
        fid_md.read_text(),
        "### Reading",
        "",
        *reading(table),
    ]

    figures = REPORTS / "figures"
    captions = [
        ("fid.png", "FID per schedule; the baselines as horizontal lines."),
        ("gamma.png", "The mask schedules; dots: fraction still masked after each decode step."),
        ("comparison.png", "The same test images under every schedule and the baselines."),
        *[(f"grid_{s}.png", f"Inpainting with the {s} schedule.") for s in schedules],
        *[(f"steps_{s}.png", f"Step-by-step decoding, {s} schedule: latent mask (white = masked) "
                             "and the image decoded at each step.") for s in schedules],
        ("training.png", "Training curves of the transformer and the VQGAN."),
    ]
    out += ["## Figures", ""]
    for name, caption in captions:
        if (figures / name).is_file():  # steps_* exist only when per-step arrays were kept
            out += [f"![{caption}](figures/{name})", "", f"*{caption}*", ""]

    out += ["## Training", ""]
    out += metrics_section("VQGAN", paths.LIVE_VQGAN / "metrics.json")
    out += metrics_section("Transformer", paths.LIVE_TRANSFORMER / "metrics.json")
    out += ["## Timings", "", *timings_section(schedules)]
    atomic_write_bytes(REPORTS / "report.md", ("\n".join(out).rstrip() + "\n").encode())


if __name__ == "__main__":
    run_stage(main, "report", record_time=False)
