"""Stage report: reports/report.md from the files the pipeline wrote.

Everything in it comes from files (params, metrics, tables, figures, timings), so
the same inputs give the same report; the one exception is the git revision.
Not timed itself (record_time=False): the report cannot contain its own time.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import json
from pathlib import Path


from maskgit.project import paths
from maskgit.algorithms.decoding import Decoding
from maskgit.pages import markdown
from maskgit.pages.markdown import markdown_table
from maskgit.project.grid import decoders
from maskgit.pipeline.runtime import run_stage
from maskgit.project.files import atomic_write_bytes, read_json, sha256_file
from maskgit.project.params import flatten, load_params
from maskgit.project.params import render as render_params
from maskgit.project.errors import InputError
from maskgit.project.gitrepo import SOURCE_PATHS, revision_state

REPORTS = paths.REPORTS
# the order stages run in; timings of other names follow alphabetically
STAGE_ORDER = ["prepare", "train_vqgan", "tokenize", "train_transformer", "inpaint", "baselines",
               "fid-reference", "fid-baselines", "fid-decoders", "family", "plots"]
PREPARED = paths.PREPARED
PACKAGES = ("torch", "torchvision", "dvc", "torch-fidelity", "torchmetrics", "numpy")



def git_state() -> str:
    revision, changed = revision_state()
    if not revision:
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


def metrics_section(title: str, path: str) -> list[str]:
    metrics = flatten(read_json(path), sep="/")
    # dvclive's "step" is the last log index, not a result
    rows = [[f"`{k}`", fmt(v)] for k, v in metrics.items() if k != "step"]
    return [f"### {title}", "", f"From `{path}` (the last logged values and the final summary).", "",
            markdown_table(["metric", "value"], rows, "lr")]


def stale_timing(stage: str, inpaint: dict) -> bool:
    # a decoder or mask family removed from params leaves its old timing file behind: not part of this run
    if stage.startswith("family-"):
        return stage.removeprefix("family-") not in inpaint["mask_families"]
    keys = [d.key for d in decoders(inpaint)]
    return stage.startswith("inpaint-") and stage.removeprefix("inpaint-") not in keys


def timings_section(inpaint: dict) -> list[str]:
    timings = {}
    for path in sorted(paths.TIMINGS.glob("*.json")):
        entry = json.loads(path.read_text())
        if not isinstance(entry, dict) or not isinstance(entry.get("seconds"), (int, float)):
            raise InputError(f"{path}: expected {{\"stage\": name, \"seconds\": number}}")
        name = entry.get("stage", path.stem)
        if stale_timing(name, inpaint):
            continue
        timings[name] = float(entry["seconds"])
    if not timings:
        return ["No timings found in `timings/`.", ""]

    def order(name):
        base = name.split("-")[0] if name.startswith(("inpaint-", "family-")) else name
        keys = [d.key for d in decoders(inpaint)]
        if base in STAGE_ORDER:
            return (STAGE_ORDER.index(base), keys.index(name.removeprefix("inpaint-")) if base == "inpaint" else 0, name)
        return (len(STAGE_ORDER), 0, name)

    total = sum(timings.values())
    rows = [[name, f"{s:.1f}", f"{s / 60:.1f}", f"{s / total * 100:.1f} %" if total else "—"]
            for name, s in sorted(timings.items(), key=lambda kv: order(kv[0]))]
    rows.append(["**total**", f"**{total:.1f}**", f"**{total / 60:.1f}**", "100 %" if total else "—"])
    return [markdown_table(["stage", "seconds", "minutes", "share"], rows, "lrrr"),
            "Wall time of each stage's last run (`timings/*.json`); a stage DVC skipped keeps its earlier time.", ""]


def provenance(params: dict) -> list[str]:
    """What a reader needs to reproduce or trust the numbers: code, packages, weights, seeds, devices."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(pkg):
        try:
            return version(pkg)
        except PackageNotFoundError:
            return "not installed"

    lines = [f"- Code: {git_state()}.",
             "- Packages: " + ", ".join(f"{p} {ver(p)}" for p in PACKAGES) + "."]
    inception = {read_json(p).get("inception_weights_sha256") for p in sorted(paths.TIMINGS.glob("fid-*.json"))}
    inception.discard(None)
    lines.append("- Inception weights (sha256): " + (", ".join(f"`{h}`" for h in sorted(inception))
                                                     if inception else "not recorded (FID stages run by older code)") + ".")
    checkpoint = params["vqgan"]["checkpoint"]
    if checkpoint and Path(checkpoint).is_file():
        lines.append(f"- Given VQGAN checkpoint `{checkpoint}` (sha256): `{sha256_file(checkpoint)}`.")
    for path in (paths.VQGAN, paths.TRANSFORMER):
        if path.is_file():
            lines.append(f"- `{path}` (sha256): `{sha256_file(path)}`.")
    seeds = [f"`{section}.seed` {value['seed']}" for section, value in params.items()
             if isinstance(value, dict) and "seed" in value]
    lines.append("- Seeds: " + ", ".join(seeds) + ".")
    devices, numerics = {}, stage_numerics(params)
    for path in sorted(paths.TIMINGS.glob("*.json")):
        entry = json.loads(path.read_text())
        if stale_timing(entry.get("stage", path.stem), params["inpaint"]):
            continue
        devices.setdefault(entry.get("device", "not recorded"), []).append(entry.get("stage", path.stem))
    lines.append("- Devices (per stage, `timings/*.json`; wall times in Timings above): "
                 + "; ".join(f"{d}: {', '.join(stages)}" for d, stages in devices.items()) + ".")
    return lines + ["", *numerics_lines(numerics), ""]


