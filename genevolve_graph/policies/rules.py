"""A deterministic rule-based planner: the offline default and a real baseline.

It reads the request, routes skills from cues (quoted text -> text_rendering, exact counts
-> quantity_counting, spatial relations -> spatial_layout, people -> anatomy_body_coherence,
...), reads those guides, searches for the request's subject and proper names, looks for
reference images, and writes a program whose gen_prompt folds in the evidence that is about
what the request names (``relevance.py``) and one sentence of its own per routed skill. It
speaks the GenEvolve text protocol, so its replies go through the same parser, tools,
binder and emitter as an LLM policy's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from genevolve_graph.policies.relevance import ADJECTIVES, Subject, normalise, subject_of
from genevolve_graph.core.protocol import CONTROL_KEY, format_answer, format_tool_call
from genevolve_graph.skills import SkillLibrary, load_skills

if TYPE_CHECKING:
    from genevolve_graph.core.context import AgentContext

NUMBER_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "dozen": 12, "pair": 2, "couple": 2, "single": 1, "one": 1,
}
_WORD = r"[A-Za-z][A-Za-z\-]*"
SKILL_CUES: dict[str, re.Pattern[str]] = {
    "text_rendering": re.compile(
        r"[\"“”'‘’«»][^\"“”'‘’«»]{1,80}[\"“”'‘’«»]|\b(title[sd]?|text|sign|signs|label|caption|headline|lettering|typography|logo|slogan|words?|reads|saying|banner|poster|cover|menu|inscription|written)\b",
        re.I,
    ),
    "quantity_counting": re.compile(
        r"\b(\d+|" + "|".join(NUMBER_WORDS) + r")\s+(?:" + _WORD + r"\s+){0,2}?" + _WORD + r"s\b|\bexactly\b|\bdozen\b",
        re.I,
    ),
    "spatial_layout": re.compile(
        r"\b(left|right|above|below|behind|in front of|next to|beside|between|on top of|under(?:neath)?|foreground|background|center|centre|corner|row|stacked|facing|inside|surrounded by)\b",
        re.I,
    ),
    "anatomy_body_coherence": re.compile(
        r"\b(persons?|people|man|men|woman|women|child|children|kids?|boys?|girls?|portraits?|faces?|hands?|fingers?|dancers?|athletes?|players?|soldiers?|chefs?|doctors?|astronauts?|musicians?|violinists?|crowds?|famil(?:y|ies)|figures?|body|bodies|pose|riding|holding)\b",
        re.I,
    ),
    "attribute_binding": re.compile(
        r"\b(red|blue|green|yellow|purple|orange|pink|black|white|golden|silver|striped|spotted|wearing|wooden|metallic)\b.*\b(and|while|with)\b.*\b(red|blue|green|yellow|purple|orange|pink|black|white|golden|silver|striped|spotted|wooden|metallic)\b",
        re.I,
    ),
    "physical_material_consistency": re.compile(
        r"\b(glass|metal|metallic|chrome|water|reflect\w*|shadow\w*|transparent|translucent|melting|ice|fire|smoke|liquid|marble|wet|rust\w*|velvet|steam|mirror)\b",
        re.I,
    ),
    "aesthetic_drawing": re.compile(
        r"\b(cinematic|photoreal\w*|watercolou?r|oil painting|minimalist|vintage|retro|\d{4}s|style|aesthetic|lighting|mood|illustration|poster|magazine|cover|editorial|golden hour|dramatic)\b",
        re.I,
    ),
    "creative_drawing": re.compile(
        r"\b(surreal\w*|fantasy|imagine\w*|whimsical|dream\w*|hybrid|made of|as if|impossible|magical|mythical|futuristic|steampunk|what if)\b",
        re.I,
    ),
}
SKILL_PRIORITY = (
    "text_rendering",
    "quantity_counting",
    "spatial_layout",
    "anatomy_body_coherence",
    "attribute_binding",
    "physical_material_consistency",
    "creative_drawing",
    "aesthetic_drawing",
)
STYLE_WORDS = re.compile(
    r"\b(a|an|the|photo|photograph|picture|image|illustration|poster|of|showing|depicting|style|in|with|draw|create|generate|render|make)\b",
    re.I,
)
QUOTED = re.compile(r"[\"“'‘«]([^\"“”'‘’«»]{1,80})[\"”'’»]")
TITLE_WORD = re.compile(r"\b(?:title[sd]?|text|reads|saying|headline|caption|label|logo|named)\s+([A-Z][A-Z0-9!?&.\- ]{1,40}[A-Z0-9!?.])\b")
COUNT = re.compile(r"\b(\d+|" + "|".join(NUMBER_WORDS) + r")\s+((?:" + _WORD + r"\s+){0,2}?" + _WORD + r"s)\b", re.I)
URL = re.compile(r"https?://\S+|www\.\S+")
IMG_LINE = re.compile(r"^(IMG_\d{3,}): title: (.*)$", re.M)
HIT_LINES = re.compile(r"^\d+\. title: (.*)\n(?:\s+url: .*\n)?\s+snippet: (.*)$", re.M)
ORDINALS = ("first", "second", "third", "fourth", "fifth")


@dataclass
class RequestAnalysis:
    """What the rules read from a request."""

    request: str
    skills: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    counts: list[tuple[str, str]] = field(default_factory=list)
    subject: Subject = field(default_factory=Subject)

    @property
    def topic(self) -> str:
        """The search topic when no named entity stands out: the request minus filler words."""
        words = STYLE_WORDS.sub(" ", QUOTED.sub(" ", self.request))
        return " ".join(words.split())[:120] or self.request[:120]


def analyse(request: str, skills: SkillLibrary, max_skills: int = 3) -> RequestAnalysis:
    """Route skills and pull entities, exact texts and counts out of a request."""
    scores: dict[str, int] = {}
    lowered = request.lower()
    for name, cue in SKILL_CUES.items():
        score = 2 * len(cue.findall(request))
        skill = skills.skills.get(name)
        if skill:
            score += sum(1 for t in skill.triggers if t and re.search(r"\b" + re.escape(t) + r"\b", lowered))
        if score >= 2:  # one weak trigger word alone does not route a skill
            scores[name] = score
    routed = sorted(scores, key=lambda n: (-scores[n], SKILL_PRIORITY.index(n)))[:max_skills]
    texts = [m.strip() for m in QUOTED.findall(request) if m.strip()]
    texts += [m.strip() for m in TITLE_WORD.findall(request) if m.strip() not in texts]
    counts = [(n.lower(), noun) for n, noun in COUNT.findall(request) if n.lower() not in ("one", "single")]
    subject = subject_of(request)
    subject.names = [n for n in subject.names if n not in texts]
    return RequestAnalysis(request, routed, subject.queries(), texts, counts, subject)


class RulesPolicy:
    """Plan: read the routed skills, search for facts, search for references, answer."""

    name = "rules"
    model = "rules-v1"

    def __init__(self, skills: SkillLibrary | None = None) -> None:
        self.skills = skills or load_skills()

    @classmethod
    def from_context(cls, ctx: "AgentContext") -> "RulesPolicy":
        return cls(load_skills(ctx.skills_dir))

    async def respond(self, messages: list[BaseMessage], ctx: "AgentContext") -> AIMessage:
        return AIMessage(content=self.reply(messages, ctx))

    def reply(self, messages: list[BaseMessage], ctx: "AgentContext") -> str:
        """The next reply text, in the GenEvolve protocol."""
        request = next(str(m.content) for m in messages if isinstance(m, HumanMessage) and not m.additional_kwargs.get(CONTROL_KEY))
        analysis = follow_guide(analyse(request, self.skills), messages)
        done = _calls_made(messages)
        final = any(isinstance(m, HumanMessage) and m.additional_kwargs.get(CONTROL_KEY) == "final_step" for m in messages)
        used = len(done)
        rounds_left = ctx.max_rounds - sum(isinstance(m, AIMessage) for m in messages)
        if not final and used < ctx.max_tool_calls and rounds_left > 1:
            for name, args, why in self._plan(analysis, ctx):
                if (name, _key(args)) not in done:
                    return f"<think>{why}</think>\n{format_tool_call(name, args)}"
        program = self._program(analysis, messages, ctx)
        why = "I have the facts, the guides and the references I need; writing the program."
        return f"<think>{why}</think>\n{format_answer(program)}"

    def _plan(self, a: RequestAnalysis, ctx: "AgentContext") -> list[tuple[str, dict[str, Any], str]]:
        steps: list[tuple[str, dict[str, Any], str]] = []
        for skill in a.skills:
            steps.append(("query_knowledge", {"skill_name": skill}, f"The request calls for {skill.replace('_', ' ')}; reading its guide."))
        queries = a.entities[:3] or [a.topic]
        steps.append(("search", {"queries": queries, "top_k": min(ctx.top_k, 3)}, f"Checking facts about {', '.join(queries)}."))
        for subject in (a.entities or [a.topic])[: ctx.n_max_reference_images]:
            steps.append(("image_search", {"query": subject, "top_k": min(ctx.top_k, 3)}, f"Looking for a visual reference of {subject}."))
        return steps

    def _program(self, a: RequestAnalysis, messages: list[BaseMessage], ctx: "AgentContext") -> dict[str, Any]:
        """The answer: only evidence about what the request names; guides shape the wording.

        An image is cited only when its title is about the request's subject or one of its
        proper names (never because a caption shares "red" or "snow"); a fact only when its
        source is. With nothing relevant, nothing is cited and the prompt is written from the
        request and the routed skills. Guide text is never copied: each routed skill adds a
        sentence of ours about this request.
        """
        observations = [_text_of(m.content) for m in messages if isinstance(m, ToolMessage)]
        refs: list[tuple[str, str]] = []  # (img_id, what it shows)
        covered: set[str] = set()
        for obs in observations:
            if not obs.startswith("--- image search result for ["):
                continue
            for img_id, title in IMG_LINE.findall(obs):
                term = a.subject.match(title)
                if term and term not in covered and img_id not in {r[0] for r in refs}:
                    refs.append((img_id, term))
                    covered.add(term)
                    break
        refs = sorted(refs[: ctx.n_max_reference_images], key=lambda r: int(r[0][4:]))
        facts: list[str] = []
        for obs in observations:
            if obs.startswith("--- search result for ["):
                for title, snippet in HIT_LINES.findall(obs):
                    if a.subject.match(title):
                        facts.append(_first_sentence(snippet))
        parts = [a.request.rstrip(". ") + "."]
        if facts:
            parts.append("Facts to respect: " + " ".join(list(dict.fromkeys(facts))[:3]))
        for position, (_, subject) in enumerate(refs):
            parts.append(f"Match the appearance of {_the(subject)} to the {ORDINALS[position]} reference image.")
        for text in a.texts:
            parts.append(f'The text "{text}" appears exactly once, spelled exactly as given, clearly legible.')
        for number, noun in a.counts:
            parts.append(f"Show exactly {number} {noun}, each one fully visible and separate, no more and no fewer.")
        label = a.subject.label or a.topic
        for skill in a.skills:
            sentence = skill_sentence(skill, a, label)
            if sentence:
                parts.append(sentence)
        if not refs and not facts:
            parts.append(f"{_the(label).capitalize() if not label[:1].isupper() else label} is the clear main subject, drawn with accurate, characteristic detail.")
        gen_prompt = URL.sub("", " ".join(parts))
        gen_prompt = re.sub(r"\bIMG_\d{3,}\b", "", gen_prompt)
        return {
            "gen_prompt": " ".join(gen_prompt.split()),
            "reference_images": [{"img_id": img_id, "note": f"the look and identity of {subject}"} for img_id, subject in refs],
        }


GUIDE_HEADING = "## Experience from similar requests"
GUIDE_QUOTED = re.compile(r"[\"“']([^\"“”'’]{2,60})[\"”']")


def guide_sections(messages: list[BaseMessage]) -> dict[str, list[str]]:
    """The bullets of a Decision Guide appended to the system prompt (``guidance="retrieve"``),
    by section title ("Skill routing", "Search queries", ...); empty without a guide."""
    system = next((str(m.content) for m in messages if isinstance(m, SystemMessage)), "")
    if GUIDE_HEADING not in system:
        return {}
    sections: dict[str, list[str]] = {}
    title = ""
    for line in system.split(GUIDE_HEADING, 1)[1].splitlines():
        line = line.strip()
        if line.startswith("- ") and title:
            sections.setdefault(title, []).append(line[2:])
        elif line.endswith(":") and not line.startswith("- "):
            title = line[:-1].lower()
    return sections


def follow_guide(a: RequestAnalysis, messages: list[BaseMessage], max_skills: int = 4) -> RequestAnalysis:
    """What a retrieved guide changes in the plan: skills it routes to are read too, and
    quoted queries it names are searched. Relevance still decides what the program cites."""
    sections = guide_sections(messages)
    if not sections:
        return a
    from genevolve_graph.core.protocol import SKILL_NAMES

    routed = [name for bullet in sections.get("skill routing", []) for name in SKILL_NAMES if name in bullet]
    a.skills = list(dict.fromkeys([*a.skills, *routed]))[:max_skills]
    queries = [q for bullet in sections.get("search queries", []) for q in GUIDE_QUOTED.findall(bullet)]
    a.entities = list(dict.fromkeys([*a.entities, *queries]))[:3]
    return a


BOUND_PAIR = re.compile(r"\b(" + "|".join(sorted(ADJECTIVES, key=len, reverse=True)) + r")\s+([a-z][a-z\-]+)", re.I)


def skill_sentence(skill: str, a: RequestAnalysis, label: str) -> str:
    """One sentence, in our words and about this request, for a routed skill.

    The guides decide *what* to pin down (lettering, counts, positions, anatomy, binding,
    light, coherence, composition); their instruction text never enters the prompt.
    """
    if skill == "text_rendering":
        return "" if a.texts else "Any lettering is crisp, evenly spaced and free of stray characters."
    if skill == "quantity_counting":
        return "" if a.counts else "Every counted item is fully visible and separate."
    if skill == "spatial_layout":
        return "The positions read exactly as described, with a distinct foreground and background."
    if skill == "anatomy_body_coherence":
        return "Every figure has natural proportions and a natural pose, with correctly formed limbs and hands."
    if skill == "attribute_binding":
        pairs = [f"{adj.lower()} {noun.lower()}" for adj, noun in BOUND_PAIR.findall(QUOTED.sub(" ", a.request))
                 if normalise(noun) not in ADJECTIVES and noun.lower() not in ("and", "with", "or")]
        listed = "; ".join(dict.fromkeys(pairs))
        return f"Each colour and material belongs to its own object only ({listed})." if listed else ""
    if skill == "physical_material_consistency":
        return "One consistent light source; shadows, reflections and textures behave as they do in reality."
    if skill == "creative_drawing":
        return "The imaginative idea is rendered as one coherent, believable scene."
    if skill == "aesthetic_drawing":
        return f"A balanced composition with {_the(label)} as the focal point, a harmonious palette and fine detail."
    return ""


def _the(term: str) -> str:
    """'the red fox', but 'Mount Fuji' (a proper name takes no article)."""
    return term if term[:1].isupper() else f"the {term}"


def _text_of(content: Any) -> str:
    """An observation's text (image observations carry image parts after it)."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def _first_sentence(text: str) -> str:
    text = " ".join(text.split()).rstrip("…")
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    return (match.group(1) if match else text).strip()


def _key(args: dict[str, Any]) -> str:
    return repr(sorted((k, v if not isinstance(v, list) else tuple(v)) for k, v in args.items() if k != "top_k"))


def _calls_made(messages: list[BaseMessage]) -> set[tuple[str, str]]:
    return {(c["name"], _key(c["args"])) for m in messages if isinstance(m, AIMessage) for c in m.tool_calls}


__all__ = ["RulesPolicy", "RequestAnalysis", "analyse"]
