"""Recipes: the YAML file that says which requests to build and how every stage runs.

A recipe is a grid over five axes (task family, missing external evidence, visual anchor,
dominant generation requirement, difficulty). Every combination is a *cell*; the
expander turns each cell into ``requests_per_cell`` natural requests. ``cells`` may list
chosen combinations instead of the full product, so a large grid need not be exhaustive.

The other sections configure the stages: ``expander`` (a chat model), ``dedup``,
``teacher`` (the agent's policy and tools), ``filter``, ``render``, ``visual_filter``,
``split``, and ``judge`` (the default judge endpoint of both audits). Paths are relative to
the recipe file. Keys are never written in a recipe: ``api_key_env`` names the variable.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

AXES = ("task_family", "missing_evidence", "visual_anchor", "requirement", "difficulty")
"""The grid's axes, in the order that names a cell."""
AXIS_LABELS = {
    "task_family": "task family",
    "missing_evidence": "missing external evidence",
    "visual_anchor": "visual anchor",
    "requirement": "dominant generation requirement",
    "difficulty": "difficulty",
}
KNOWLEDGE = "Knowledge-Anchored"
QUALITY = "Quality-Anchored"
NO_EVIDENCE = "none"
"""The ``missing_evidence`` value of a cell that needs no outside facts (Quality-Anchored)."""


MAX_GRID_CELLS = 100_000
"""Most cells a grid may make (each becomes ``requests_per_cell`` expander requests)."""
MAX_RECIPE_NODES = 200_000
"""Most values a recipe may hold once its YAML aliases are expanded (an alias bomb of a few
lines otherwise expands to billions)."""
ENV_PREFIX = "GENEVOLVE_DATA_"
"""Environment variables a recipe may read without ``--allow-env`` (``${NAME}`` or ``api_key_env``)."""


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file, the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EndpointConfig(_Strict):
    """An OpenAI-compatible chat endpoint configured by the operator."""

    base_url: str = ""
    model: str = ""
    api_key_env: str = Field(default="", description="Name of the environment variable holding the key (never the key).")
    rpm: float | None = None
    max_retries: int = Field(default=3, ge=0)
    timeout: float = Field(default=120.0, gt=0)

    def api_key(self) -> str | None:
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None


class ExpanderConfig(EndpointConfig):
    """The chat model that writes requests: an OpenAI-compatible endpoint, or any LangChain
    chat model named as ``module:attribute`` (an instance, or a factory called with no arguments)."""

    chat_model: str = ""
    temperature: float = 0.9
    concurrency: int = Field(default=4, ge=1)
    max_tokens: int | None = 2048


class DedupConfig(_Strict):
    """Near-duplicate removal: sentence-transformers embeddings, cosine at or above ``threshold`` is a duplicate."""

    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    threshold: float = Field(default=0.92, gt=0, le=1)
    enabled: bool = True


class TeacherConfig(_Strict):
    """The teacher agent: our graph with a strong model (``AgentContext`` fields)."""

    policy: Literal["openai", "rules"] = "openai"
    base_url: str = ""
    model: str = ""
    api_key_env: str = ""
    protocol: Literal["genevolve", "native"] = "genevolve"
    temperature: float = 0.6
    top_p: float = 0.9
    max_tokens: int = Field(default=4096, ge=1)
    max_rounds: int = Field(default=11, ge=2)
    max_tool_calls: int = Field(default=10, ge=0)
    max_refs: int = Field(default=2, ge=1)
    max_retries: int = Field(default=3, ge=0)
    retry_delay: float = Field(default=1.0, ge=0)
    request_timeout: float = Field(default=120.0, gt=0)
    search: str = "local"
    image_search: str = "local"
    corpus: str = ""
    image_dir: str = ""
    skills_dir: str = ""
    system_prompt_file: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    concurrency: int = Field(default=8, ge=1)
    checkpoint: str = ""


class AuditConfig(_Strict):
    """The VLM audit of kept programs; every score is in [0, 1]."""

    judge: EndpointConfig | None = None
    min_reference_support: float = Field(default=0.5, ge=0, le=1)
    min_evidence_adoption: float = Field(default=0.5, ge=0, le=1)
    min_constraint_coverage: float = Field(default=1.0, ge=0, le=1)
    enabled: bool = True


class FilterConfig(_Strict):
    """Programmatic checks (thresholds of the over-simple check) and the VLM audit."""

    min_tool_calls: int = Field(default=2, ge=0)
    min_prompt_words: int = Field(default=12, ge=0)
    require_reference: bool = Field(default=False, description="Drop programs without any reference image.")
    audit: AuditConfig = Field(default_factory=AuditConfig)
    concurrency: int = Field(default=8, ge=1)


class RenderConfig(_Strict):
    """The generator that renders ground-truth images (any backend of the registry)."""

    renderer: str = "preview"
    options: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    concurrency: int = Field(default=4, ge=1)