def stage_numerics(params: dict) -> dict[str, dict]:
    """{stage: what decided its bits} from timings/*.json (maskgit.pipeline.numerics)."""
    out = {}
    for path in sorted(paths.TIMINGS.glob("*.json")):
        entry = json.loads(path.read_text())
        name = entry.get("stage", path.stem)
        if not stale_timing(name, params["inpaint"]) and isinstance(entry.get("numerics"), dict):
            out[name] = entry["numerics"]
    return out


def numerics_lines(numerics: dict[str, dict]) -> list[str]:
    """The numerics table: one column when every stage ran under the same settings,
    else the fields that differ between stages per stage."""
    if not numerics:
        return ["No stage recorded its numerics (`timings/*.json` from older code)."]
    stages = list(numerics)
    fields = list(dict.fromkeys(k for n in numerics.values() for k in n))
    same = [f for f in fields if len({json.dumps(numerics[s].get(f)) for s in stages}) == 1]
    rows = [[f"`{f}`", str(numerics[stages[0]].get(f))] for f in same]
    lines = ["What decided the bits of every stage (`reports/provenance.json`; "
             "`python -m maskgit.verify` compares a clone's run with it):", "",
             markdown_table(["field", "value"], rows, "ll")]
    differ = [f for f in fields if f not in same]
    if differ:
        rows = [[s, *[str(numerics[s].get(f, "—")) for f in differ]] for s in stages]
        lines += ["", "Fields that differ between stages:", "",
                  markdown_table(["stage", *differ], rows, "l" * (len(differ) + 1))]
    return lines


def data_line(pr: dict, size: int) -> str:
    # counted on disk: with source folders the n_* params do not apply
    count = {split: len(list((PREPARED / split).glob("*.png"))) for split in ("train", "val", "test/gt")}
    where = f"procedural (seed {pr['seed']})" if pr["source"] == "procedural" else f"folders (`{pr['train_dir']}`, ...)"
    return (f"{where}, {size}x{size}; {count['train']} train, {count['val']} val, "
            f"{count['test/gt']} test images")


