"""The built-in data are the same bytes on every machine (docs/reproducibility.md).

The generator runs in fresh processes under other BLAS kernels (OPENBLAS_CORETYPE),
other numpy SIMD levels (NPY_DISABLE_CPU_FEATURES) and other thread counts, and every
run must give the bytes fingerprinted in tests/fingerprints/procedural.json (and the mask
families of maskgit/data/masks.py those in tests/fingerprints/masks.json). They are
committed, so that every machine the suite runs on, whatever its CPU, checks them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from maskgit.data import portable
from maskgit.data import procedural as P

FINGERPRINTS = Path(__file__).parent / "fingerprints" / "procedural.json"

# Every style the prepare stage writes: the default palette images, softened; smooth
# images (antialiased edges, shading, shadows, every background kind) with and without
# the blur; the masks. Enough images that each background and shape kind appears.
GENERATE = """
import hashlib, json, sys
from maskgit.data import portable
from maskgit.data import procedural as P
n = int(sys.argv[1])
arrays = {
    "palette16_blur1.2": P.make_dataset(2000, n, 64, palette_size=16, blur=1.2),
    "smooth": P.make_dataset(2000, n, 64),
    "smooth_blur1.2": P.make_dataset(7, n, 64, blur=1.2),
    "masks": P.make_masks(3000, n, 64),
}
print(json.dumps({k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in arrays.items()}))
"""
N_IMAGES = 120
MASK_FINGERPRINTS = Path(__file__).parent / "fingerprints" / "masks.json"
# The standard mask families, as tests/test_masks.py fingerprints them (seed 0, n masks, 64 px).
GENERATE_MASKS = """
import hashlib, json, sys
from maskgit.data import masks as M
n = int(sys.argv[1])
print(json.dumps({f: hashlib.sha256(M.family_masks(0, f, n, 64).tobytes()).hexdigest() for f in M.FAMILIES}))
"""


def _avx512() -> bool:
    try:
        return "avx512f" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# (OPENBLAS_CORETYPE, NPY_DISABLE_CPU_FEATURES, threads). Prescott is the oldest core
# type OpenBLAS accepts (SSE3); SkylakeX's AVX-512 kernels only run on a CPU that has them.
SETTINGS = [
    ("Haswell", "", 1),
    ("Zen", "", 2),
    ("Prescott", "", 1),
    ("Prescott", "X86_V3 X86_V4 AVX512_ICL AVX512_SPR AVX2 FMA3 AVX512F AVX512_SKX", 2),
    ("Haswell", "X86_V4 AVX512_ICL AVX512_SPR AVX512F AVX512_SKX", 1),
] + ([("SkylakeX", "", 2)] if _avx512() else [])


def fingerprint(coretype: str, disabled: str, threads: int, script: str = GENERATE, n: int = N_IMAGES) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS_", "NPY_", "OMP_", "MKL_"))}
    env.update(OPENBLAS_CORETYPE=coretype, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    if disabled:
        env["NPY_DISABLE_CPU_FEATURES"] = disabled
    out = subprocess.run([sys.executable, "-c", script, str(n)], env=env, capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def test_the_data_are_the_same_bytes_under_every_blas_kernel_simd_level_and_thread_count():
    expected = json.loads(FINGERPRINTS.read_text())
    seen = {setting: fingerprint(*setting) for setting in SETTINGS}
    for setting, got in seen.items():
        differ = [k for k in expected if got.get(k) != expected[k]]
        assert not differ, (f"under OPENBLAS_CORETYPE={setting[0]}, NPY_DISABLE_CPU_FEATURES='{setting[1]}', "
                            f"{setting[2]} thread(s): {differ} differ from {FINGERPRINTS.name}")


def test_the_mask_families_are_the_same_bytes_under_every_blas_kernel_simd_level_and_thread_count():
    expected = json.loads(MASK_FINGERPRINTS.read_text())
    assert (expected["seed"], expected["size"]) == (0, 64), "GENERATE_MASKS no longer matches masks.json"
    for setting in SETTINGS:
        got = fingerprint(*setting, script=GENERATE_MASKS, n=expected["n"])
        differ = [f for f in expected["sha256"] if got.get(f) != expected["sha256"][f]]
        assert not differ, (f"under OPENBLAS_CORETYPE={setting[0]}, NPY_DISABLE_CPU_FEATURES='{setting[1]}', "
                            f"{setting[2]} thread(s): the masks of {differ} differ from {MASK_FINGERPRINTS.name}")


def test_the_integer_blur_keeps_flat_colour_exactly_and_rounds_half_up():
    # each row of the fixed-point kernel sums to exactly one: a flat image stays flat to
    # the last bit, borders included (the float version could land a hair below .5)
    for sigma in (0.6, 1.2, 3.0):
        m = portable.blur_matrix(64, sigma)
        assert (m.sum(1) == 1 << portable.BLUR_BITS).all() and (m >= 0).all()
        flat = np.full((64, 64, 3), 201, dtype=np.uint8)
        assert np.array_equal(P.soften(flat, sigma), flat)
    # a step edge: the blur is symmetric, so the two sides meet halfway at the edge
    step = np.zeros((64, 64, 3), dtype=np.uint8)
    step[:, 32:] = 200
    row = P.soften(step, 1.2)[10, :, 0].astype(int)
    assert row[31] + row[32] == 200 and row[0] == 0 and row[-1] == 200


def test_the_polynomial_sin_and_atan2_match_numpys_to_float_precision():
    x = np.linspace(-300.0, 300.0, 20001)
    assert np.abs(portable.sin(x) - np.sin(x)).max() < 1e-7
    assert np.abs(portable.cos(x) - np.cos(x)).max() < 1e-7
    rng = np.random.default_rng(0)
    y, z = rng.normal(size=(2, 5000)) * 10.0
    corners = np.array([0.0, 1.0, -1.0, 0.0, 2.0, -3.0])
    ys, zs = np.concatenate([y, corners]), np.concatenate([z, [1.0, 0.0, 0.0, -1.0, -2.0, -3.0]])
    assert np.abs(portable.atan2(ys, zs) - np.arctan2(ys, zs)).max() < 1e-12
