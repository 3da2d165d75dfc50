"""The hash kinds a manifest may declare: one table.

`kind:hex` in a manifest (`"md5:..."`, `"sha256:..."`, `"sha256-prefix:..."`)
names a row here. The parser checks the hex length against it, a
`WeightsFile` hashes with its algorithm and compares as it says (the whole
digest, or its first digits), and messages describe the kinds from it.

The prefix kind is the weak one: torchvision publishes only the first 8 hex
digits of a file's SHA-256 (in its name; torch.hub checks that prefix), 32
bits that a made-up file can match. The cache therefore records the full
SHA-256 at the first verified download and holds the file to it on every
later hit (`download/cache.py`, hash records).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class HashKind:
    name: str  # as the manifest writes it, before the colon
    algorithm: str  # the hashlib algorithm that computes the digest
    title: str  # the algorithm as messages name it
    digits: tuple[int, int]  # (fewest, most) hex digits the manifest may give
    prefix: bool  # True: the declared hex is a prefix of the digest; False: all of it
    strength: str  # "" for a full digest; otherwise what makes the check weaker

    @property
    def syntax(self) -> str:
        fewest, most = self.digits
        count = str(fewest) if fewest == most else f"{fewest} to {most}"
        weaker = f" ({self.strength})" if self.strength else ""
        return f"'{self.name}:' + {count} hex digits{weaker}"


KINDS = {
    kind.name: kind
    for kind in (
        HashKind("md5", "md5", "MD5", (32, 32), prefix=False, strength=""),
        HashKind("sha256", "sha256", "SHA-256", (64, 64), prefix=False, strength=""),
        # 8 digits are 32 bits (what torchvision publishes); 64 would be plain sha256.
        HashKind(
            "sha256-prefix", "sha256", "SHA-256", (8, 63), prefix=True,
            strength="the weaker kind: a prefix of the SHA-256, as torchvision publishes",
        ),
    )
}


def accepted() -> str:
    """The kinds as a manifest may write them, for error messages."""
    *first, last = (kind.syntax for kind in KINDS.values())
    return f"{', '.join(first)}, or {last}"
