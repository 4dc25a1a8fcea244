"""The built-in procedural data set (images and masks in numpy, no file I/O)."""
