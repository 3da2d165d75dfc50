"""Pretrained weights, in three parts that know nothing of the models they fill.

- `manifest/`: which weights a tag names, where their files are, how they are verified;
- `download/`: bounded downloads into the verified cache;
- `formats/`: which format a file is, and its bounded, safe reader (HDF5, torch, safetensors).

What a model's `weights=` means is decided in `architecture/build.py`,
which passes down what these need to know of the model.
"""
