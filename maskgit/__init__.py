"""MaskGIT image inpainting: models and algorithms.

The package holds the models (``vqgan``, ``transformer``) and the algorithms
(``schedules``, ``masking``, ``decode``, ``fid``); the DVC stage scripts in
``stages/`` do all reading and writing of files.
"""

__version__ = "0.1.0"
