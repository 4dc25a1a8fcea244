"""What the prepared GPU check needs on a lent GPU machine, made here before the calls.

tools/gpu_check.py is the check that runs there (docs/gpu.md, "The prepared GPU
check"); this runs here, where pip reaches the package registry:

    python tools/gpu_prepare.py                      # fills .gpu/ and prints the device calls
    python tools/gpu_prepare.py --weights FILE       # the same, the Inception weights from FILE
    python tools/gpu_prepare.py split FILE --into DIR [--part-mib 40]   # the weights in parts only

The GPU machine has torch but neither DVC nor torch-fidelity, reaches nothing outside
itself, and receives at most 64 MiB a call; so this puts into .gpu/ (ignored by git)
the wheels it lacks and the Inception weights, compressed, in parts with their sha256,
and plans the calls that carry them beside the working tree; the last one runs
`python3 tools/gpu_check.py run`. `split` alone makes the parts that the CPU dry run
joins (tests/test_gpu_check.py).

tools/gpu_check.py imports from here what both sides read alike: where .gpu/ keeps
what travels, the manifest's name, the modules the wheels provide, the project's files
as git lists them (the copies the check runs in), the sha256 and JSON helpers.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the GPU machine runs the project from its folder, not installed
    sys.path.insert(0, str(ROOT))

from maskgit.project.errors import InputError, UserError  # noqa: E402  (light: no torch)
from maskgit.project.tool import run_tool  # noqa: E402

GPU_DIR = Path(".gpu")  # under the repository root: what travels to the GPU machine, ignored by git
WHEELS = GPU_DIR / "wheels"
WEIGHT_PARTS = GPU_DIR / "inception"
MANIFEST = "manifest.json"
MIB = 1 << 20
# what may travel in one call (the working tree and the carried paths together), and what
# is kept free of it for files that change between preparing and launching
TRAVEL_LIMIT = 64 * MIB
TRAVEL_MARGIN = 2 * MIB
CARRY_PATHS = 8  # paths one call may carry

# The GPU machine's Python (3.12) has these; every other distribution that the packages
# below need travels as a wheel. A package carried anyway would shadow the machine's build.
MACHINE_PACKAGES = frozenset({
    "torch", "numpy", "scipy", "pandas", "matplotlib", "pillow", "scikit-learn", "torchmetrics", "torchvision",
    "tqdm", "pyyaml", "psutil", "threadpoolctl", "pytest", "pytest-xdist", "tabulate", "pip", "setuptools", "wheel",
})
# what the stages and tools import that the machine lacks: DVC and its run-time helpers,
# the FID features, the presets' round-trip YAML, LPIPS
WHEEL_ROOTS = ("dvc", "dvclive", "torch-fidelity", "ruamel.yaml", "lpips")
# their import names: the check installs the wheels where one of these does not import
NEEDED_MODULES = ("dvc", "dvclive", "torch_fidelity", "ruamel.yaml", "lpips")
TARGET_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# the device call's timeout_s for the check: its budgets (gpu_check.BUDGETS), the final
# writing and a margin, inside the 600 s a command may run
RUN_TIMEOUT = 570


# -- small helpers ------------------------------------------------------------------

def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    tmp.replace(path)


def say(msg: str) -> None:
    print(f"gpu_prepare: {msg}", flush=True)


# -- the Inception weights in parts ----------------------------------------------------

def compressed(source: Path) -> bytes:
    """The weights as one gzip stream: the 1008-way classifier is stored as zeros, and
    the rest gives a few percent more, which saves a call's carrying."""
    if not source.is_file():
        raise InputError(f"{source}: no such weights file")
    return gzip.compress(source.read_bytes(), compresslevel=6, mtime=0)


