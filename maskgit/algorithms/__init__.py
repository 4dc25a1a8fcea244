"""MaskGIT's algorithms on tensors: mask schedules (gamma), masks, iterative decoding,
pixel guidance and compositing. No file I/O; imports only maskgit.models."""
