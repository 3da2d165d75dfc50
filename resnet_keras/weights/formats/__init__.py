"""Weights file formats: which one a file is, and its bounded, safe reader.

- `registry.py`: the one table of formats (suffixes, magic bytes, reader,
  extra), and what a weight value must be, for every reader (and stem adaptation);
- `hdf5.py`: Keras 2 layout HDF5 files, their names bounded before they are
  read; `hdf5_write.py` writes them;
- `torch_files.py`: torch zip checkpoints (.pth, .pt) and .safetensors, read bounded;
- `state_dict.py` + `torch_names.py`: torch state dicts into Keras models.
"""
