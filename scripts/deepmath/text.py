"""Text normalisation, stable ids and string similarity.

Why one module: the pool's ids, its dedup keys, its shard assignment and the decontamination
pre-check must all agree on what "the same text" means, at paper scale and in the demo.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from rapidfuzz.distance import Indel

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_LATEX_NOISE = re.compile(
    r"\\(?:left|right|displaystyle|textstyle|,|!|;|:| |quad|qquad)(?![a-zA-Z])"
)
_FRAC_VARIANTS = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_KEY_DROP = re.compile(r"[\s$.,;:!?'\"`~]+")
_WORDS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Canonical form of a question: NFKC, unix newlines, trimmed, collapsed spaces.

    Keeps line breaks and LaTeX intact, because this is the text later stages read.
    """
    text = unicodedata.normalize("NFKC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()


def dedup_key(text: str) -> str:
    """Key for near-exact duplicates: case, spacing, punctuation and LaTeX spacing ignored.

    Operators, digits and letters are kept so that "2+3" and "2-3" stay different.
    """
    text = normalize_text(text).lower()
    text = _LATEX_NOISE.sub("", text)
    text = _FRAC_VARIANTS.sub(r"\\frac", text)
    return _KEY_DROP.sub("", text)


def stable_id(text: str) -> str:
    """16 hex chars of SHA-1 over the normalised text: same question, same id, any machine."""
    return hashlib.sha1(normalize_text(text).encode("utf-8")).hexdigest()[:16]


def shard_of(item_id: str, num_shards: int) -> int:
    """Shard index of an id; depends only on the id, so adding rows never moves old ones."""
    return int(item_id, 16) % num_shards


def similarity_form(text: str) -> str:
    """Lower-cased, single-spaced form used for the string pre-check."""
    return _WORDS.sub(" ", normalize_text(text).lower()).strip()


def indel_similarity(a: str, b: str) -> float:
    """Normalised Indel similarity in [0, 1] (the paper's post-hoc MATH500 check)."""
    return float(Indel.normalized_similarity(similarity_form(a), similarity_form(b)))
