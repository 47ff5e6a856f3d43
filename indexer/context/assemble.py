"""Turn a request (query, focus, task) into prioritised candidates for the packer.

Tiers follow DESIGN.md:
- CRITICAL: the task and its status, the focus and its module, the latest error and the code it points at,
  the best search hit.
- HIGH: the focus's immediate dependencies and parents, other functions of the current module, the last two
  iterations, the next best hits.
- MEDIUM: tests of the focus / current module, callers, the next hits (more at a larger budget), successful
  approaches.
- LOW: older iterations, the further hits and the graph neighbours (one line each), the project overview.
"""

from __future__ import annotations

from dataclasses import dataclass

from indexer.context.render import SourceCache, renderings
from indexer.graph.query import nodes_by_ids, related
from indexer.search.edges import EdgeSource, SqlEdges
from indexer.search.graphwalk import expand
from indexer.types import Candidate, Node, NodeKind, Rendering, Tier

CRITICAL_HITS = 1  # search hits ranked this high are CRITICAL
HIGH_HITS = 6
#: Hits past HIGH_HITS are MEDIUM (offered from their summary down) up to one more per this many budget
#: tokens: 16 at 2k, 26 at 4k, 46 at 8k. A summary costs ~65 tokens, a line of a file's outline ~19.
TOKENS_PER_MEDIUM_HIT = 200
#: Further hits are LOW and offered as signatures, up to one per TOKENS_PER_CANDIDATE of budget and at most
#: this many: at a small budget a map of where the next likely answers are beats one more body (SWE-bench
#: Lite: the gold function is in the top 10 functions for 56% of tasks, in the top 50 for 70%, top 100 75%).
#: Also the number of ranked nodes the workspace hands over.
BREADTH_HITS = 200
#: Hits past HIGH_HITS are offered with their full code only up to one more per this many budget tokens;
#: the other MEDIUM hits from their summary down, the LOW ones as signatures.
TOKENS_PER_FULL_HIT = 1000
MAX_NEIGHBOURS = 40
MAX_DEPENDENCIES = 4
#: Full code is offered only when it costs at most this share of the budget (else summary first): CRITICAL
#: items (the best hit, the focus, the error's frame) at FULL_CODE_SHARE, HIGH ones at HIGH_CODE_SHARE. At
#: 0.35 for both, three bodies of hits 2-6 could fill a 4k context (1,078 + 768 + 416 tokens on one Django
#: report) and push out the signatures of the next 50 hits; at 0.2 the SWE-bench 4k context holds every
#: gold function of .710 of tasks instead of .697 (its full code: .529 instead of .542; benchmarks/README.md).
FULL_CODE_SHARE = 0.35
HIGH_CODE_SHARE = 0.2
#: The focus is what the caller pointed at: its full code is offered up to this share. At FULL_CODE_SHARE a
#: 410-token function in focus at a budget of 1,000 came as its 17-token summary, the rest left empty.
FOCUS_CODE_SHARE = 0.75
#: Full code from MEDIUM down, and module listings below CRITICAL, are offered only up to this share: one
#: 800-token body at rank 8 (or a vendored module's listing at rank 6) of a 4k context used to push out the
#: summaries of the next 20 hits.
MEDIUM_SHARE = 0.1
_CODE_SHARE = {Tier.CRITICAL: FULL_CODE_SHARE, Tier.HIGH: HIGH_CODE_SHARE}  # else MEDIUM_SHARE
ERROR_FRAMES = 3
#: The level between full code and summary: the lines around a ``path:line`` focus.
EXCERPT_LEVEL = "excerpt"
#: Characters of code a token is assumed to hold when an excerpt is cut (cl100k averages ~4 on code).
EXCERPT_CHARS_PER_TOKEN = 3
_WHOLE_CODE_KINDS = frozenset({NodeKind.FUNCTION, NodeKind.METHOD, NodeKind.TEST})
#: The latest failing tests of a task whose code is offered.
FAILING_TESTS = 3
#: The task's latest notes in its summary, each cut to NOTE_CHARS characters.
TASK_NOTES = 3
NOTE_CHARS = 300
#: Below ~60 tokens per candidate a pool is larger than any packing can use; it only costs rendering time.
TOKENS_PER_CANDIDATE = 60


