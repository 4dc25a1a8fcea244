"""Write the committed fingerprints that the tests check on every machine.

    python tools/fingerprints.py procedural          # tests/fingerprints/procedural.json
    python tools/fingerprints.py masks               # tests/fingerprints/masks.json
    python tools/fingerprints.py tiny PROJECT        # tests/fingerprints/tiny_portable.json,
                                                     # from a tiny-preset project after `dvc repro`

Run it only when a change is meant to change the bytes (a new generator, a new
model), and say so in the commit: the point of the files is that nothing else does.
"""

import json
import subprocess
import sys
from pathlib import Path

from maskgit.project.yamlio import parse_yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fingerprints"
sys.path.insert(0, str(ROOT / "tests"))


def procedural() -> None:
    import test_portable_data as t

    (OUT / "procedural.json").write_text(json.dumps(t.fingerprint("Haswell", "", 1), indent=1) + "\n")


def masks() -> None:
    import test_masks as t

    t.FINGERPRINT.write_text(json.dumps(t.fingerprints(), indent=1) + "\n")


def tiny(project: Path) -> None:
    import test_pipeline as t

    timing = json.loads((project / "timings" / "train_transformer.json").read_text())
    if timing["numerics"]["mode"] != "portable":
        sys.exit(f"{project}: not a portable-mode run")
    revision = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    record = {"made_on": timing["numerics"],
              "commit": revision,
              "params": parse_yaml((project / "params.yaml").read_text())["reproducibility"],
              "outputs": t.output_hashes(project)}
    (OUT / "tiny_portable.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["procedural"]:
        procedural()
    elif sys.argv[1:2] == ["masks"]:
        masks()
    elif sys.argv[1:2] == ["tiny"] and len(sys.argv) == 3:
        tiny(Path(sys.argv[2]))
    else:
        sys.exit(__doc__)
