"""Pretrained weights: the manifest, the URL policy, bounded downloads into the verified cache, safe HDF5 reading, and what `weights=` means."""
