"""Trace export: finished threads of a checkpointer as SFT / TRL training records.

Every recorded run is training data. ``export_threads(saver, ...)`` reads the threads of a
checkpointer (SQLite, Postgres or memory) and yields one ``SFTRecord`` per kept trajectory:

- ``format="sft"``: GenEvolve-Data-SFT records (DESIGN.md §4) in the text protocol: the
  exact chat messages the policy received and produced (system prompt, request, raw
  assistant turns, ``<tool_response>`` user turns, control messages where they occurred).
  A genevolve-protocol trajectory exports byte-identical to its HTTP requests. Native-
  protocol runs are rewritten into the text protocol (tool calls as ``<tool_call>`` text,
  the tool block in the system prompt). ``images`` lists every image an ``image_search``
  returned, in ``IMG_###`` order (``meta.image_ids`` gives the id of each), copied under
  ``images_dir`` with content-addressed names and referenced relative to ``data_root``.
- ``format="trl"``: TRL's conversational format: the messages exactly as the policy's
  protocol sent them, plus ``tools`` (the tool schemas) for native-protocol runs.

Threads are read in two passes: the latest checkpoint of every thread (cheap: no message
replay) decides the filters (termination, rounds, evaluation score) and the de-duplication
by prompt; then the kept threads are read in full through ``graph.get_state``. A thread
whose checkpoint cannot be read, that did not finish, or whose images are gone is reported
in the ``ExportReport`` and skipped; it never stops the export.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence

from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langgraph.checkpoint.base import BaseCheckpointSaver

from genevolve_graph.safety.file_guard import is_within
from genevolve_graph.safety.imaging import UnsafeImageError, read_image_file
from genevolve_graph.nodes.binder import id_number
from genevolve_graph.prompts import GENEVOLVE_CALL_LINE, GENEVOLVE_TOOLS_SECTION, NATIVE_CALL_LINE, NATIVE_TOOLS_SECTION
from genevolve_graph.nodes.reply import policy_trajectory
from genevolve_graph.core.protocol import chat_dicts, format_answer, format_tool_call, native_tool_schemas, tools_block
from genevolve_graph.core.state import Reference
from genevolve_graph.training.scrub import Scrubber
from genevolve_graph.training.sft_data import ChatMessage, SFTRecord
from genevolve_graph.util.file_modes import write_bytes_atomic

ExportFormat = Literal["sft", "trl"]
FORMATS: tuple[str, ...] = ("sft", "trl")
TERMINATIONS: tuple[str, ...] = ("answer", "no_answer", "answer_parse_failed", "error")


class ExportError(ValueError):
    """Bad export input (evaluation file, options); the message names the input and the fix."""


# --------------------------------------------------------------------------- options and report


@dataclass
class ExportFilters:
    """Which finished threads become records."""

    terminations: tuple[str, ...] | None = ("answer",)
    """Kept termination reasons (``None``: all)."""
    min_rounds: int | None = None
    max_rounds: int | None = None
    min_overall: float | None = None
    """Minimum evaluation ``overall`` (needs ``scores``); threads without a score are dropped."""
    dedupe: bool = True
    """One record per prompt: the best-scored thread, else the earliest."""


@dataclass
class ExportReport:
    """What an export read, wrote, filtered and had to skip."""

    threads: int = 0
    exported: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(thread id, problem) for threads that could not be exported: unreadable checkpoints,
    unfinished runs, missing images."""
    filtered: Counter = field(default_factory=Counter)
    """Reason -> number of finished threads the filters left out."""

    def summary(self) -> str:
        parts = [f"{self.exported} of {self.threads} threads exported"]
        if self.filtered:
            parts.append("filtered: " + ", ".join(f"{n} {reason}" for reason, n in sorted(self.filtered.items())))
        if self.problems:
            parts.append(f"{len(self.problems)} skipped with problems")
        return "; ".join(parts)


# --------------------------------------------------------------------------- evaluation scores