@dataclass(slots=True)
class Request:
    """What the caller asked for, already resolved to nodes."""

    query: str | None
    focus: list[Node]
    task: object | None  # indexer.events.TaskState
    ranked: list[tuple[int, float, str]]  # search results: (node id, score, why)
    budget: int
    focus_line: int | None = None  # the line a ``path:line`` focus names


class Assembler:
    """Builds candidates for one request, reading through one connection's snapshot."""

    def __init__(self, conn, sources: SourceCache, edges: EdgeSource | None = None) -> None:
        self.conn = conn
        self.sources = sources
        self.edges = edges if edges is not None else SqlEdges(conn)
        self._out: dict[str, Candidate] = {}

    def candidates(self, req: Request) -> list[Candidate]:
        self._out = {}
        task = req.task
        test_status = dict(getattr(task, "tests", {}) or {}) if task else {}
        if task is not None:
            self._task(task)
        for node in req.focus:
            self._node(node, Tier.CRITICAL, 10.0, "focus", req.budget, test_status, code_share=FOCUS_CODE_SHARE,
                       around=req.focus_line)
            self._around_focus(node, req.budget, test_status)
        current_module = getattr(task, "current_module", None) if task else None
        if current_module:
            self._module(current_module, Tier.CRITICAL, "current module of the task", req.budget)
        if task is not None and getattr(task, "last_error", None):
            self._error(task.last_error, req.budget, resolved=task.error_resolved)
        hits = req.ranked[:self._share(BREADTH_HITS, req.budget)]
        hit_nodes = self._nodes([node_id for node_id, _, _ in hits])
        full_hits = HIGH_HITS + req.budget // TOKENS_PER_FULL_HIT
        medium_hits = HIGH_HITS + req.budget // TOKENS_PER_MEDIUM_HIT
        for rank, (node_id, score, why) in enumerate(hits):
            tier = (Tier.CRITICAL if rank < CRITICAL_HITS else Tier.HIGH if rank < HIGH_HITS
                    else Tier.MEDIUM if rank < medium_hits else Tier.LOW)
            node = hit_nodes.get(node_id)
            if node is not None:
                self._node(node, tier, score, f"search #{rank + 1}: {why}", req.budget, test_status,
                           richest="full" if rank < full_hits else "summary" if tier < Tier.LOW else "signature")
        self._neighbours(req, test_status)
        if task is not None:
            self._files_of_task(task, req.budget)
        return list(self._out.values())

    # ------------------------------------------------------------------ #
    def _add(self, cand: Candidate) -> None:
        existing = self._out.get(cand.key)
        if existing is None or (cand.tier, -cand.score) < (existing.tier, -existing.score):
            self._out[cand.key] = cand

    def _node(self, node: Node, tier: Tier, score: float, why: str, budget: int,
              test_status: dict[str, bool], *, richest: str = "full", code_share: float | None = None,
              around: int | None = None) -> None:
        """Offer ``node`` from its ``richest`` level down (a module keeps its module summary whatever is asked);
        its full code only up to ``code_share`` of the budget (default: its tier's), and then, when ``around``
        is one of its lines, the lines around it."""
        levels = renderings(self.conn, self.sources, node, test_status=test_status)
        if richest != "full":
            # A module's summary is a listing of its whole file: a signature-only candidate gets its one line.
            drop = {"full"} if richest == "summary" else {"full", "summary", "module"}
            levels = tuple(r for r in levels if r.level not in drop) or levels
        if levels and levels[0].level == "full" and len(levels) > 1:
            # A full body over its share of the budget is offered from the summary down
            # (cl100k tokens average ~4 chars of code; 8 chars a token is a safe shortcut;
            # the packer applies the exact cap to the bodies it reaches).
            full = levels[0]
            cap = int((code_share or _CODE_SHARE.get(tier, MEDIUM_SHARE)) * budget)
            richer = () if len(full.text) > 8 * cap else (Rendering("full", full.text, max_tokens=cap),)
            # A class's or module's full level is its own code with its members' bodies cut: its lines are not
            # the file's, so only a function's code has an excerpt.
            window = excerpt(full.text, node.start_line, around, cap) \
                if around is not None and node.kind in _WHOLE_CODE_KINDS else None
            if window is not None:
                richer += (Rendering(EXCERPT_LEVEL, window, max_tokens=cap),)
            levels = (*richer, *levels[1:])
        if tier >= Tier.LOW:
            levels = tuple(r for r in levels if r.level != "full") or levels
        if tier > Tier.CRITICAL:
            levels = tuple(_capped(r, int(MEDIUM_SHARE * budget)) if r.level == "module" else r for r in levels)
        self._add(Candidate(key=f"node:{node.id}", tier=tier, score=score, kind=node.kind.value,
                            name=node.qualname, why=why, renderings=levels, path=node.path,
                            start_line=node.start_line, end_line=node.end_line))

    @staticmethod
    def _share(most: int, budget: int) -> int:
        """How many candidates of a kind a budget can use: at least ~1 per 60 tokens is never packed."""
        return max(4, min(most, budget // TOKENS_PER_CANDIDATE))

    def _nodes(self, ids) -> dict[int, Node]:
        return nodes_by_ids(self.conn, ids)

    def _around_focus(self, node: Node, budget: int, test_status) -> None:
        links = related(self.conn, node.id, depth=1, limit=200)
        # depends_on with a path: the fixtures a test in focus asks for (a library has no path)
        deps = [l for l in links if l.name in ("calls", "inherits", "depends_on") and l.node.path][:MAX_DEPENDENCIES]
        for l in deps:
            self._node(l.node, Tier.HIGH, l.confidence, f"{l.name} from focus {node.name}", budget, test_status)
        if node.kind == NodeKind.MODULE:  # a file in focus: its own definitions, in file order, come next
            members = sorted((l.node for l in links if l.name == "contains"), key=lambda n: n.start_line or 0)
            for i, member in enumerate(members[:self._share(MAX_NEIGHBOURS, budget)]):
                self._node(member, Tier.HIGH, 1.0 - i / 1000, f"defined in focus {node.name}", budget, test_status)
        for l in links:
            if l.name == "belongs_to" and l.node.kind != NodeKind.MODULE:
                self._node(l.node, Tier.HIGH, l.confidence, f"parent of focus {node.name}", budget, test_status)
            elif l.name == "tested_by":
                self._node(l.node, Tier.MEDIUM, l.confidence, f"tests focus {node.name}", budget, test_status)
            elif l.name == "called_by":
                self._node(l.node, Tier.MEDIUM, l.confidence * 0.8, f"calls focus {node.name}", budget, test_status)
            elif l.name == "used_by" and l.node.path:  # the tests and fixtures asking for a fixture in focus
                self._node(l.node, Tier.MEDIUM, l.confidence * 0.8, f"uses focus {node.name}", budget, test_status)
        if node.path:
            self._module(node.path, Tier.CRITICAL if node.kind == NodeKind.MODULE else Tier.HIGH,
                         f"module of focus {node.name}", budget)

    def _module(self, path: str, tier: Tier, why: str, budget: int) -> None:
        row = self.conn.execute("SELECT n.id FROM nodes n JOIN files f ON f.id=n.file_id "
                                "WHERE f.path=? AND n.kind='module'", (path,)).fetchone()
        if row is None:
            return
        node = self._nodes([row[0]])[row[0]]
        # The module's listing, or its one line: a listing that fits nowhere must not cut the tiers below it
        # (a 1,400-token listing at HIGH left a 1,000-token budget with one 17-token summary packed). Keyed as
        # its node: the focus module, a hit or a graph find is the same candidate, packed once.
        levels = tuple(r for r in renderings(self.conn, self.sources, node) if r.level != "full")
        # A listing is offered while it costs at most a tenth of the budget, a third at CRITICAL (a file in focus,
        # the task's current module): the first 60 tests of its file are not what a test in focus needs (they
        # took 981 of 1,500 tokens once).
        share = FULL_CODE_SHARE if tier == Tier.CRITICAL else MEDIUM_SHARE
        levels = tuple(_capped(r, int(share * budget)) if r.level == "module" else r for r in levels)
        self._add(Candidate(key=f"node:{node.id}", tier=tier, score=1.0, kind="module", name=node.qualname,
                            why=why, renderings=levels, path=path, start_line=node.start_line,
                            end_line=node.end_line))

    def _neighbours(self, req: Request, test_status) -> None:
        """Graph walk from the hits, focus and task files: what they lead to, ranked by PPR."""
        seeds: dict[int, float] = {}
        for rank, (node_id, score, _why) in enumerate(req.ranked[:HIGH_HITS]):
            seeds[node_id] = score / (1 + rank)
        for node in req.focus:
            seeds[node.id] = max(seeds.values(), default=1.0) * 2
        if not seeds:
            return
        scores = expand(self.edges, seeds)
        limit = self._share(MAX_NEIGHBOURS, req.budget)
        ranked = sorted(((s, i) for i, s in scores.items() if i not in seeds), reverse=True)[:limit]
        nodes = self._nodes([i for _, i in ranked])
        for rank, (score, node_id) in enumerate(ranked):
            node = nodes.get(node_id)
            if node is None or node.kind == NodeKind.LIBRARY:
                continue
            # LOW and one line each: as summaries at MEDIUM the first third took ~1,000 tokens of a 4k
            # context, and held the gold function less often than the search hits they displaced.
            self._node(node, Tier.LOW, score, "graph walk from the hits", req.budget, test_status,
                       richest="signature")

    def _task(self, task) -> None:
        lines = [f"Task {task.task_id}" + (f": {task.title}" if task.title else "") + f" [{task.status}]"]
        if getattr(task, "description", None):
            lines.append(task.description)
        if task.failing_tests:
            lines.append("Failing tests: " + ", ".join(task.failing_tests[:10]))
        if task.files_edited:
            lines.append("Edited: " + ", ".join(task.files_edited[-10:]))
        for note in task.notes[-TASK_NOTES:]:  # what the agent wrote down for itself, latest last
            lines.append("Note: " + (note if len(note) <= NOTE_CHARS else note[:NOTE_CHARS] + "..."))
        self._add(Candidate(key=f"task:{task.task_id}", tier=Tier.CRITICAL, score=100.0, kind="task",
                            name=task.task_id, why="current task", renderings=(Rendering("summary", "\n".join(lines)),
                                                                               Rendering("signature", lines[0]))))
        iterations = list(task.iterations)
        for age, it in enumerate(reversed(iterations)):
            tier = Tier.HIGH if age < 2 else Tier.MEDIUM if it.outcome == "success" else Tier.LOW
            text = f"Iteration {it.n}: {it.summary}" + (f" -> {it.outcome}" if it.outcome else "")
            self._add(Candidate(key=f"iteration:{task.task_id}:{it.seq}", tier=tier, score=50.0 - age, kind="iteration",
                                name=f"iteration {it.n}", why="task history", renderings=(Rendering("summary", text),)))

    def _error(self, error, budget: int, *, resolved: bool = False) -> None:
        refs = list(error.refs or [])
        if resolved:  # history now: one line, and its frames' code no longer comes first
            self._add(Candidate(key="error", tier=Tier.LOW, score=1.0, kind="error", name="resolved error",
                                why="the task's latest error, resolved since",
                                renderings=(Rendering("summary", f"Resolved error: {error.message}"),)))
            return
        text = f"Error: {error.message}"
        if refs:
            text += "\n" + "\n".join(f"  at {r.path}:{r.line}" + (f" in {r.function}" if r.function else "")
                                     for r in refs[-6:])
        self._add(Candidate(key="error", tier=Tier.CRITICAL, score=99.0, kind="error", name="latest error",
                            why="latest error of the task", renderings=(Rendering("full", text),
                                                                         Rendering("summary", text.splitlines()[0]))))
        # The innermost workspace frames are where the fix usually is.
        for ref in list(reversed(refs))[:ERROR_FRAMES]:
            row = self.conn.execute(
                "SELECT n.id FROM nodes n JOIN files f ON f.id=n.file_id WHERE f.path=? AND n.start_line<=? "
                "AND n.end_line>=? ORDER BY n.end_line - n.start_line LIMIT 1",
                (ref.path, ref.line, ref.line)).fetchone()
            if row:
                node = self._nodes([row[0]])[row[0]]
                self._node(node, Tier.CRITICAL, 98.0, f"error points at {ref.path}:{ref.line}", budget, {})

    def _files_of_task(self, task, budget: int) -> None:
        for age, path in enumerate(reversed(list(task.files_edited)[-5:])):
            self._module(path, Tier.HIGH if age == 0 else Tier.MEDIUM, "edited in this task", budget)
        for path in reversed(list(task.files_opened)[-3:]):  # where the agent has been looking
            self._module(path, Tier.MEDIUM, "opened in this task", budget)
        # The failing tests' code: what the fix must make pass (the task listed only their names).
        for test in list(task.failing_tests)[-FAILING_TESTS:]:
            node = self._test_node(test)
            if node is not None:
                self._node(node, Tier.HIGH, 97.0, f"failing test {test}", budget, {test: False})

    def _test_node(self, test: str) -> Node | None:
        """The node a pytest id names: ``path::Class::test_name[param]`` (a bare path: its module)."""
        path, *names = test.split("::")
        names = [n.split("[", 1)[0] for n in names]
        row = self.conn.execute("SELECT id FROM files WHERE path=?", (path.strip().removeprefix("./"),)).fetchone()
        if row is None:
            return None
        wanted = ".".join(names)
        found = self.conn.execute(
            "SELECT id, qualname FROM nodes WHERE file_id=? AND (? = '' AND kind='module' OR name=?) ORDER BY id",
            (row[0], wanted, names[-1] if names else "")).fetchall()
        for node_id, qualname in found:
            if not wanted or qualname == wanted or qualname.endswith("." + wanted):
                return self._nodes([node_id]).get(node_id)
        return None


def excerpt(code: str, first_line: int, line: int, max_tokens: int) -> str | None:
    """The lines of ``code`` (starting at ``first_line``) around ``line``, within ~``max_tokens``; None when
    ``line`` is not one of them or the window would be all of it.

    For a ``path:line`` focus inside a function too long for its share: ``QuerySet.bulk_create`` (959 tokens)
    in focus at line 800 came as its summary, without line 800. The window grows both ways while it stays
    under ``EXCERPT_CHARS_PER_TOKEN`` characters a token (the packer then checks the exact count).
    """
    lines = code.split("\n")
    at = line - first_line
    if not 0 <= at < len(lines):
        return None
    room = max_tokens * EXCERPT_CHARS_PER_TOKEN
    lo = hi = at
    used = len(lines[at])
    grew = True
    while grew:  # a line above, then one below, while they fit
        grew = False
        if lo > 0 and used + len(lines[lo - 1]) + 1 <= room:
            lo -= 1
            used += len(lines[lo]) + 1
            grew = True
        if hi < len(lines) - 1 and used + len(lines[hi + 1]) + 1 <= room:
            hi += 1
            used += len(lines[hi]) + 1
            grew = True
    if lo == 0 and hi == len(lines) - 1:
        return None  # the whole body: that is the full level
    head = f"# lines {first_line + lo}-{first_line + hi} of {first_line}-{first_line + len(lines) - 1}"
    return "\n".join([head, *lines[lo:hi + 1]])


def _capped(rendering: Rendering, max_tokens: int) -> Rendering:
    """The same rendering, offered only while it costs at most ``max_tokens`` (its text is still made lazily)."""
    return Rendering(rendering.level, make=lambda: rendering.text, max_tokens=max_tokens)
