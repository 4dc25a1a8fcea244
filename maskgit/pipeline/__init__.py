"""What the DVC stages compute with: the numerics a run's bits follow, the stage
runtime and its workspace guard, the inpainting runner, tokens, scoring against the
ground truth, resumable and data-parallel training, memory checks, timing. Imports
maskgit.project and the layers below."""