def _overall(row: dict[str, Any]) -> float | None:
    if row.get("status") not in (None, "scored"):
        return None
    for holder in (row.get("scores"), row.get("kscore"), row):
        if isinstance(holder, dict) and isinstance(holder.get("overall"), (int, float)) and not isinstance(holder.get("overall"), bool):
            return float(holder["overall"])
    return None


def _prompt_key(text: str) -> str:
    return " ".join((text or "").split()).casefold()


class ScoreTable:
    """Per-sample ``overall`` scores from an evaluation file (``results_eval.jsonl``).

    A thread finds its score by ``thread_id``, else by its ``row_id`` metadata against the
    row's ``id``, else by its request against the row's ``prompt``/``question``. Rows whose
    ``status`` is not ``scored`` count as unscored.
    """

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.by_thread: dict[str, float | None] = {}
        self.by_id: dict[str, float | None] = {}
        self.by_prompt: dict[str, float | None] = {}
        for row in rows:
            overall = _overall(row)
            if row.get("thread_id") not in (None, ""):
                self.by_thread[str(row["thread_id"])] = overall
            if row.get("id") not in (None, ""):
                self.by_id[str(row["id"])] = overall
            prompt = row.get("prompt") or row.get("question")
            if isinstance(prompt, str) and prompt.strip():
                self.by_prompt.setdefault(_prompt_key(prompt), overall)

    @classmethod
    def load(cls, path: Path | str) -> "ScoreTable":
        path = Path(path).expanduser()
        if not path.is_file():
            raise ExportError(f"evaluation file {path} not found (--eval); pass the results_eval.jsonl of an evaluate run")
        text = path.read_text(encoding="utf-8")
        rows: list[Any]
        if text.lstrip().startswith("["):
            try:
                rows = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ExportError(f"evaluation file {path} is not a valid JSON array ({exc.msg}) (--eval)") from None
        else:
            rows = []
            for number, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise ExportError(f"evaluation file {path} line {number} is not JSON ({exc.msg}) (--eval)") from None
        rows = [r for r in rows if isinstance(r, dict) and "summary_type" not in r]
        if not rows:
            raise ExportError(f"evaluation file {path} holds no per-sample rows (--eval)")
        return cls(rows)

    def lookup(self, thread_id: str, metadata: dict[str, Any], request: str) -> tuple[bool, float | None]:
        """(found, overall) for one thread."""
        if thread_id in self.by_thread:
            return True, self.by_thread[thread_id]
        for key in (metadata.get("row_id"), metadata.get("id"), thread_id):
            if key not in (None, "") and str(key) in self.by_id:
                return True, self.by_id[str(key)]
        key = _prompt_key(request)
        if key and key in self.by_prompt:
            return True, self.by_prompt[key]
        return False, None


# --------------------------------------------------------------------------- listing threads


