"""Downloads and the verified cache.

- `cache.py`: the verified cache (where it is, offline mode, timeouts; look,
  fetch, store, set aside) and its own files (temps, locks, full-hash records);
- `download.py`: one URL's bytes into memory, bounded in every phase of the
  request and checked against the manifest's hash;
- `snapshot.py`: the read-once rule (the bytes hashed are the bytes parsed).
"""
