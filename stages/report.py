"""Stage report: reports/report.md (and its verdict matrix, reports/verdicts.png) from
the files the pipeline wrote.

The first screen is the answer: the verdicts per metric, the results table and the
matrix of every verdict; what backs them (every verdict in words, the buckets, the
figures, training, timings, provenance) follows, the long parts folded.
Everything in it comes from files (params, metrics, tables, figures, timings), so
the same inputs give the same report; the one exception is the git revision.
Not timed itself (record_time=False): the report cannot contain its own time.
"""

from maskgit.pipeline.numerics import pin_numerics

pin_numerics()  # before numpy and torch load: they read their kernel settings then (portable mode)

import json
import re
from pathlib import Path


from maskgit.project import paths
from maskgit.algorithms.decoding import Decoding
from maskgit.pages import markdown
from maskgit.pages.figures import verdict_figure
from maskgit.pages.markdown import markdown_table
from maskgit.project.grid import decoders
from maskgit.pipeline.runtime import run_stage
from maskgit.project.files import atomic_write_bytes, read_json, sha256_file
from maskgit.project.params import defaults, flatten, load_params
from maskgit.project.errors import InputError
from maskgit.project.gitrepo import SOURCE_PATHS, revision_state

REPORTS = paths.REPORTS
VERDICTS = REPORTS / "verdicts.png"  # the verdict matrix; the report links it beside itself
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


def training_section(runs: dict[str, Path]) -> list[str]:
    """The training runs' last logged values and final summaries, side by side in one table."""
    columns = []
    for path in runs.values():
        metrics = flatten(read_json(path), sep="/")
        # dvclive's "step" is the last log index, not a result
        columns.append([[f"`{k}`", fmt(v)] for k, v in metrics.items() if k != "step"])
    depth = max(map(len, columns))
    rows = [sum((c[i] if i < len(c) else ["", ""] for c in columns), []) for i in range(depth)]
    header = sum(([f"{title}", "value"] for title in runs), [])
    sources = " and ".join(f"`{path}`" for path in runs.values())
    return [f"The last logged values and the final summary ({sources}).", "",
            markdown_table(header, rows, "lr" * len(runs))]


def yaml_value(value) -> str:
    """A param's value as params.yaml writes it: null, true, [a, b]."""
    if isinstance(value, list):
        return "[" + ", ".join(map(yaml_value, value)) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def params_lines(params: dict) -> list[str]:
    """Every param, a line per section, the ones that differ from their default in bold:
    the whole of params.yaml in a few lines (its comments are in params.yaml itself)."""
    shipped = flatten(defaults())
    changed = []
    lines = []
    for section, values in params.items():
        if not isinstance(values, dict):
            values, section = {section: values}, ""
        cells = []
        for key, value in values.items():
            name = f"{section}.{key}" if section else key
            cell = f"{key} `{yaml_value(value)}`"
            if name in shipped and shipped[name] != value:
                changed.append(name)
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"- {'`' + section + '`: ' if section else ''}" + ", ".join(cells))
    head = (f"{len(changed)} differ from the defaults (in bold): " + ", ".join(f"`{k}`" for k in changed)
            if changed else "every one at its default (`python -m maskgit.preset demo`)")
    summary = f"{len(changed)} changed from the defaults" if changed else "all at their defaults"
    return [f"<details><summary>params.yaml: {summary}</summary>", "",
            f"Every param, {head}; what each means is its comment in `params.yaml`.", "", *lines, "", "</details>", ""]


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
    """The numerics: the fields every stage shares, then a table of the fields that differ,
    a row per group of stages that agree on them."""
    if not numerics:
        return ["No stage recorded its numerics (`timings/*.json` from older code)."]
    stages = list(numerics)
    fields = list(dict.fromkeys(k for n in numerics.values() for k in n))
    same = [f for f in fields if len({json.dumps(numerics[s].get(f)) for s in stages}) == 1]
    # one paragraph, not a row per field: the report's length goes to the results
    lines = ["What decided the bits of every stage (`reports/provenance.json`; "
             "`python -m maskgit.verify` compares a clone's run with it): "
             + "; ".join(f"`{f}` {numerics[stages[0]].get(f)}" for f in same) + "."]
    differ = [f for f in fields if f not in same]
    if differ:
        # stages that agree on every differing field share a row: a few rows, not one per stage
        groups: dict[tuple[str, ...], list[str]] = {}
        for s in stages:
            groups.setdefault(tuple(str(numerics[s].get(f, "—")) for f in differ), []).append(s)
        rows = [[", ".join(members), *values] for values, members in groups.items()]
        lines += ["", "Fields that differ between stages:", "",
                  markdown_table(["stages", *differ], rows, "l" * (len(differ) + 1))]
    return lines


