"""MaskGIT image inpainting, in layers (imports point down only; tests/test_layers.py):

- ``maskgit.models``, ``maskgit.data``: the VQGAN, the transformer, the built-in data set;
- ``maskgit.algorithms``, ``maskgit.metrics``: schedules, masks, iterative decoding,
  compositing, pixel guidance, the training objective; FID and KID. These work on
  tensors and arrays and do no file I/O;
- ``maskgit.pipeline``: what the DVC stages in ``stages/`` share, and what the tools
  share (``tool.run_tool``, the sweep's submitting, the experiments page). File I/O
  lives here, in the stage scripts and in the tools;
- ``maskgit.bench``, ``.compare``, ``.experiments``, ``.preset``, ``.prune``, ``.sweep``,
  ``.tune``, ``.verify``: the command-line tools, side by side on one floor: no tool imports
  another (``bench_lab_loop`` is bench's own helper), and each runs its ``main`` under
  ``run_tool``.
"""

__version__ = "0.1.0"
