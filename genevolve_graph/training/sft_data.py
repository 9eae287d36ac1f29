"""The SFT record (GenEvolve-Data-SFT, DESIGN.md §4): model, validation, reading and writing.

A record is ``{"messages": [{"role", "content"}], "images": [relative paths]}``: one ReAct
trajectory in chat format, in the GenEvolve text protocol, ending in ``<answer>``. Image
paths are relative to the data root (the folder holding the record files). Records written
by ``genevolve-graph export`` may carry two more keys that readers of the public data can
ignore: ``tools`` (OpenAI tool schemas, for native-protocol rows in TRL format) and ``meta``
(provenance: thread id, experiment, protocol, the ``IMG_###`` id of each listed image, ...).

The reader accepts what a local copy of the public data plausibly holds: a folder (searched
recursively) of ``.jsonl`` files (one record per line), ``.json`` files (one record or a list
of records), ``.parquet`` files, or a ``datasets`` folder written by ``save_to_disk``. Every
record is validated; a bad one is reported with its file and line and skipped, never fatal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genevolve_graph.nodes.binder import normalise_id
from genevolve_graph.core.protocol import answer_shape_problem, loads_lenient, parse_reply
from genevolve_graph.safety.file_guard import is_within

RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
IMAGE_BLOCK_MARK = "--- image search result for ["


class SFTDataError(ValueError):
    """The data path itself cannot be read (not a per-record problem)."""


class ChatMessage(BaseModel):
    """One chat turn. ``content`` is text, or a list of content parts for multimodal data."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = ""
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        return message_text(self.content)


class SFTRecord(BaseModel):
    """One training trajectory."""

    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage] = Field(min_length=1)
    images: list[str] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    meta: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as written to JSONL: ``messages`` and ``images`` always, ``tools`` and
        ``meta`` only when set; message fields that are unset are left out, so a text-protocol
        turn is exactly ``{"role", "content"}``."""
        out: dict[str, Any] = {"messages": [m.model_dump(exclude_none=True) for m in self.messages], "images": list(self.images)}
        if self.tools is not None:
            out["tools"] = self.tools
        if self.meta is not None:
            out["meta"] = self.meta
        extra = {k: v for k, v in (self.model_extra or {}).items() if k not in out}
        out.update(extra)
        return out

    def chat(self) -> list[dict[str, Any]]:
        """The messages as plain dicts (what a chat template or an OpenAI request takes)."""
        return [m.model_dump(exclude_none=True) for m in self.messages]

    def trl_row(self) -> dict[str, Any]:
        """A row in TRL's conversational format: ``messages`` plus ``tools`` as a JSON string
        (TRL decodes a string; a string keeps Arrow from merging the tools' different
        parameter objects into one struct full of nulls)."""
        return {"messages": self.chat(), "tools": json.dumps(self.tools, ensure_ascii=False) if self.tools else None}


def message_text(content: Any) -> str:
    """The text of a message content (string, or the text parts of a part list)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
    return "\n".join(parts)


# --------------------------------------------------------------------------- validation


def final_answer(record: SFTRecord) -> tuple[dict[str, Any] | None, str]:
    """The answer JSON of the record's last turn, or (None, why not)."""
    last = record.messages[-1]
    if last.role != "assistant":
        return None, f"the trajectory does not end in an assistant turn (last role: {last.role})"
    text = last.text()
    parsed = parse_reply(text)
    if parsed.kind == "answer":
        return parsed.answer, ""
    if "<answer>" not in text and not last.tool_calls:
        # Native-protocol rows may answer with bare JSON.
        try:
            answer = loads_lenient(text)
        except ValueError:
            answer = None
        if answer is not None and not answer_shape_problem(answer):
            return answer, ""
    return None, f"the last assistant turn is not a parsable <answer> ({parsed.problem or 'it holds a tool call'})"


