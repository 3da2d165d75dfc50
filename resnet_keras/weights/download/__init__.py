"""Downloads and the verified cache.

- `cache.py`: the verified cache (where it is, offline mode, timeouts; look, fetch, set aside);
- `download.py`: one URL's bytes into memory, verified, stored under their name;
- `http.py` + `guard.py`: bounded HTTP, every phase of a request;
- `snapshot.py`: the read-once rule (the bytes hashed are the bytes parsed);
- `housekeeping.py`: the cache's own files (temps, locks, full-hash records).
"""
