"""Cluster secrets that are strong by construction, and a refusal for weak typed ones.

Anyone on the LAN who records one signed advert can test guesses of the cluster secret offline
(one scrypt per guess, see federation/cluster_keys.py), so the secret must be unguessable:

* :func:`generate_secret` -- 7 words drawn with :mod:`secrets` from the EFF large wordlist
  (shipped in the package) less its 4 hyphenated words (yo-yo, t-shirt, ...), so a passphrase
  splits at its hyphens into exactly its words: 7 x log2(7772) = 90.5 bits.
* :func:`secret_problem` -- a typed secret is refused below :data:`MIN_BITS` (72) bits as
  estimated by zxcvbn (log2 of its guess count), with one line saying what to do.
"""

from __future__ import annotations

import functools
import math
import secrets
from importlib import resources

__all__ = ["MIN_BITS", "WORDS", "estimated_bits", "generate_secret", "passphrase_words", "secret_problem"]

MIN_BITS = 72.0
WORDS = 7


@functools.cache
def wordlist() -> tuple[str, ...]:
    text = resources.files("sayit_node").joinpath("eff_large_wordlist.txt").read_text(encoding="utf-8")
    words = tuple(w.strip() for w in text.splitlines() if w.strip() and not w.startswith("#"))
    assert len(words) == 7776 and len(set(words)) == 7776, "EFF large wordlist damaged"
    return words


@functools.cache
def passphrase_words() -> tuple[str, ...]:
    """The words a passphrase is drawn from: the list's words without a hyphen of their own."""
    return tuple(w for w in wordlist() if "-" not in w)


def generate_secret(words: int = WORDS) -> str:
    """A new passphrase such as ``violin-ranger-crisply-outdoors-geology-unpaved-sixtieth``."""
    if words < WORDS:
        raise ValueError(f"use at least {WORDS} words")
    pool = passphrase_words()
    return "-".join(secrets.choice(pool) for _ in range(words))


def estimated_bits(secret: str) -> float:
    """log2 of the guesses zxcvbn estimates an attacker needs (its dictionaries, patterns)."""
    from zxcvbn import zxcvbn

    return zxcvbn(secret[:200])["guesses_log10"] * math.log2(10)


def secret_problem(secret: str | None) -> str | None:
    """None if the secret is usable (or not set: an open cluster), else one line to show."""
    if not secret:
        return None
    bits = estimated_bits(secret)
    if bits >= MIN_BITS:
        return None
    return (f"the cluster secret is too weak (about {bits:.0f} bits of guessing, {MIN_BITS:.0f} needed): "
            "anyone on the network can try guesses against it offline; use a generated one "
            "(`sayit-node secret`, or Generate in the tray's settings)")