def returned_image_ids(record: SFTRecord) -> set[str]:
    """Every ``IMG_###`` id that an ``image_search`` observation returned in the trajectory."""
    found: set[str] = set()
    for message in record.messages:
        text = message.text()
        is_observation = message.role == "tool" or (message.role == "user" and "<tool_response>" in text)
        if not is_observation or IMAGE_BLOCK_MARK not in text:
            continue
        for block in text.split(IMAGE_BLOCK_MARK)[1:]:
            block = block.split("--- end of image search result ---", 1)[0]
            for line in block.splitlines():
                head = line.split(":", 1)[0].strip()
                img_id = normalise_id(head) if head.upper().startswith("IMG") else None
                if img_id:
                    found.add(img_id)
    return found


def cited_image_ids(answer: dict[str, Any]) -> list[str]:
    cited = []
    for item in answer.get("reference_images") or []:
        raw = item.get("img_id", "") if isinstance(item, dict) else str(item)
        cited.append(normalise_id(str(raw)) or str(raw))
    return cited


def record_problems(record: SFTRecord, root: Path | None) -> list[str]:
    """Why a record cannot be used for SFT (empty when it can).

    Checks: it has a user turn and an assistant turn; it ends in a parsable answer; every
    cited ``IMG_###`` id was returned by an ``image_search``; every listed image is a
    relative path to an existing regular file that stays under ``root`` once ``..`` and
    symlinks are resolved (skipped when ``root`` is None): a path inside data is confined
    to the data set, like a caller's path.
    """
    problems: list[str] = []
    roles = [m.role for m in record.messages]
    if "user" not in roles:
        problems.append("the trajectory has no user turn (the request)")
    answer, why = final_answer(record)
    if answer is None:
        problems.append(why)
    else:
        returned = returned_image_ids(record)
        missing = [i for i in cited_image_ids(answer) if i not in returned]
        if missing:
            problems.append(f"the answer cites {', '.join(missing)}, which no image_search returned")
    for image in record.images:
        if not image or os.path.isabs(image) or image.startswith("~"):
            problems.append(f"image path {image!r} must be relative to the data root")
        elif root is not None and not is_within(root / image, root):
            problems.append(f"image path {image!r} leaves the data root {root} ('..' or a symlink); images must lie inside it")
        elif root is not None and not (root / image).is_file():
            problems.append(f"image {image} does not exist under {root}")
    return problems


# --------------------------------------------------------------------------- reading


@dataclass
class LoadedRecord:
    where: str
    """``file:line`` (JSONL) or ``file#index`` (JSON list, parquet, dataset)."""
    record: SFTRecord


@dataclass
class LoadResult:
    root: Path
    records: list[LoadedRecord] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """(where, problem) for every record that was skipped."""
    files: list[Path] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    """JSON files that hold no records (e.g. image caption sidecars)."""

    @property
    def total(self) -> int:
        return len(self.records) + len({w for w, _ in self.problems})


def _is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and (path / "dataset_info.json").is_file() and (path / "state.json").is_file()


def record_files(path: Path) -> list[Path]:
    """Record files under ``path`` in a stable order (hidden folders and ``datasets`` cache
    folders are skipped)."""
    if path.is_file():
        return [path]
    files = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and not _is_dataset_dir(Path(dirpath) / d))
        for name in sorted(filenames):
            if name.endswith(RECORD_SUFFIXES) and not name.startswith("."):
                files.append(Path(dirpath) / name)
    return sorted(files, key=lambda f: f.relative_to(path).as_posix())


