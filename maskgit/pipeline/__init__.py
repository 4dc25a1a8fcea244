"""What the DVC stages share: params, errors, file formats, checkpoints, the
inpainting runner over the prepared test set, resumable training, data-parallel
training, user folders, report tables and figures. Imports the layers below it."""