def list_threads(saver: BaseCheckpointSaver, *, experiment: str | None = None) -> list[str]:
    """Thread ids of the saver's root namespace, oldest first (by first checkpoint).

    SQLite, Postgres and in-memory savers are listed without deserializing any checkpoint
    (so one corrupt blob cannot stop the listing); other savers through ``saver.list``.
    """
    metadata_filter = {"experiment": experiment} if experiment else None
    try:
        from langgraph.checkpoint.sqlite import SqliteSaver
    except ImportError:  # pragma: no cover - the sqlite saver is a core dependency
        SqliteSaver = None  # type: ignore[assignment]
    if SqliteSaver is not None and isinstance(saver, SqliteSaver):
        from langgraph.checkpoint.sqlite.utils import search_where

        where, params = search_where(None, metadata_filter)
        where = (where + " AND " if where else "WHERE ") + "checkpoint_ns = ''"
        with saver.cursor(transaction=False) as cur:
            cur.execute(f"SELECT thread_id, MIN(checkpoint_id) AS first FROM checkpoints {where} GROUP BY thread_id ORDER BY first", params)
            return [row[0] for row in cur.fetchall()]
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
    except ImportError:
        PostgresSaver = None  # type: ignore[assignment]
    if PostgresSaver is not None and isinstance(saver, PostgresSaver):
        sql = "SELECT thread_id, MIN(checkpoint_id) AS first FROM checkpoints WHERE checkpoint_ns = ''"
        args: list[Any] = []
        if metadata_filter:
            sql += " AND metadata @> %s::jsonb"
            args.append(json.dumps(metadata_filter))
        with saver._cursor() as cur:  # noqa: SLF001 - the saver's own connection handling
            cur.execute(sql + " GROUP BY thread_id ORDER BY first", args)
            return [row["thread_id"] for row in cur.fetchall()]
    from langgraph.checkpoint.memory import InMemorySaver

    if isinstance(saver, InMemorySaver):
        found: list[tuple[str, str]] = []
        for thread_id, namespaces in list(saver.storage.items()):
            checkpoints = namespaces.get("", {})
            if not checkpoints:
                continue
            first = min(checkpoints)
            if experiment:
                try:
                    meta = saver.serde.loads_typed(checkpoints[max(checkpoints)][1])
                except Exception:  # noqa: BLE001 - reported when the thread is read
                    meta = {"experiment": experiment}
                if meta.get("experiment") != experiment:
                    continue
            found.append((first, thread_id))
        return [t for _, t in sorted(found)]
    firsts: dict[str, str] = {}
    for item in saver.list(None, filter=metadata_filter):
        conf = item.config["configurable"]
        if conf.get("checkpoint_ns", ""):
            continue
        tid, cid = conf["thread_id"], conf["checkpoint_id"]
        firsts[tid] = min(cid, firsts.get(tid, cid))
    return sorted(firsts, key=firsts.__getitem__)


# --------------------------------------------------------------------------- rendering messages


def _join(text: str, block: str) -> str:
    return f"{text.rstrip()}\n{block}" if text.strip() else block


def text_protocol_system(prompt: str) -> str:
    """A native-protocol system prompt rewritten for the text protocol (tool block inline)."""
    section = GENEVOLVE_TOOLS_SECTION.format(tools=tools_block())
    if NATIVE_TOOLS_SECTION in prompt:
        return prompt.replace(NATIVE_CALL_LINE, GENEVOLVE_CALL_LINE).replace(NATIVE_TOOLS_SECTION, section)
    if "<tools>" in prompt:
        return prompt
    return _join(prompt, "\n" + section)


