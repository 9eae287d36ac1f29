"""What a request is about, and whether a search hit is about the same thing.

The rules planner must not cite a penguin for "a red fox in fresh snow" because both
captions say "snow", nor a bus because both say "red". So relevance is decided on the
*subject* of a request, not on shared words:

- the subject is the head noun of the request's first noun phrase (``fox`` in "A red fox in
  fresh snow"), plus the heads of noun phrases joined to it by "and" ("Saturn and its
  rings"), plus proper names anywhere ("the Eiffel Tower"). Adjectives ("red"), counts and
  settings after a preposition ("in fresh snow", "on a wooden table") are not subjects;
- a hit (an image title, a text result's title) is relevant when the title contains a proper
  name of the request, or the noun phrase its title opens with contains a subject head. A
  head that is part of a name does not count on its own: "the Eiffel Tower" is not matched
  by Big Ben's "clock tower" through the shared word "tower".

Plain string rules, no model: they are the offline baseline's, and they are deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'’\-]*")
QUOTED = re.compile(r"[\"“'‘«]([^\"“”'‘’«»]{1,80})[\"”'’»]")

DETERMINERS = {
    "a", "an", "the", "this", "that", "these", "those", "its", "his", "her", "their", "our", "my", "your",
    "some", "several", "many", "few", "exactly", "only", "just", "about", "around", "over", "one", "two",
    "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "dozen", "pair",
    "couple", "single", "each", "every", "no", "other", "another", "both",
}
FRAMES = re.compile(
    r"^\s*(?:please\s+)?(?:(?:draw|create|generate|render|make|paint|show|depict|illustrate|design|imagine)\s+(?:me\s+)?)?"
    r"(?:(?:a|an|the)\s+)?(?:(?:\w+\s+){0,2}?(?:photo(?:graph)?|picture|image|illustration|painting|drawing|render(?:ing)?|"
    r"sketch|shot|close-up|view|scene|portrait|poster|postcard|print|stamp|sticker|diagram|infographic|cartoon|logo|icon|mural|"
    r"tapestry|woodcut|engraving|watercolou?r|cover)\s+of\s+)?",
    re.I,
)
BOUNDARIES = {
    "in", "on", "at", "under", "over", "with", "by", "near", "beside", "behind", "next", "across", "through",
    "against", "during", "from", "for", "into", "onto", "above", "below", "among", "between", "around",
    "inside", "outside", "beneath", "underneath", "along", "toward", "towards", "that", "which", "who", "where",
    "while", "as", "to", "is", "are", "was", "were", "has", "have", "like", "without", "before", "after",
    "whose", "holding", "wearing", "made", "reading", "saying", "titled", "called", "named", "up", "down", "off",
    "asleep", "awake", "alone", "together", "again", "here", "there", "today", "tonight",
}
CONTAINERS = {
    "cup", "mug", "bowl", "plate", "glass", "bottle", "pile", "group", "bunch", "slice", "box", "basket", "jar",
    "herd", "flock", "school", "swarm", "pack", "row", "stack", "set", "collection", "portrait", "photo",
    "picture", "painting", "statue", "model", "sculpture", "drawing", "field", "kind", "type", "pair", "couple",
    "crowd", "team", "family", "sheet", "piece", "bouquet", "vase", "pot",
}
ADJECTIVES = {
    "red", "blue", "green", "yellow", "purple", "orange", "pink", "black", "white", "grey", "gray", "brown",
    "golden", "gold", "silver", "teal", "ginger", "striped", "spotted", "wooden", "metallic", "fresh", "old",
    "new", "young", "small", "big", "large", "tiny", "huge", "giant", "little", "tall", "short", "bright", "dark",
    "vintage", "retro", "modern", "ancient", "friendly", "cute", "happy", "sad", "misty", "snowy", "rainy",
    "sunny", "shiny", "wet", "frozen", "rusty", "fluffy", "furry", "plain", "polished", "marble", "glass",
}
PARTICIPLES = {"seen", "viewed", "shown", "lit", "built", "drawn", "painted", "made", "covered", "filled", "set", "left"}
LINKING = {"and", "&"}
NAME_JOINERS = {"of", "the", "de", "du", "la", "le", "von", "van", "da", "del"}
STOP_CAPITALS = {
    "A", "An", "The", "In", "On", "At", "Of", "And", "With", "For", "From", "To", "By", "As", "Its", "It", "This",
    "That", "These", "Those", "Show", "Draw", "Create", "Make", "Generate", "Paint", "Render", "Design", "Depict",
    "Illustrate", "Picture", "Image", "Photo", "Please", "I", "My", "Our", "Your", "Two", "Three", "Four", "Five",
    "Exactly",
}


def normalise(word: str) -> str:
    """Lower case, no possessive, singular (well enough for English head nouns)."""
    w = word.lower().strip("'’-").replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith(("ches", "shes", "sses", "xes")):
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def words(text: str) -> list[str]:
    return WORD.findall(text)


@dataclass
class NounPhrase:
    """A noun phrase: its words (normalised), as written, and its head (the last noun)."""

    words: list[str]
    raw: list[str] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.words[-1] if self.words else ""

    @property
    def text(self) -> str:
        return " ".join(self.raw or self.words)


def leading_phrases(text: str) -> list[NounPhrase]:
    """The noun phrase a text opens with, and those joined to it by "and".

    "A red fox in fresh snow" -> [red fox]; "Saturn and its rings" -> [saturn, ring];
    "A steaming cup of tea on a table" -> [tea] (a container's content is the subject);
    "Red and white lighthouse at sunset" -> [red white lighthouse] (colours joined by "and"
    belong to one phrase).
    """
    body = FRAMES.sub("", QUOTED.sub(" ", text), count=1)
    phrases: list[NounPhrase] = []
    current: list[str] = []
    raw_words: list[str] = []
    tokens = re.findall(r"[A-Za-z0-9][A-Za-z0-9'’\-]*|[,;:.!?()]", body)
    i = 0
    while i < len(tokens):
        raw = tokens[i]
        low = raw.lower()
        i += 1
        if raw in ",;:.!?()":
            break
        if low in LINKING:
            if current and all(w in ADJECTIVES for w in current):
                continue  # "red and white lighthouse": still one phrase
            if current:
                phrases.append(NounPhrase(current, raw_words))
            current, raw_words = [], []
            continue
        if low == "of" and current:
            if current[-1] in CONTAINERS or current[-1] in ("kind", "sort"):
                current, raw_words = [], []  # "a cup of tea": the tea is the subject
                continue
            break
        verb_form = low in PARTICIPLES or (len(low) > 5 and low.endswith(("ing", "ed")) and low not in ADJECTIVES)
        if low in BOUNDARIES or (current and verb_form):
            if current:
                break
            continue
        if low in DETERMINERS or low.isdigit():
            continue
        current.append(normalise(raw))
        raw_words.append(raw)
    if current:
        phrases.append(NounPhrase(current, raw_words))
    return [p for p in phrases if p.words and not all(w in ADJECTIVES for w in p.words)]


def proper_names(request: str) -> list[str]:
    """Runs of capitalised words (a landmark, a person, a city) outside quoted text.

    A single capitalised word that opens the request is only the sentence's first word.
    """
    unquoted = QUOTED.sub(" ", request)
    found: list[str] = []
    for match in re.finditer(r"(?:\b[A-Z][\w'’\-]*(?:\s+(?:of|the|de|du|la|le|von|van)\s+|\s+)?)+", unquoted):
        names = [w for w in match.group(0).split() if w not in STOP_CAPITALS]
        while names and names[-1].lower() in NAME_JOINERS:
            names.pop()
        while names and names[0].lower() in NAME_JOINERS:
            names.pop(0)
        name = " ".join(names).strip(" ,.;:")
        at_start = unquoted[: match.start()].strip() == ""
        if not name or name.isupper() or name in found:
            continue
        if at_start and len(names) == 1 and match.group(0).split()[0] == names[0]:
            continue
        found.append(name)
    return found[:3]


@dataclass
class Subject:
    """What a request is about."""

    phrases: list[NounPhrase] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    @property
    def heads(self) -> set[str]:
        return {p.head for p in self.phrases if p.head}

    @property
    def label(self) -> str:
        """Words to search for and to name the subject by ("red fox", "Eiffel Tower")."""
        if self.phrases:
            return self.phrases[0].text
        return self.names[0] if self.names else ""

    def queries(self, limit: int = 3) -> list[str]:
        out: list[str] = []
        for q in [*self.names, *(p.text for p in self.phrases)]:
            if q and q.lower() not in {o.lower() for o in out}:
                out.append(q)
        return out[:limit]

    def match(self, title: str) -> str | None:
        """The subject term a hit's title is about, or None when it is about something else."""
        lowered = " " + " ".join(normalise(w) for w in words(title)) + " "
        for name in self.names:
            key = " " + " ".join(normalise(w) for w in words(name)) + " "
            if key.strip() and key in lowered:
                return name
        title_words = {part for p in leading_phrases(title) for w in p.words for part in (w, *w.split("-"))}
        named = {normalise(w) for name in self.names for w in words(name)}
        for phrase in self.phrases:
            if phrase.head in named:
                continue  # a named subject ("the Eiffel Tower") matches by its name, never by its generic head ("tower")
            if phrase.head in title_words:
                return phrase.text
        return None


def subject_of(request: str) -> Subject:
    return Subject(leading_phrases(request), proper_names(request))


__all__ = ["NounPhrase", "Subject", "leading_phrases", "normalise", "proper_names", "subject_of"]
