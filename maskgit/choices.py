"""The allowed values of every param that chooses between variants, defined once:
params.py checks params.yaml against them and the code that branches on them
imports them from here. Imports nothing, so any layer may use it. (Mask schedule
names are the keys of maskgit.algorithms.schedules.SCHEDULES.)"""

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
ATTENTION_KINDS = ("manual", "sdpa")  # transformer.attention
POS_INITS = ("sincos", "normal")  # transformer.pos_init
SAMPLING = ("argmax", "sample")  # inpaint.sampling
ORDERS = ("confidence", "random", "halton")  # inpaint.orders: which tokens a decoding step reveals
COMPOSITE = ("poisson", "paste", "none")  # inpaint.composite
SOURCES = ("procedural", "folders")  # prepare.source
MASK_FAMILIES = ("thin", "medium", "thick", "small", "large")  # maskgit.data.masks: LaMa's, then MAT's
TEST_MASKS = ("builtin", *MASK_FAMILIES)  # prepare.test_masks
REPRODUCIBILITY = ("native", "portable")  # reproducibility.mode (maskgit.pipeline.numerics)
