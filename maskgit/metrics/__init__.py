"""Image-set metrics on tensors and arrays (FID, KID). No file I/O of their own."""
