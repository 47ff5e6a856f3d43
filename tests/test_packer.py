"""The packer's promises: never over budget, tiers respected, degrade only when needed."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.context.packer import (OUTLINE_LEVEL, REASON_BUDGET, REASON_TIER_CUT, SEPARATOR, block_text, compose,
                                    outline_header, outline_line, pack, priority)
from indexer.tokens import Cl100k
from indexer.types import LEVELS, Candidate, PackedContext, Rendering, Tier

TOK = Cl100k()

CODE_BITS = [
    "def f(x):", "    return x + 1", "class A(B):", '    """Doc."""', "    ", "\t", "", "}", "{",
    "if __name__ == '__main__':", "# комментарий ☃", "x = [1, 2, 3]  # 🙂", "    \n\n\n", "<|endoftext|>",
    "async def g() -> None: await h()", "'''", "\\", "😀" * 3, "漢字かな",
]
code_text = st.lists(st.sampled_from(CODE_BITS), max_size=60).map("\n".join)
texts = st.one_of(st.text(max_size=400), code_text)


@st.composite
def candidate_lists(draw: st.DrawFn) -> list[Candidate]:
    """Random candidates: tiers, tied and untied scores, 1-4 levels of random text."""
    n = draw(st.integers(0, 25))
    out = []
    for i in range(n):
        levels = draw(st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4, unique=True))
        levels.sort(key=LEVELS.index)
        renderings = tuple(Rendering(level, draw(texts)) for level in levels)
        has_path = draw(st.booleans())
        start = draw(st.integers(1, 500))
        out.append(Candidate(
            key=f"node:{i}",
            tier=draw(st.sampled_from(Tier)),
            score=draw(st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0, 10, allow_nan=False))),
            kind=draw(st.sampled_from(["function", "class", "module", "task", "error"])),
            name=draw(st.text(min_size=1, max_size=20)),
            why="test",
            renderings=renderings,
            path=f"pkg/m{i}.py" if has_path else None,
            start_line=start if has_path else 0,
            end_line=start + draw(st.integers(0, 50)) if has_path else 0,
        ))
    return out


budgets = st.one_of(st.integers(1, 400), st.integers(1, 200_000))
headers = st.one_of(st.just(""), st.text(max_size=60))


def _piece(c: Candidate, r: Rendering) -> tuple[Candidate, str, bool]:
    """How a rendering enters the text: a signature with a path as a line of its file's outline."""
    outline = r.level == OUTLINE_LEVEL and c.path is not None
    return c, outline_line(c, r) if outline else block_text(c, r), outline


def check_degradation(result: PackedContext, cands: list[Candidate], header: str) -> None:
    """Replay the packed items: every richer rendering than the one chosen must not have fitted there,
    by the exact count of the text it would have made or by the packer's estimate (piece counts summed)."""
    by_key = {c.key: c for c in cands}
    sep, newline = TOK.count(SEPARATOR), TOK.count("\n")
    head = header if header and TOK.count(header) <= result.budget else ""
    pieces: list[tuple[Candidate, str, bool]] = []
    used, parts = (TOK.count(head), 1) if head else (0, 0)
    outlined: set[str] = set()

    def cost(piece: tuple[Candidate, str, bool]) -> tuple[int, int]:
        """(the piece's tokens as reported, what it adds to the estimate)."""
        c, text, outline = piece
        if outline and c.path in outlined:
            return TOK.count(text), TOK.count(text) + newline
        opens = TOK.count(outline_header(c.path)) + newline if outline else 0
        return TOK.count(text) + opens, TOK.count(text) + opens + (sep if parts else 0)

    for item in result.items:
        c = by_key[item.key]
        chosen = [r.level for r in c.renderings].index(item.level)
        piece = _piece(c, c.renderings[chosen])
        tokens, added = cost(piece)
        assert item.tokens == tokens and used + added <= result.budget
        for richer in c.renderings[:chosen]:
            trial = _piece(c, richer)
            estimate_fails = used + cost(trial)[1] > result.budget or (
                richer.max_tokens is not None and TOK.count(trial[1]) > richer.max_tokens)
            exact_fails = TOK.count(compose(head, [*pieces, trial])) > result.budget
            assert estimate_fails or exact_fails, f"{item.key} degraded to {item.level} though {richer.level} fitted"
        pieces.append(piece)
        used += added
        if not piece[2] or c.path not in outlined:
            parts += 1
        if piece[2]:
            outlined.add(c.path)
    assert compose(head, pieces) == result.text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cands=candidate_lists(), budget=budgets, header=headers)
