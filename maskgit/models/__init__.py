"""The networks: the stage-1 VQGAN (image <-> token grid, the lab's architecture) and
the bidirectional transformer over its tokens. Imports nothing else from maskgit."""
