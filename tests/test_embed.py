"""The offline embedders: WordLlama from the weights in its wheel, and embedder selection."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from indexer.search import embed
from indexer.search.embed import (
    BATCH_SIZE,
    MAX_CHARS,
    WordLlamaEmbedder,
    chunk_text_for_embedding,
    get_embedder,
)

REPO = Path(__file__).resolve().parents[1]

READ_FILE = chunk_text_for_embedding(
    "read_file_bytes",
    "storage.files.read_file_bytes",
    "def read_file_bytes(path: str) -> bytes",
    "Open the file at path and return its contents as bytes.",
    "with open(path, 'rb') as handle:\n    return handle.read()",
)
HTTP_HEADERS = chunk_text_for_embedding(
    "parse_headers",
    "net.http.parse_headers",
    "def parse_headers(response: Response) -> dict[str, str]",
    "Parse HTTP response headers into a case-insensitive mapping.",
    "return {k.lower(): v for k, v in response.raw_headers}",
)


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder()


def test_rows_are_unit_float32_and_deterministic(embedder):
    texts = ["open a file", "parse json", "class HTTPServer"]
    first = embedder.embed(texts)
    assert first.dtype == np.float32
    assert first.shape == (3, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(first, WordLlamaEmbedder().embed(texts))


def test_similar_meaning_is_closer(embedder):
    query, read_file, headers = embedder.embed(["open a file and read bytes", READ_FILE, HTTP_HEADERS])
    assert query @ read_file > query @ headers + 0.05


def test_length_sorted_batches_keep_input_order(embedder):
    # More texts than one batch, lengths deliberately out of order.
    texts = [f"def f{i}(x):\n" + "    value = compute(x)\n" * ((i * 7) % 23) for i in range(BATCH_SIZE * 2 + 5)]
    together = embedder.embed(texts)
    one_by_one = np.vstack([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_long_text_is_clipped(embedder):
    head = "def transfer(account, amount):\n    return ledger.move(account, amount)\n"
    tail = "noise_token " * 2000
    clipped, full = embedder.embed([head + tail[: MAX_CHARS - len(head)], head + tail])
    np.testing.assert_allclose(clipped, full, atol=1e-6)


def test_empty_text_gives_zero_row_not_nan(embedder):
    rows = embedder.embed(["", "read a file"])
    assert not np.isnan(rows).any()
    assert np.abs(rows[0]).sum() == 0


def test_empty_input(embedder):
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_import_leaves_root_logging_alone():
    # wordllama.inference runs logging.basicConfig(level=INFO) when imported.
    code = textwrap.dedent(
        """
        import logging
        from indexer.search.embed import WordLlamaEmbedder
        WordLlamaEmbedder().embed(["x"])
        root = logging.getLogger()
        assert root.handlers == [] and root.level == logging.WARNING, (root.handlers, root.level)
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


def test_loads_and_embeds_with_network_blocked(tmp_path):
    # An audit hook refuses every socket connect; the proxies point at a closed port.
    code = textwrap.dedent(
        """
        import sys
        def refuse(event, args):
            if event in ("socket.connect", "socket.getaddrinfo"):
                raise RuntimeError(f"network used: {event} {args}")
        sys.addaudithook(refuse)
        from indexer.search.embed import get_embedder
        rows = get_embedder("wordllama").embed(["read the file", "send the request"])
        print(rows.shape)
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "http_proxy": "http://127.0.0.1:9",
        "https_proxy": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HOME": str(tmp_path),  # no ~/.cache/wordllama to fall back on
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(2, 256)"


def test_get_embedder_names():
    assert isinstance(get_embedder(None), WordLlamaEmbedder)
    assert isinstance(get_embedder("WordLlama"), WordLlamaEmbedder)
    assert get_embedder("none") is None
    with pytest.raises(ValueError, match="wordllama, minilm, none"):
        get_embedder("bert")


@pytest.mark.skipif(find_spec("sentence_transformers") is not None, reason="minilm extra is installed")
def test_minilm_without_extra_names_the_extra():
    with pytest.raises(ImportError, match=r"codeahead\[minilm\]"):
        get_embedder("minilm")


def test_embedder_names_differ_per_model():
    # The vector table is rebuilt when this name changes, so it must identify model and width.
    assert embed.WordLlamaEmbedder.name != embed.MiniLMEmbedder.name
    assert str(embed.WORDLLAMA_DIM) in embed.WordLlamaEmbedder.name


def test_chunk_text_has_name_words_signature_doc_and_code():
    text = chunk_text_for_embedding("parseHTTPHeader", "net.parseHTTPHeader", "def parseHTTPHeader(raw)", "Split a header.", "x" * 5000)
    lines = text.split("\n")
    assert lines[0] == "net parse http header"
    assert lines[1:3] == ["def parseHTTPHeader(raw)", "Split a header."]
    assert lines[3] == "x" * embed.CODE_CHARS