def text_protocol_dicts(messages: list[BaseMessage], protocol: str, answer: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The trajectory in the GenEvolve text protocol.

    For a genevolve-protocol run this is exactly what the policy received (plus its final
    reply). A native run's tool calls become ``<tool_call>`` text, its tool results
    ``<tool_response>`` user turns, a bare-JSON answer an ``<answer>`` block, and its system
    prompt gets the tool block.
    """
    if protocol != "native":
        return chat_dicts(messages, "genevolve")
    last_ai = max((i for i, m in enumerate(messages) if isinstance(m, AIMessage)), default=-1)
    converted: list[BaseMessage] = []
    for index, message in enumerate(messages):
        if isinstance(message, SystemMessage):
            converted.append(SystemMessage(content=text_protocol_system(str(message.content))))
        elif isinstance(message, AIMessage):
            content = message.content if isinstance(message.content, str) else str(message.content)
            if message.tool_calls and "<tool_call>" not in content:
                call = message.tool_calls[0]
                content = _join(content, format_tool_call(call["name"], call["args"]))
            elif index == last_ai and answer is not None and "<answer>" not in content:
                content = format_answer(answer)
            converted.append(AIMessage(content=content))
        else:
            converted.append(message)
    return chat_dicts(converted, "genevolve")


# --------------------------------------------------------------------------- images


class MissingImage(RuntimeError):
    pass


def default_image_roots(database: Path | None) -> list[Path]:
    """Where a run's reference images legitimately are: the trace database's folder (a run
    folder), the cache (downloads) and the bundled image folder. A path a trace database
    names elsewhere is data, not a file to copy, unless the operator adds its folder."""
    from genevolve_graph.tools.local_images import DEFAULT_IMAGE_DIR
    from genevolve_graph.util.paths import cache_root

    found = [cache_root(), DEFAULT_IMAGE_DIR]
    return ([Path(database).expanduser().resolve().parent] if database else []) + found


def outside_roots(path: Path, roots: Sequence[Path] | None) -> str:
    """Why ``path`` (symlinks followed) is outside every root ("" when inside one, or when
    ``roots`` is None: no confinement asked)."""
    if roots is None or any(is_within(path, root) for root in roots):
        return ""
    shown = ", ".join(str(r) for r in roots)
    return f"it lies outside the export's image roots ({shown}); if the run's images really are there, pass --image-root with their folder"


class ImageCopier:
    """Copies reference images under ``images_dir`` with content-addressed names.

    The same file found by many trajectories is stored once; re-running an export finds the
    copies already there. Paths returned are relative to ``data_root`` (POSIX separators).
    """

    def __init__(self, images_dir: Path, data_root: Path, roots: Sequence[Path] | None = None) -> None:
        self.images_dir = Path(images_dir).expanduser().resolve()
        self.data_root = Path(data_root).expanduser().resolve()
        self.roots = roots
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self._done: dict[str, str] = {}

    def copy(self, source: str) -> str:
        if source in self._done:
            return self._done[source]
        path = Path(source).expanduser()
        outside = outside_roots(path, self.roots)
        if outside:
            raise MissingImage(f"{source} is refused: {outside}")
        try:  # a trace database is input like any other: only real images are copied
            data = read_image_file(path)
        except OSError as exc:
            raise MissingImage(f"{source} ({exc.strerror or exc})") from None
        except UnsafeImageError as exc:
            raise MissingImage(f"{source} is refused: {exc}") from None
        suffix = path.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,5}", path.suffix.lower() or "") else ".img"
        target = self.images_dir / f"{hashlib.sha256(data).hexdigest()[:24]}{suffix}"
        if not (target.is_file() and target.stat().st_size == len(data)):
            write_bytes_atomic(target, data)  # a failed write (a full disk) leaves no temporary file behind
        relative = Path(os.path.relpath(target, self.data_root)).as_posix()
        self._done[source] = relative
        return relative


# --------------------------------------------------------------------------- export


@dataclass
class _Candidate:
    thread_id: str
    order: int
    request: str
    termination: str | None
    rounds: int
    metadata: dict[str, Any]
    score: float | None = None

    def kept(self) -> "_Candidate":
        """What the second pass reads of a candidate that passed the filters: the memory of
        an export grows with its threads only by a few short fields each."""
        return _Candidate(self.thread_id, self.order, "", self.termination, self.rounds,
                          {k: self.metadata[k] for k in RECORD_METADATA if k in self.metadata}, self.score)


RECORD_METADATA = ("protocol", "experiment", "policy", "model", "row_id")
"""The checkpoint metadata a training record carries (``_read_record``)."""


def _summaries(
    saver: BaseCheckpointSaver, thread_ids: list[str], report: ExportReport, problem: Callable[[str, str], None]
) -> Iterator[_Candidate]:
    for order, thread_id in enumerate(thread_ids):
        report.threads += 1
        try:
            item = saver.get_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
        except Exception as exc:  # noqa: BLE001 - one bad thread must not stop the export
            problem(thread_id, f"unreadable checkpoint: {type(exc).__name__}: {exc}")
            continue
        if item is None:
            problem(thread_id, "no such thread in the checkpointer")
            continue
        values = item.checkpoint.get("channel_values") or {}
        yield _Candidate(
            thread_id=thread_id,
            order=order,
            request=str(values.get("request") or ""),
            termination=values.get("termination"),
            rounds=int(values.get("rounds") or 0),
            metadata=dict(item.metadata or {}),
        )


def _filter_reason(candidate: _Candidate, filters: ExportFilters, scores: ScoreTable | None) -> str:
    if filters.terminations is not None and candidate.termination not in filters.terminations:
        return f"termination={candidate.termination}"
    if filters.min_rounds is not None and candidate.rounds < filters.min_rounds:
        return f"rounds<{filters.min_rounds}"
    if filters.max_rounds is not None and candidate.rounds > filters.max_rounds:
        return f"rounds>{filters.max_rounds}"
    if scores is not None:
        found, candidate.score = scores.lookup(candidate.thread_id, candidate.metadata, candidate.request)
        if filters.min_overall is not None:
            if candidate.score is None:
                return "without a score" if found else "not in the evaluation file"
            if candidate.score < filters.min_overall:
                return f"overall<{filters.min_overall:g}"
    return ""


def export_threads(
    saver: BaseCheckpointSaver,
    *,
    experiment: str | None = None,
    thread_ids: Iterable[str] | None = None,
    format: ExportFormat = "sft",
    filters: ExportFilters | None = None,
    scores: ScoreTable | None = None,
    images_dir: Path | str | None = None,
    data_root: Path | str | None = None,
    scrub: bool | Scrubber = True,
    report: ExportReport | None = None,
    on_problem: Callable[[str, str], None] | None = None,
    graph: Any = None,
    image_roots: Sequence[Path] | None = None,
) -> Iterator[SFTRecord]:
    """Yield one training record per kept finished thread of ``saver``.

    ``thread_ids`` limits the export to those threads (else every thread, or those tagged
    ``experiment``). ``images_dir`` (``sft`` only) receives copies of the reference images,
    referenced relative to ``data_root`` (default: ``images_dir``'s parent); without it the
    records list the images' original local paths. ``image_roots``: the folders a
    reference image may be read from (``default_image_roots``); a path the database names
    outside them is a reported problem (None: no confinement). Problems go to ``report`` and
    ``on_problem(thread_id, problem)``; filtered threads are counted in ``report.filtered``.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; choose sft or trl")
    filters = filters or ExportFilters()
    if filters.min_overall is not None and scores is None:
        raise ExportError("a minimum overall score needs an evaluation file (--eval results_eval.jsonl)")
    report = report if report is not None else ExportReport()
    scrubber = scrub if isinstance(scrub, Scrubber) else Scrubber() if scrub else None
    copier = (ImageCopier(Path(images_dir), Path(data_root) if data_root else Path(images_dir).expanduser().resolve().parent, image_roots)
              if images_dir and format == "sft" else None)
    if graph is None:
        from genevolve_graph.agent.graph import build_graph

        graph = build_graph(saver)

    def problem(thread_id: str, text: str) -> None:
        report.problems.append((thread_id, text))
        if on_problem is not None:
            on_problem(thread_id, text)

    ids = list(dict.fromkeys(thread_ids)) if thread_ids is not None else list_threads(saver, experiment=experiment)
    groups: OrderedDict[str, list[_Candidate]] = OrderedDict()
    for candidate in _summaries(saver, ids, report, problem):
        if candidate.termination is None:
            problem(candidate.thread_id, f"unfinished: the run stopped after {candidate.rounds} round(s) without a termination")
            continue
        if experiment and thread_ids is not None and candidate.metadata.get("experiment") != experiment:
            report.filtered[f"experiment!={experiment}"] += 1
            continue
        reason = _filter_reason(candidate, filters, scores)
        if reason:
            report.filtered[reason] += 1
            continue
        key = _prompt_key(candidate.request) if filters.dedupe else candidate.thread_id
        groups.setdefault(key, []).append(candidate.kept())

    for group in groups.values():
        group.sort(key=lambda c: (-(c.score if c.score is not None else float("-inf")), c.order))
        for position, candidate in enumerate(group):
            record = _read_record(graph, candidate, format, copier, scrubber, problem, image_roots)
            if record is not None:
                report.exported += 1
                yield record
                if len(group) > position + 1:
                    report.filtered["duplicate prompt"] += len(group) - position - 1
                break


def _read_record(
    graph: Any,
    candidate: _Candidate,
    format: str,
    copier: ImageCopier | None,
    scrubber: Scrubber | None,
    problem: Callable[[str, str], None],
    image_roots: Sequence[Path] | None = None,
) -> SFTRecord | None:
    thread_id = candidate.thread_id
    try:
        snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    except Exception as exc:  # noqa: BLE001
        problem(thread_id, f"unreadable checkpoint: {type(exc).__name__}: {exc}")
        return None
    values = snapshot.values or {}
    if snapshot.next or not values.get("termination"):
        problem(thread_id, f"unfinished: next node(s) {', '.join(snapshot.next) or 'none'}, termination {values.get('termination')}")
        return None
    messages = policy_trajectory(values)  # a chat run's own messages and closing reply are not training data
    if not messages:
        problem(thread_id, "the thread holds no messages")
        return None
    protocol = str(candidate.metadata.get("protocol") or "genevolve")
    try:
        if format == "sft":
            dicts = text_protocol_dicts(messages, protocol, values.get("answer"))
            tools = None
        else:
            dicts = chat_dicts(messages, protocol)
            tools = native_tool_schemas() if protocol == "native" else None  # what the model was bound with
    except Exception as exc:  # noqa: BLE001 - a message the protocol cannot render
        problem(thread_id, f"cannot render the messages: {type(exc).__name__}: {exc}")
        return None
    registry: dict[str, Reference] = values.get("images") or {}
    # An image known only by URL (no local file) has nothing to copy and is not listed.
    ordered = sorted((r for r in registry.values() if r.local_path), key=lambda r: id_number(r.img_id))
    images: list[str] = []
    if format == "sft":
        for ref in ordered:
            if copier is None:
                outside = outside_roots(Path(ref.local_path).expanduser(), image_roots)
                if outside:
                    problem(thread_id, f"reference image {ref.img_id} is refused: {ref.local_path}: {outside}")
                    return None
                try:  # listed, not copied: still only a real image may be named
                    read_image_file(Path(ref.local_path).expanduser())
                except (OSError, UnsafeImageError) as exc:
                    problem(thread_id, f"reference image {ref.img_id} is missing or refused: {ref.local_path}: {exc}")
                    return None
                images.append(ref.local_path)
                continue
            try:
                images.append(copier.copy(ref.local_path))
            except MissingImage as exc:
                problem(thread_id, f"reference image {ref.img_id} is missing: {exc}")
                return None
    program = values.get("program")
    meta: dict[str, Any] = {
        "thread_id": thread_id,
        "checkpoint_id": snapshot.config["configurable"].get("checkpoint_id"),
        "experiment": candidate.metadata.get("experiment") or "",
        "protocol": protocol,
        "policy": candidate.metadata.get("policy"),
        "model": candidate.metadata.get("model"),
        "prompt": values.get("request", ""),
        "termination": values.get("termination"),
        "rounds": values.get("rounds", 0),
        "tool_calls": values.get("tool_calls", 0),
        "image_ids": [r.img_id for r in ordered] if format == "sft" else [],
        "references": [r.img_id for r in program.reference_images] if program else [],
    }
    if candidate.metadata.get("row_id") is not None:
        meta["row_id"] = candidate.metadata["row_id"]
    if candidate.score is not None:
        meta["overall"] = candidate.score
    if scrubber is not None:
        dicts = scrubber(dicts)
        meta = scrubber(meta)
    # The dicts come from the protocol layer, already in the record's shape: no need to validate again.
    return SFTRecord.model_construct(messages=[ChatMessage.model_construct(**d) for d in dicts], images=images, tools=tools, meta=meta)


# --------------------------------------------------------------------------- files


def write_trl_dataset(jsonl: Path, dataset_dir: Path) -> int:
    """Save the TRL-format JSONL as a ``datasets`` dataset (``load_from_disk``-able)."""
    from datasets import Dataset

    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    columns: dict[str, list[Any]] = {"messages": [r["messages"] for r in rows]}
    if any(r.get("tools") for r in rows):
        columns["tools"] = [r.get("tools") for r in rows]
    dataset = Dataset.from_dict(columns)
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    dataset.save_to_disk(str(dataset_dir))
    return len(rows)