def main():
    params = load_params()
    ip, pr, vq = params["inpaint"], params["prepare"], params["vqgan"]
    grid = decoders(ip)
    names = [d.name for d in grid]
    ev = read_json(paths.EVALUATION)
    # counted on disk: with user folders prepare.n_test does not apply
    n_scored = ev["images"]
    steps = Decoding.from_params(ip, ip["schedules"][0]).steps
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
        f"- Decoding: schedules {', '.join(ip['schedules'])} x orders {', '.join(ip['orders'])}"
        + (" (Halton shifted per image)" if ip["halton_shift"] and "halton" in ip["orders"] else "")
        + f"; total_iter {ip['total_iter']}, sweet spot {ip['sweet_spot']} "
        f"({steps} steps run), {ip['sampling']}, choice temperature {ip['choice_temperature']}, "
        f"composite: {ip['composite']}, pixel guidance {ip['pixel_guidance']}"
        + (" (the lab's decoding)." if ip["pixel_guidance"] == 0 else " (partly known tokens weigh their known pixels)."),
        "",
        "<details><summary>params.yaml</summary>",
        "",
        "```yaml",
        render_params(params).rstrip(),  # as params.yaml itself is written: every key with its comment
        "```",
        "",
        "</details>",
        "",
        "## Results",
        "",
        f"Each set of {n_scored} scored test images against the ground truth: FID and KID (lower is better), "
        "PSNR and SSIM inside the missing region (higher is better), each with its "
        f"{ev['confidence']:.0%} interval. KID here is the unbiased estimate over the whole set. Test masks: "
        f"{pr['test_masks']}" + (f"; more mask families below ({', '.join(ip['mask_families'])})."
                                 if ip["mask_families"] else "."),
        "",
        markdown.results_table(ev, names),
        "",
        *(["### Decoding order", "",
           "Which tokens a step reveals (`inpaint.orders`), on each schedule; the schedule decides how many.", "",
           *markdown.order_table(ev, ip["schedules"], ip["orders"])] if len(ip["orders"]) > 1 else []),
        "### Reading",
        "",
        *markdown.tied_lines(ev),
        *markdown.verdict_lines(ev),
        "",
        *markdown.how_sure(ev),
        "",
        "### By mask area",
        "",
        *markdown.buckets_table(ev),
    ]
    if (paths.EVALUATION_FIGURES / "mask_area.png").is_file():
        caption = "Hole PSNR and SSIM against the missing-pixel fraction, with intervals."
        out += [f"![{caption}](evaluation/mask_area.png)", "", f"*{caption}*", ""]
    families = markdown.families_section(ev, names)
    if families:
        out += ["## Mask families", "", *families]
        if (paths.EVALUATION_FIGURES / "families.png").is_file():
            caption = "Every set's FID on the main test set and under each mask family, with intervals."
            out += [f"![{caption}](evaluation/families.png)", "", f"*{caption}*", ""]

    figures = REPORTS / "figures"
    captions = [
        ("fid.png", "FID per decoder (schedule, and order where it is not confidence); the baselines as horizontal lines."),
        ("gamma.png", "The mask schedules; dots: fraction still masked after each decode step."),
        ("comparison.png", "The same test images under every decoder and the baselines."),
        *[(f"grid_{d.name}.png", f"Inpainting with the {d.describe()}.") for d in grid],
        *[(f"steps_{d.name}.png", f"Step-by-step decoding, {d.describe()}: latent mask (white = masked) "
                                  "and the image decoded at each step.") for d in grid],
        ("training.png", "Training curves of the transformer and the VQGAN."),
    ]
    out += ["## Figures", ""]
    for name, caption in captions:
        if (figures / name).is_file():  # steps_* exist only when per-step arrays were kept
            out += [f"![{caption}](figures/{name})", "", f"*{caption}*", ""]

    out += ["## Training", ""]
    out += metrics_section("VQGAN", paths.LIVE_VQGAN / "metrics.json")
    out += metrics_section("Transformer", paths.LIVE_TRANSFORMER / "metrics.json")
    out += ["## Timings", "", *timings_section(ip)]
    out += ["## Provenance", "", *provenance(params)]
    atomic_write_bytes(REPORTS / "provenance.json",
                       (json.dumps({"stages": stage_numerics(params)}, indent=1, sort_keys=True) + "\n").encode())
    atomic_write_bytes(REPORTS / "report.md", ("\n".join(out).rstrip() + "\n").encode())


if __name__ == "__main__":
    run_stage(main, "report", record_time=False)