def split_weights(source: Path, into: Path, part_bytes: int, stream: bytes | None = None) -> dict:
    """`source`, gzip-compressed, cut into parts of part_bytes in `into`, with
    manifest.json: the file's name, size and sha256, and each part's size and sha256.
    Earlier parts there are removed."""
    stream = compressed(source) if stream is None else stream
    into.mkdir(parents=True, exist_ok=True)
    for old in into.glob(f"{source.name}.gz.part-*"):
        old.unlink()
    parts = []
    for index, start in enumerate(range(0, len(stream), part_bytes)):
        block = stream[start:start + part_bytes]
        part = into / f"{source.name}.gz.part-{index:02d}"
        part.write_bytes(block)
        parts.append({"file": part.name, "size": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    manifest = {"name": source.name, "size": source.stat().st_size, "sha256": sha256(source), "compression": "gzip",
                "parts": parts}
    write_json(into / MANIFEST, manifest)
    return manifest



# -- what travels: the project's files, the wheels, the plan of calls --------------------

def _ignore_patterns(folder: Path, path: Path | None = None) -> list[tuple[str, bool, bool]]:
    """(pattern, anchored, folders only) of folder/.gitignore (or of `path`, read as if it
    were there): the subset of git's syntax this project's ignore files use (DVC writes
    '/name' lines)."""
    path = path or folder / ".gitignore"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        out.append((line.strip("/"), line.startswith("/") or "/" in line.strip("/"), line.endswith("/")))
    return out


def _ignored(name: str, rel_path: str, is_dir: bool, patterns) -> bool:
    from fnmatch import fnmatch

    return any((fnmatch(rel_path, pattern) if anchored else fnmatch(name, pattern)) and (is_dir or not dirs_only)
               for pattern, anchored, dirs_only in patterns)


def project_files(root: Path = ROOT, use_git: bool = True) -> list[str]:
    """The project's files as git lists them (tracked, or new and not ignored), from git
    when `root` is a checkout; else (the GPU machine's copy may come without .git) from
    the .gitignore files, as git reads them. Never .git or .gpu/, whatever the excludes."""
    files = None
    if use_git:
        try:
            listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True,
                                    text=True, check=True).stdout.splitlines()
            files = [f for f in listed if (root / f).is_file()]  # a tracked file deleted here is not copied
        except (OSError, subprocess.CalledProcessError):
            pass
    if files is None:
        files = []
        # (folder, [(the folder of an ignore file above it, its patterns)]); a checkout's
        # own excludes count as a .gitignore at the top
        stack = [(root, [(root, _ignore_patterns(root, root / ".git" / "info" / "exclude"))])]
        while stack:
            folder, inherited = stack.pop()
            scoped = inherited + [(folder, _ignore_patterns(folder))]
            for entry in sorted(folder.iterdir()):
                is_dir = entry.is_dir() and not entry.is_symlink()
                if any(_ignored(entry.name, entry.relative_to(base).as_posix(), is_dir, patterns)
                       for base, patterns in scoped):
                    continue
                if is_dir:
                    if entry.relative_to(root).as_posix() not in (".git", GPU_DIR.as_posix()):
                        stack.append((entry, scoped))
                else:
                    files.append(entry.relative_to(root).as_posix())
    return sorted(f for f in files if not f.startswith((".git/", GPU_DIR.as_posix() + "/")))


def wheel_pins(roots=WHEEL_ROOTS) -> list[str]:
    """NAME==VERSION of every distribution the roots need on the GPU machine's Python
    (requirements read from this environment's installed metadata, markers evaluated for
    CPython 3.12 on x86-64 Linux), less what that machine has. One version each: the
    versions installed here, the ones the tests run against."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    target = {"python_version": TARGET_PYTHON, "python_full_version": f"{TARGET_PYTHON}.0", "os_name": "posix",
              "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    pins, todo = {}, list(roots)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in pins or name in MACHINE_PACKAGES:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise UserError(f"{name} is needed on the GPU machine but not installed here: `pip install {name}` "
                            "in this environment, then prepare again") from None
        pins[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(target):
                todo.append(req.name)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def download_wheels(pins: list[str], into: Path) -> None:
    """The wheels of `pins` for CPython 3.12 on x86-64 Linux; a pure-Python package
    published only as source is built into a wheel here."""
    into.mkdir(parents=True, exist_ok=True)
    for old in into.glob("*.whl"):
        old.unlink()
    platform = [arg for p in PLATFORMS for arg in ("--platform", p)]
    base = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--python-version", TARGET_PYTHON,
            "--implementation", "cp", *platform, "-d", str(into)]
    if subprocess.run([*base, "--only-binary=:all:", *pins]).returncode == 0:
        return
    for pin in pins:  # which ones have no wheel: one at a time
        if subprocess.run([*base, "--only-binary=:all:", pin], capture_output=True).returncode == 0:
            continue
        say(f"{pin}: no wheel for Python {TARGET_PYTHON}; building one from its source")
        before = set(into.glob("*.whl"))
        built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(into), pin])
        new = set(into.glob("*.whl")) - before
        # a wheel built here is for this Python: only a pure-Python one is good there too
        if built.returncode != 0 or not all(w.name.endswith("-none-any.whl") for w in new):
            raise UserError(f"{pin}: no wheel for CPython {TARGET_PYTHON} on x86-64 Linux, and no pure-Python one "
                            "could be built here: put its wheel into .gpu/wheels by hand")


def folder_size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def plan_calls(tree_bytes: int, wheels_bytes: int, parts: list[tuple[str, int]], manifest: str,
               limit: int = TRAVEL_LIMIT - TRAVEL_MARGIN) -> list[dict]:
    """The calls that carry `parts` and the wheels to the GPU machine: each call's carried
    paths and their size beside the working tree within `limit`, at most CARRY_PATHS
    paths. The last call carries the wheels, the manifest and what parts still fit, and
    runs the check; the ones before carry parts only (a warm machine keeps them)."""
    room = limit - tree_bytes
    last = {"carry": [str(WHEELS), manifest], "bytes": wheels_bytes}
    if last["bytes"] > room:
        raise UserError(f"the wheels ({wheels_bytes / MIB:.1f} MiB) and the working tree ({tree_bytes / MIB:.1f} MiB) "
                        "exceed what one call carries: leave a package out of WHEEL_ROOTS or carry it earlier")
    earlier, rest = [], []
    for path, size in sorted(parts, key=lambda p: -p[1]):  # largest first: the fewest calls
        if size > room:
            raise UserError(f"{path}: a part of {size / MIB:.1f} MiB cannot travel beside the working tree "
                            f"({tree_bytes / MIB:.1f} MiB): split with smaller parts")
        if last["bytes"] + size <= room and len(last["carry"]) < CARRY_PATHS:
            last["carry"].append(path)
            last["bytes"] += size
        else:
            rest.append((path, size))
    for path, size in rest:
        call = next((c for c in earlier if c["bytes"] + size <= room and len(c["carry"]) < CARRY_PATHS), None)
        if call is None:
            call = {"carry": [], "bytes": 0}
            earlier.append(call)
        call["carry"].append(path)
        call["bytes"] += size
    return earlier + [last]


def best_part_size(weights_bytes: int, tree_bytes: int, wheels_bytes: int) -> int:
    """The part size (whole MiB, 40 at most) that carries the weights in the fewest calls."""
    best = None
    for mib in range(40, 4, -1):
        size = mib * MIB
        parts = [(f"p{i}", min(size, weights_bytes - i * size)) for i in range(-(-weights_bytes // size))]
        try:
            calls = len(plan_calls(tree_bytes, wheels_bytes, parts, "m"))
        except UserError:
            continue
        if best is None or calls < best[0]:
            best = (calls, size)
    if best is None:
        raise UserError("the wheels and the working tree leave no room for the weights in a call")
    return best[1]


def git_revision(root: Path = ROOT) -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git checkout)"


def prepare(weights: Path | None) -> None:
    """Fill .gpu/ here (wheels, weight parts, the plan) and print the calls that carry it."""
    exclude = subprocess.run(["git", "rev-parse", "--git-path", "info/exclude"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
    exclude = ROOT / exclude
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    if f"/{GPU_DIR}/" not in lines:  # else every call would carry .gpu/ as untracked files
        exclude.parent.mkdir(parents=True, exist_ok=True)
        exclude.write_text("\n".join([*lines, f"/{GPU_DIR}/"]) + "\n")
    if weights is None:  # the file the FID stages would use here
        from maskgit.project.inception_weights import CACHE_DIR, resolve_inception_weights

        weights, _ = resolve_inception_weights(None, CACHE_DIR)
        if weights is None:
            raise UserError("no Inception weights here: pass --weights FILE (torch-fidelity's "
                            "weights-inception-2015-12-05-6726825d.pth)")
    pins = wheel_pins()
    listed = ROOT / GPU_DIR / "wheels.txt"
    have = len(list((ROOT / WHEELS).glob("*.whl")))
    if listed.is_file() and listed.read_text().split() == pins and have == len(pins):
        say(f"the {len(pins)} wheels in {WHEELS} are those this environment needs: kept")
    else:
        say(f"downloading {len(pins)} wheels into {WHEELS}")
        download_wheels(pins, ROOT / WHEELS)
        listed.write_text("\n".join(pins) + "\n")
    tree = sum((ROOT / f).stat().st_size for f in project_files())
    wheels_bytes = folder_size(ROOT / WHEELS)
    stream = compressed(Path(weights))
    part_bytes = best_part_size(len(stream), tree, wheels_bytes)
    manifest = split_weights(Path(weights), ROOT / WEIGHT_PARTS, part_bytes, stream)
    parts = [(str(WEIGHT_PARTS / p["file"]), p["size"]) for p in manifest["parts"]]
    calls = plan_calls(tree, wheels_bytes, parts, str(WEIGHT_PARTS / MANIFEST))
    # the last call runs the check; the ones before only carry (and list what arrived)
    check = f"python3 tools/gpu_check.py run --out $OUT --revision {git_revision()}"
    plan = {"tree_bytes": tree, "wheels_bytes": wheels_bytes, "weights_sha256": manifest["sha256"], "calls": [
        {"command": check if last else f"ls -l {WEIGHT_PARTS}", "carry": call["carry"],
         "timeout_s": RUN_TIMEOUT if last else 60, "mib_with_the_tree": round((tree + call["bytes"]) / MIB, 1)}
        for last, call in ((i == len(calls) - 1, call) for i, call in enumerate(calls))]}
    write_json(ROOT / GPU_DIR / "plan.json", plan)
    print(f"working tree {tree / MIB:.1f} MiB, wheels {wheels_bytes / MIB:.1f} MiB ({len(pins)}), weights "
          f"{len(stream) / MIB:.1f} MiB compressed in {len(parts)} parts of at most {part_bytes // MIB} MiB.\n"
          "The device calls, each right after the one before (a machine idle for 30 s is given back, with "
          "what it was carried):")
    for i, call in enumerate(plan["calls"], 1):
        print(f"  {i}. run(command={call['command']!r}, carry={json.dumps(call['carry'])}, "
              f"timeout_s={call['timeout_s']})  # {call['mib_with_the_tree']} MiB with the tree")


# -- the command line ------------------------------------------------------------------------

def cli(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="the Inception weights (default: what the FID stages use here)")
    sub = parser.add_subparsers(dest="command", metavar="[split]",
                                help="without one: fill .gpu/ (wheels, weight parts, the plan) and print the calls")
    p = sub.add_parser("split", help="the Inception weights in parts with their sha256, nothing else")
    p.add_argument("weights", type=Path)
    p.add_argument("--into", type=Path, required=True)
    p.add_argument("--part-mib", type=int, default=40)
    args = parser.parse_args(argv)
    if args.command is None:
        prepare(args.weights)
        return
    if args.part_mib < 1:
        raise UserError(f"--part-mib {args.part_mib}: must be at least 1")
    manifest = split_weights(args.weights, args.into, args.part_mib * MIB)
    print(f"{args.weights.name}: {len(manifest['parts'])} parts in {args.into}, sha256 {manifest['sha256']}")


def main(argv=None) -> None:
    run_tool(lambda: cli(argv), "gpu_prepare")


if __name__ == "__main__":
    main()