def test_pack_properties(cands: list[Candidate], budget: int, header: str) -> None:
    result = pack(cands, budget, TOK, header=header)
    # (1) hard budget, counted on the final text
    assert result.tokens == TOK.count(result.text) <= budget
    # every candidate is either packed or dropped, never both
    kept = {i.key for i in result.items}
    gone = {d.key for d in result.dropped}
    assert kept | gone == {c.key for c in cands} and not kept & gone
    # (2) no dropped candidate outranks a kept one by tier; a tier cut needs a budget drop above it
    for d in result.dropped:
        assert all(k.tier <= d.tier for k in result.items)
        assert d.reason in (REASON_BUDGET, REASON_TIER_CUT)
        if d.reason == REASON_TIER_CUT:
            assert any(e.reason == REASON_BUDGET and e.tier < d.tier for e in result.dropped)
    # items come out in priority order
    order = {c.key: priority(c) for c in cands}
    assert [order[i.key] for i in result.items] == sorted(order[i.key] for i in result.items)
    # (3) degraded only when needed
    check_degradation(result, cands, header)
    # (4) deterministic, whatever the input order
    shuffled = cands[:]
    random.Random(budget).shuffle(shuffled)
    assert pack(shuffled, budget, TOK, header=header) == result


def cand(key: str, tier: Tier, score: float, *texts: str, path: str | None = "pkg/a.py") -> Candidate:
    """A candidate with one rendering per given text, levels in LEVELS order."""
    return Candidate(
        key=key, tier=tier, score=score, kind="function", name=key, why="test",
        renderings=tuple(Rendering(level, t) for level, t in zip(LEVELS, texts)),
        path=path, start_line=3 if path else 0, end_line=9 if path else 0,
    )


def test_block_header_cites_path_and_lines() -> None:
    result = pack([cand("f", Tier.HIGH, 1.0, "def f(): pass")], 1000, TOK)
    assert result.text == "### pkg/a.py:3-9 function f [full]\ndef f(): pass"
    pathless = pack([cand("T1", Tier.CRITICAL, 1.0, "fix the bug", path=None)], 1000, TOK)
    assert pathless.text.startswith("### function T1")


@pytest.mark.parametrize(("path", "qualname", "shown"), [
    ("django/db/models/query.py", "django.db.models.query.QuerySet.bulk_create", "QuerySet.bulk_create"),
    ("tests/bulk_create/tests.py", "bulk_create.tests.BulkCreateTests.test_x", "BulkCreateTests.test_x"),
    ("pkg/__init__.py", "pkg.setup", "setup"),
    ("pkg/a.py", "pkg.a", "pkg.a"),  # a module keeps its name
    ("pkg/a.py", "other.thing", "other.thing"),  # nothing the path says: the whole name
    ("pkg/ab.py", "pkg.a.b", "pkg.a.b"),  # a prefix of a part is not the module
])
def test_header_names_a_definition_relative_to_its_file(path, qualname, shown) -> None:
    c = Candidate(key="k", tier=Tier.HIGH, score=1.0, kind="method", name=qualname, why="test",
                  renderings=(Rendering("summary", "def f()"),), path=path, start_line=1, end_line=2)
    assert pack([c], 1000, TOK).text == f"### {path}:1-2 method {shown} [summary]\ndef f()"


def _signature(key: str, qualname: str, path: str | None, start: int, text: str, score: float = 1.0) -> Candidate:
    return Candidate(key=key, tier=Tier.LOW, score=score, kind="method", name=qualname, why="test",
                     renderings=(Rendering("signature", text),), path=path, start_line=start if path else 0,
                     end_line=start + 4 if path else 0)


def test_signatures_are_lines_of_their_files_outline() -> None:
    """One header per file, lines in file order, names relative to the file, the outline where its file
    first came; a signature without a path stays a block."""
    cands = [
        _signature("a", "pkg.a.Cls.meth", "pkg/a.py", 40, "def meth(self,\n        x)", score=3),
        _signature("b", "pkg.b.helper", "pkg/b.py", 7, "async def helper()", score=2),
        _signature("c", "pkg.a.Other", "pkg/a.py", 10, "class Other(Base)", score=1),
        _signature("d", "lib.thing", None, 0, "library lib.thing", score=0.5),
        Candidate(key="m", tier=Tier.LOW, score=0.1, kind="module", name="pkg.b", why="test", path="pkg/b.py",
                  renderings=(Rendering("signature", "module pkg.b: Helpers."),), start_line=1, end_line=30),
    ]
    result = pack(cands, 1000, TOK)
    assert result.text == ("### pkg/a.py [signatures]\n10-14 class Other(Base)\n40-44 def Cls.meth(self, x)\n\n"
                           "### pkg/b.py [signatures]\n1-30 module: Helpers.\n7-11 async def helper()\n\n"
                           "### method lib.thing [signature]\nlibrary lib.thing")
    assert [i.level for i in result.items] == ["signature"] * 5
    assert result.tokens == TOK.count(result.text)