def _raw_rows(file: Path, rel: str, ignored: list[str]) -> Iterator[tuple[str, Any]]:
    """(where, raw row or a JSON error message) for each row of one file."""
    if file.suffix == ".jsonl":
        with file.open(encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    yield f"{rel}:{number}", json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"{rel}:{number}", SFTDataError(f"not valid JSON ({exc.msg})")
    elif file.suffix == ".json":
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            yield rel, SFTDataError(f"not valid JSON ({exc.msg} at line {exc.lineno})")
            return
        if isinstance(data, dict) and "messages" in data:
            yield rel, data
        elif isinstance(data, list):
            for index, row in enumerate(data):
                yield f"{rel}#{index}", row
        else:
            ignored.append(rel)
    elif file.suffix == ".parquet":
        import pyarrow.parquet as pq

        for index, row in enumerate(pq.read_table(file).to_pylist()):
            yield f"{rel}#{index}", row


def _dataset_rows(path: Path) -> Iterator[tuple[str, Any]]:
    from datasets import load_from_disk

    dataset = load_from_disk(str(path))
    for index, row in enumerate(dataset):
        yield f"{path.name}#{index}", row


def parse_record(row: Any) -> tuple[SFTRecord | None, str]:
    """A raw row as a record, or (None, the problem in one line)."""
    if isinstance(row, Exception):
        return None, str(row)
    if not isinstance(row, dict):
        return None, f"a record must be a JSON object, not {type(row).__name__}"
    row = dict(row)
    tools = row.get("tools")
    if isinstance(tools, str):  # TRL-format rows keep tools as a JSON string
        try:
            row["tools"] = json.loads(tools)
        except json.JSONDecodeError:
            return None, "'tools' is a string that is not JSON"
    if row.get("images") is None:
        row["images"] = []
    if isinstance(row.get("messages"), list):  # Arrow fills absent struct fields with None
        row["messages"] = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in row["messages"]]
    try:
        return SFTRecord.model_validate(row), ""
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(p) for p in first["loc"]) or "record"
        more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        return None, f"{location}: {first['msg']}{more}"


def load_sft(path: Path | str, *, validate: bool = True) -> LoadResult:
    """Read and validate every record under ``path`` (a folder, a file, or a saved dataset).

    Image paths are checked relative to the data root: the folder itself, or a file's folder.
    Raises ``SFTDataError`` only when ``path`` is unusable as a whole.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise SFTDataError(f"{path} does not exist; pass a folder of SFT records (JSONL/JSON/parquet) or one record file")
    root = path if path.is_dir() else path.parent
    result = LoadResult(root=root)
    if _is_dataset_dir(path):
        sources: Iterable[tuple[str, Any]] = _dataset_rows(path)
        result.files.append(path)
    else:
        if path.is_file() and not path.name.endswith(RECORD_SUFFIXES):
            raise SFTDataError(f"{path} is not a record file; use .jsonl, .json or .parquet, or pass the data folder")
        files = record_files(path)
        if not files:
            raise SFTDataError(f"no record files (.jsonl, .json, .parquet) under {path}")
        result.files.extend(files)
        sources = (item for file in files for item in _raw_rows(file, file.relative_to(root).as_posix(), result.ignored_files))
    for where, row in sources:
        record, problem = parse_record(row)
        if record is None:
            result.problems.append((where, problem))
            continue
        problems = record_problems(record, root) if validate else []
        if problems:
            result.problems.extend((where, p) for p in problems)
        else:
            result.records.append(LoadedRecord(where, record))
    return result


# --------------------------------------------------------------------------- writing


def rebase_images(record: SFTRecord, from_root: Path, to_dir: Path) -> SFTRecord:
    """The record with its image paths made relative to ``to_dir`` instead of ``from_root``."""
    if not record.images:
        return record
    images = [Path(os.path.relpath((from_root / image).resolve(), to_dir.resolve())).as_posix() for image in record.images]
    return record.model_copy(update={"images": images})


class JsonlWriter:
    """Writes records one line at a time (flushed), so a long run leaves a usable prefix."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._stream = self.path.open("w", encoding="utf-8")
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        self._stream.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._stream.flush()
        self.count += 1

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def load_training_records(path: Path | str) -> tuple[list[SFTRecord], LoadResult]:
    """Valid records under ``path`` (image paths made absolute) and the load report."""
    result = load_sft(path)
    records = []
    for loaded in result.records:
        record = loaded.record
        if record.images:
            record = record.model_copy(update={"images": [str((result.root / p).resolve()) for p in record.images]})
        records.append(record)
    return records, result
