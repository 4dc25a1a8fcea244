"""The project's files and their formats: params.yaml and its schema, where every output
lies (paths) and the run's grid of decoders and test sets (grid), atomic writers and
image reading, checkpoints and weights files, the per-image evidence, git. What a stage,
a page and a tool all read and write; nothing here runs a model."""