def test_an_outline_costs_less_than_signature_blocks() -> None:
    """What the outline is for: at a small budget more of the further hits fit."""
    cands = [_signature(f"s{i}", f"django.db.models.query.QuerySet.method_{i}", "django/db/models/query.py",
                        10 * i + 1, f"def method_{i}(self, *args, **kwargs)", score=100 - i) for i in range(60)]
    blocks = sum(TOK.count(block_text(c, c.renderings[0])) + TOK.count(SEPARATOR) for c in cands)
    result = pack(cands, blocks * 2 // 3, TOK)
    assert not result.dropped and result.tokens <= blocks * 2 // 3


def test_everything_fits_at_full_when_budget_is_large() -> None:
    cands = [cand(f"c{i}", Tier(i % 4), i / 10, "body " * 50, "sig") for i in range(20)]
    result = pack(cands, 200_000, TOK, header="# Context")
    assert not result.dropped and len(result.items) == 20
    assert {i.level for i in result.items} == {"full"}
    assert result.text.startswith("# Context\n\n### ")
    assert result.tokens == TOK.count(result.text)


def test_no_candidates_gives_empty_text() -> None:
    assert pack([], 5, TOK) == PackedContext(text="", tokens=0, budget=5, items=(), dropped=())
    assert pack([], 50, TOK, header="# Context").text == "# Context"


def test_tiny_budget_drops_everything() -> None:
    result = pack([cand("a", Tier.CRITICAL, 1, "x"), cand("b", Tier.LOW, 1, "y")], 1, TOK, header="long header")
    assert (result.text, result.tokens) == ("", 0)
    assert [(d.key, d.reason) for d in result.dropped] == [("a", REASON_BUDGET), ("b", REASON_TIER_CUT)]


def test_critical_that_fits_nowhere_cuts_lower_tiers_only() -> None:
    huge = "word " * 2000
    cands = [
        cand("big", Tier.CRITICAL, 9, huge),
        cand("small-critical", Tier.CRITICAL, 1, "ok"),
        cand("low", Tier.LOW, 5, "tiny"),
    ]
    result = pack(cands, 200, TOK)
    assert [i.key for i in result.items] == ["small-critical"]
    assert {d.key: d.reason for d in result.dropped} == {"big": REASON_BUDGET, "low": REASON_TIER_CUT}


def test_degrades_to_the_richest_level_that_fits() -> None:
    c = cand("f", Tier.HIGH, 1, "line of code\n" * 200, "summary of f, " * 10, "def f()")
    budget = TOK.count(block_text(c, c.renderings[1]))
    result = pack([c], budget, TOK)
    assert [i.level for i in result.items] == ["summary"]
    assert pack([c], budget - 1, TOK).items[0].level == "signature"


def test_hopeless_renderings_are_not_counted() -> None:
    """A megabyte rendering in a 100-token room is skipped by the length bound alone."""
    counted: list[int] = []

    class Recording(Cl100k):
        def count(self, text: str) -> int:
            counted.append(len(text))
            return super().count(text)

    result = pack([cand("f", Tier.HIGH, 1, "x = 1\n" * 200_000, "def f()")], 100, Recording())
    assert result.items[0].level == "summary"
    assert max(counted) < 1000


class Superadditive:
    """A tokenizer whose joined texts cost more than their parts (as BPE may)."""

    name = "superadditive"
    BOUNDARY_COST = 10

    def count(self, text: str) -> int:
        return len(text) + self.BOUNDARY_COST * text.count(SEPARATOR + "###")


def test_final_count_trims_the_last_item_when_joining_costs_more() -> None:
    tok = Superadditive()
    first = cand("a", Tier.CRITICAL, 1, "a" * 50)
    second = cand("b", Tier.HIGH, 1, "b" * 50, "b")
    sizes = [tok.count(block_text(first, first.renderings[0])), tok.count(block_text(second, second.renderings[0]))]
    budget = sum(sizes) + tok.count(SEPARATOR)  # both fit by the sum, not once joined
    result = pack([first, second], budget, tok)
    assert [(i.key, i.level) for i in result.items] == [("a", "full"), ("b", "summary")]
    assert result.tokens == tok.count(result.text) <= budget
    only_full = cand("b", Tier.HIGH, 1, "b" * 50)
    squeezed = pack([first, only_full], budget, tok)
    assert [i.key for i in squeezed.items] == ["a"]
    assert [(d.key, d.reason) for d in squeezed.dropped] == [("b", REASON_BUDGET)]


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_budget_raises(bad: int) -> None:
    with pytest.raises(ValueError, match="budget must be >= 1"):
        pack([], bad, TOK)


def test_candidate_without_renderings_raises() -> None:
    with pytest.raises(ValueError, match="'empty' has no renderings"):
        pack([cand("empty", Tier.LOW, 1)], 100, TOK)
