"""The eight generation skill guides and their loader.

A guide is a Markdown file with a small front matter (name, summary, triggers) and the
sections "When to use", "When not to use", "Constraints to write into the prompt" and
"Example fragment". ``query_knowledge`` returns the guide's body; the rules policy also
reads the triggers and the constraints. Guides from a user's ``skills_dir`` reach the
policy's prompt, so their text goes through the protocol-tag neutraliser first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from genevolve_graph.core.protocol import SKILL_NAMES
from genevolve_graph.safety.protocol_tags import neutralize_tags

GUIDES_DIR = Path(__file__).parent / "guides"
_FRONT_RE = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)


class SkillError(ValueError):
    """A guide file that cannot be read, or a skill name that does not exist."""


@dataclass(frozen=True)
class Skill:
    name: str
    summary: str
    body: str
    triggers: tuple[str, ...] = ()
    constraints: tuple[str, ...] = field(default=())
    source: str = ""


def parse_guide(text: str, source: str = "") -> Skill:
    """Parse one guide file."""
    match = _FRONT_RE.match(text)
    if not match:
        raise SkillError(f"{source or 'skill guide'}: missing the '---' front matter with name, summary and triggers")
    meta: dict[str, str] = {}
    for line in match.group(1).splitlines():
        key, sep, value = line.partition(":")
        if sep:
            meta[key.strip()] = value.strip()
    name = meta.get("name", "")
    if not name:
        raise SkillError(f"{source or 'skill guide'}: the front matter needs 'name:'")
    triggers = tuple(t.strip().strip("'\"").lower() for t in meta.get("triggers", "").strip("[]").split(",") if t.strip())
    body = text[match.end() :].strip()
    constraints: list[str] = []
    in_constraints = False
    for line in body.splitlines():
        if line.startswith("## "):
            in_constraints = line.lower().startswith("## constraints")
        elif in_constraints and line.lstrip().startswith("- "):
            constraints.append(line.lstrip()[2:].strip())
    return Skill(name, meta.get("summary", ""), body, triggers, tuple(constraints), source)


class SkillLibrary:
    """The bundled guides, with guides from ``extra_dir`` added or overriding by name."""

    def __init__(self, extra_dir: str | Path | None = None) -> None:
        self.skills: dict[str, Skill] = {}
        for path in sorted(GUIDES_DIR.glob("*.md")):
            skill = parse_guide(path.read_text(encoding="utf-8"), str(path))
            self.skills[skill.name] = skill
        if extra_dir:
            directory = Path(extra_dir).expanduser()
            if not directory.is_dir():
                raise SkillError(f"skills directory {directory} does not exist; pass a folder of NAME.md guides")
            for path in sorted(directory.glob("*.md")):  # a user's file: defused as web text is
                skill = parse_guide(neutralize_tags(path.read_text(encoding="utf-8")), str(path))
                self.skills[skill.name] = skill
        missing = [n for n in SKILL_NAMES if n not in self.skills]
        if missing:
            raise SkillError(f"skill guides missing for {missing} in {GUIDES_DIR}")

    def get(self, name: str) -> Skill:
        try:
            return self.skills[name]
        except KeyError:
            raise SkillError(f"unknown skill {name!r}; known skills: {', '.join(sorted(self.skills))}") from None

    def names(self) -> list[str]:
        return sorted(self.skills)


@lru_cache(maxsize=8)
def load_skills(extra_dir: str = "") -> SkillLibrary:
    """A cached library (guides are read once per process and folder)."""
    return SkillLibrary(extra_dir or None)