def data_line(pr: dict, size: int) -> str:
    # counted on disk: with source folders the n_* params do not apply
    count = {split: len(list((PREPARED / split).glob("*.png"))) for split in ("train", "val", "test/gt")}
    where = f"procedural (seed {pr['seed']})" if pr["source"] == "procedural" else f"folders (`{pr['train_dir']}`, ...)"
    return (f"{where}, {size}x{size}; {count['train']} train, {count['val']} val, "
            f"{count['test/gt']} test images")


def figure_lines(name: str, caption: str, folder: str = "figures") -> list[str]:
    """A figure and its caption, one paragraph; folder relative to the report ("" beside it)."""
    return [f"![{caption}]({folder + '/' if folder else ''}{name}) *{caption}*", ""]


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
    verdict_figure(ev, VERDICTS)
    figures = REPORTS / "figures"

    # the first screen: the answer, then the numbers it rests on
    out = [
        "# MaskGIT inpainting: report",
        "",
        markdown.glance_line(ev, names, sum(s not in names for s in ev["sets"])),
        "",
        markdown.answer_table(ev, names),
        "",
        "## Results",
        "",
        markdown.results_table(ev, names),
        # the caption under the table, so that the table starts on the first screen
        f"Each set of {n_scored} scored test images against the ground truth: FID and KID (lower is better), "
        "PSNR and SSIM inside the missing region (higher is better), each with its "
        f"{ev['confidence']:.0%} interval. KID here is the unbiased estimate over the whole set. Test masks: "
        f"{pr['test_masks']}" + (f"; more mask families below ({', '.join(ip['mask_families'])})."
                                 if ip["mask_families"] else "."),
        "",
        *figure_lines(VERDICTS.name, "Every paired verdict of this report, row against column: better, worse or "
                                     "indistinguishable after the correction; blank where a pair is not compared.",
                      folder=""),
        *(["### Decoding order", "",
           "Which tokens a step reveals (`inpaint.orders`), on each schedule; the schedule decides how many.", "",
           *markdown.order_table(ev, ip["schedules"], ip["orders"])] if len(ip["orders"]) > 1 else []),
        f"<details><summary>Every verdict in words, and how sure they are ({len(ev['pairs'])} comparisons)"
        "</summary>",
        "",
        *markdown.verdict_lines(ev),
        "",
        *markdown.how_sure(ev),
        "",
        "</details>",
        "",
        "### By mask area",
        "",
        "<details><summary>Every set by missing-pixel fraction (the share of the image missing), with intervals"
        "</summary>",
        "",
        *markdown.buckets_table(ev),
        "</details>",
        "",
    ]
    if (paths.EVALUATION_FIGURES / "mask_area.png").is_file():
        out += figure_lines("mask_area.png", "Hole PSNR and SSIM against the missing-pixel fraction, with intervals.",
                            folder="evaluation")
    families = markdown.families_section(ev, names)
    if families:
        out += ["## Mask families", "", *families]
        if (paths.EVALUATION_FIGURES / "families.png").is_file():
            out += figure_lines("families.png", "Every set's FID on the main test set and under each mask family, "
                                "with intervals.", folder="evaluation")

    out += ["## Figures", ""]
    for name, caption in [
        ("fid.png", "FID per decoder (schedule, and order where it is not confidence); the baselines as horizontal lines."),
        ("comparison.png", "The same test images under every decoder and the baselines."),
        ("gamma.png", "The mask schedules; dots: fraction still masked after each decode step."),
        ("training.png", "Training curves of the transformer and the VQGAN."),
    ]:
        if (figures / name).is_file():
            out += figure_lines(name, caption)
    # one paragraph per decoder, folded: its fills and, where per-step arrays were kept, its steps
    per_decoder = []
    for d in grid:
        shown = [f"![{what}, {d.describe()}](figures/{name})" for name, what in
                 ((f"grid_{d.name}.png", "Inpainting"), (f"steps_{d.name}.png", "Step-by-step decoding"))
                 if (figures / name).is_file()]
        if shown:
            per_decoder += [f"**{d.describe()}**: " + " ".join(shown), ""]
    if per_decoder:
        out += ["<details><summary>Each decoder's fills, and its decoding step by step (latent mask, white = masked; "
                "the image decoded at each step)</summary>", "", *per_decoder, "</details>", ""]

    out += [
        "## What was run",
        "",
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
        *params_lines(params),
    ]
    out += ["## Training", "", *training_section({"VQGAN": paths.LIVE_VQGAN / "metrics.json",
                                                  "transformer": paths.LIVE_TRANSFORMER / "metrics.json"})]
    out += ["## Timings", "", *timings_section(ip)]
    out += ["## Provenance", "", *provenance(params)]
    atomic_write_bytes(REPORTS / "provenance.json",
                       (json.dumps({"stages": stage_numerics(params)}, indent=1, sort_keys=True) + "\n").encode())
    # a table's own line end and the blank after it make two blank lines: one is enough
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(out).rstrip() + "\n")
    atomic_write_bytes(REPORTS / "report.md", text.encode())


if __name__ == "__main__":
    run_stage(main, "report", record_time=False)