class VisualFilterConfig(_Strict):
    """The visual judge: each dimension scored 1-5; a rendering is kept when every score reaches its threshold."""

    judge: EndpointConfig | None = None
    thresholds: dict[str, float] = Field(default_factory=lambda: {"prompt_consistency": 3, "reference_use": 3, "visual_coherence": 3, "quality": 3})
    concurrency: int = Field(default=8, ge=1)
    enabled: bool = True

    @field_validator("thresholds")
    @classmethod
    def _known(cls, value: dict[str, float]) -> dict[str, float]:
        from genevolve_graph.data.judges import VISUAL_DIMENSIONS

        unknown = sorted(set(value) - set(VISUAL_DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown visual dimension {unknown[0]!r}; use {', '.join(VISUAL_DIMENSIONS)}")
        return value


class SplitConfig(_Strict):
    """The deterministic split. ``gt_fraction`` of the filtered trajectories get a ground-truth
    render (candidates for RL and the benchmark); the rest form the SFT view. Of the renders
    the visual filter keeps, ``bench_fraction`` (or ``bench_size``) go to the benchmark, the rest to RL."""

    seed: int = 0
    gt_fraction: float = Field(default=0.33, ge=0, le=1)
    bench_fraction: float = Field(default=0.2, ge=0, le=1)
    bench_size: int | None = Field(default=None, ge=0)


class Cell(_Strict):
    task_family: str
    missing_evidence: str
    visual_anchor: str
    requirement: str
    difficulty: str

    @property
    def id(self) -> str:
        """A readable, file-safe id: the values joined with dots (long ones shortened with a hash)."""
        text = ".".join(_slug(getattr(self, axis)) for axis in AXES)
        if len(text) <= 100:
            return text
        return text[:80] + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]

    @property
    def eval_type(self) -> str:
        """Knowledge-Anchored when the cell asks for outside evidence, else Quality-Anchored."""
        return QUALITY if self.missing_evidence.strip().lower() == NO_EVIDENCE else KNOWLEDGE


def _slug(value: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in value.strip().lower()).strip("_") or "x"


class Recipe(_Strict):
    name: str
    description: str = ""
    grid: dict[str, list[str]] = Field(default_factory=dict)
    cells: list[Cell] = Field(default_factory=list)
    descriptions: dict[str, str] = Field(default_factory=dict, description="Optional words about any axis value, shown to the expander.")
    categories: dict[str, str] = Field(default_factory=dict, description="Benchmark category per task family (default: the family).")
    requests_per_cell: int = Field(default=4, ge=1, le=100)
    language: str = "English"
    expander: ExpanderConfig = Field(default_factory=ExpanderConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    render: RenderConfig = Field(default_factory=RenderConfig)
    visual_filter: VisualFilterConfig = Field(default_factory=VisualFilterConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    judge: EndpointConfig | None = None
    path: str = Field(default="", exclude=True)

    @field_validator("grid")
    @classmethod
    def _axes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(value) - set(AXES))
        if unknown:
            raise ValueError(f"unknown grid axis {unknown[0]!r}; the axes are {', '.join(AXES)}")
        for axis, values in value.items():
            if not values or not all(isinstance(v, str) and v.strip() for v in values):
                raise ValueError(f"grid axis {axis!r} needs a non-empty list of names")
        return value

    @model_validator(mode="after")
    def _some_cells(self) -> "Recipe":
        # A grid that is given is used whole: one missing an axis is an error even beside
        # 'cells' (it used to be ignored silently, dropping every cell it meant to add).
        if self.grid or not self.cells:
            missing = [axis for axis in AXES if axis not in self.grid]
            if missing:
                raise ValueError(f"the grid lacks the axis {missing[0]!r} (give all of {', '.join(AXES)}, or list 'cells' without a grid)")
        if self.grid:
            count = math.prod(len(self.grid[axis]) for axis in AXES)
            if count > MAX_GRID_CELLS:
                sizes = " x ".join(str(len(self.grid[axis])) for axis in AXES)
                raise ValueError(f"the grid has {sizes} = {count:,} cells, more than the {MAX_GRID_CELLS:,} a recipe may have; "
                                 "list fewer values per axis, or the chosen combinations under 'cells'")
        return self

    def all_cells(self) -> list[Cell]:
        """Every cell, in a fixed order (listed cells first, then the grid's product), without repeats."""
        cells: dict[str, Cell] = {}
        for cell in self.cells:
            cells.setdefault(cell.id, cell)
        if self.grid and all(axis in self.grid for axis in AXES):
            for values in itertools.product(*(self.grid[axis] for axis in AXES)):
                cell = Cell(**dict(zip(AXES, values)))
                cells.setdefault(cell.id, cell)
        return list(cells.values())

    def category_of(self, cell: Cell) -> str:
        return self.categories.get(cell.task_family, cell.task_family)

    def describe(self, axis: str, value: str) -> str:
        extra = self.descriptions.get(value)
        return f"{value} ({extra})" if extra else value

    def key_names(self) -> list[tuple[str, str]]:
        """``(field, variable)`` of every ``api_key_env`` the recipe sets."""
        endpoints = [("expander", self.expander), ("judge", self.judge), ("filter.audit.judge", self.filter.audit.judge),
                     ("visual_filter.judge", self.visual_filter.judge), ("teacher", self.teacher)]
        return [(where, e.api_key_env) for where, e in endpoints if e is not None and e.api_key_env]

    def audit_judge(self) -> EndpointConfig | None:
        return self.filter.audit.judge or self.judge

    def visual_judge(self) -> EndpointConfig | None:
        return self.visual_filter.judge or self.judge

    def resolve(self, value: str) -> str:
        """A path of the recipe, relative to the recipe file (empty stays empty)."""
        if not value:
            return value
        path = Path(value).expanduser()
        if not path.is_absolute() and self.path:
            path = Path(self.path).parent / path
        return str(path.resolve())

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def load_recipe(path: Path | str, *, allow_env: Iterable[str] = ()) -> Recipe:
    """Read and check a recipe file; raises ``RecipeError`` with one line naming the problem.

    A recipe may read the environment variables named ``GENEVOLVE_DATA_*`` and those in
    ``allow_env`` (``data build --allow-env NAME``), in ``${NAME}`` and ``api_key_env``
    alike: a recipe from elsewhere cannot send ``${AWS_SECRET_ACCESS_KEY}`` to its endpoint."""
    import yaml

    path = Path(path).expanduser()
    allowed = frozenset(allow_env)
    try:
        raw = _safe_yaml(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        raise RecipeError(f"recipe {path} does not exist; pass a recipe YAML with --recipes (see docs/data.md)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc}; pass a UTF-8 YAML file with --recipes") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path} is not valid YAML ({str(exc).splitlines()[0]}); fix the file") from None
    try:
        raw = _expand_env(raw, allowed, path)
    except KeyError as exc:
        raise RecipeError(f"recipe {path} uses ${{{exc.args[0]}}}, which is not set; export it or write the value in the recipe") from None
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe {path} must be a YAML mapping with at least 'name' and 'grid'; see docs/data.md")
    try:
        recipe = Recipe(**raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        raise RecipeError(f"recipe {path}: {where}: {error['msg']}; see docs/data.md for the recipe format") from None
    for where, endpoint in recipe.key_names():
        _check_env_name(endpoint, allowed, path, f"{where}.api_key_env")
    recipe.path = str(path.resolve())
    return recipe


def _check_env_name(name: str, allowed: frozenset[str], path: Path, where: str) -> None:
    if name.startswith(ENV_PREFIX) or name in allowed:
        return
    raise RecipeError(f"recipe {path}: {where} names the environment variable {name!r}, which a recipe may not read; "
                      f"pass --allow-env {name} if it should, or rename it {ENV_PREFIX}...")


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """How many values ``node`` holds with every alias expanded (memoised per node, so
    counting costs the nodes written, not the nodes expanded)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = MAX_RECIPE_NODES + 1  # a node inside itself (a recursive alias) counts as too many
    value = node.value
    if isinstance(value, list):
        size = 1
        for item in value:
            size += sum(_expanded_size(part, memo) for part in item) if isinstance(item, tuple) else _expanded_size(item, memo)
            if size > MAX_RECIPE_NODES:
                break
    else:
        size = 1
    memo[id(node)] = size
    return size


def _safe_yaml(text: str, path: Path) -> Any:
    """``yaml.safe_load`` of ``text``, refusing a document that expands (through aliases)
    to more than ``MAX_RECIPE_NODES`` values before anything is built from it."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            size = _expanded_size(node, {})
        except RecursionError:
            size = MAX_RECIPE_NODES + 1
        if size > MAX_RECIPE_NODES:
            raise RecipeError(f"recipe {path} expands to more than {MAX_RECIPE_NODES:,} values through its YAML aliases (&anchor / *alias); "
                              "write the values out or use fewer aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand_env(value: Any, allowed: frozenset[str], path: Path) -> Any:
    """``${NAME}`` in any string of the recipe is replaced by that environment variable
    (endpoints differ per machine; keys still go through ``api_key_env``), for the names a
    recipe may read (``GENEVOLVE_DATA_*`` and ``allowed``)."""
    if isinstance(value, str):
        def variable(match: re.Match) -> str:
            name = match.group(1)
            _check_env_name(name, allowed, path, f"${{{name}}}")
            return os.environ[name]

        return _VAR.sub(variable, value)
    if isinstance(value, list):
        return [_expand_env(v, allowed, path) for v in value]
    if isinstance(value, dict):
        return {k: _expand_env(v, allowed, path) for k, v in value.items()}
    return value


def bundled_recipe(name: str = "small") -> Path:
    """The path of a recipe shipped with the package (``small``: the offline demo recipe)."""
    path = Path(__file__).resolve().parent / "recipes" / f"{name}.yaml"
    if not path.is_file():
        raise RecipeError(f"no bundled recipe {name!r}")
    return path
