"""The secret scrubber: what it removes, and the ordinary text it must leave alone."""

from __future__ import annotations

import pytest

from genevolve_graph.training.scrub import REDACTED, Scrubber


@pytest.fixture
def scrub() -> Scrubber:
    return Scrubber(home="/home/bob", env_secrets=["s3cr3t-env-value"])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("key sk-abcdefghijklmnopqrstuvwxyz0123", f"key {REDACTED}"),
        ("AIzaSyD-0123456789abcdefghijklmnopqrstu", REDACTED),
        ("token hf_abcdefghijklmnopqrstuvwxyz012345", f"token {REDACTED}"),
        ("ghp_" + "a" * 36, REDACTED),
        ("AKIAABCDEFGHIJKLMNOP", REDACTED),
        ("tvly-abcdefghijklmnop1234", REDACTED),
        ("Authorization: Bearer abc.def.ghi-jkl", f"Authorization: Bearer {REDACTED}"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', f'{{"authorization": "Basic {REDACTED}"}}'),
        ("x-api-key: 0123456789abcdef", f"x-api-key: {REDACTED}"),
        ("curl -H 'Bearer abcdefghijklmnopqrstu'", f"curl -H 'Bearer {REDACTED}'"),
        ("OPENAI_API_KEY=abcdef123456", f"OPENAI_API_KEY={REDACTED}"),
        ('"api_key": "hunter22hunter"', f'"api_key": "{REDACTED}"'),
        ("password: correcthorse", f"password: {REDACTED}"),
        ("https://maps.example.com/x?key=ABC123&z=3", f"https://maps.example.com/x?key={REDACTED}&z=3"),
        ("postgresql://user:pa55word@db:5432/x", f"postgresql://user:{REDACTED}@db:5432/x"),
        ("the value s3cr3t-env-value leaked", f"the value {REDACTED} leaked"),
        ("local_path: /home/bob/pics/fox.png", "local_path: ~/pics/fox.png"),
        ("url: file:///home/bob/pics/fox.png", "url: ~/pics/fox.png"),
        ("see /home/carol/x.png and /Users/dan/y.png and /root/z.png", "see ~/x.png and ~/y.png and ~/z.png"),
    ],
)
def test_secrets_are_removed(scrub, text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The secret garden has 4096 tokens of prose; max_tokens=4096, top_k=5.",
        "A sign that reads \"PASSWORD\" in neon; the key is a brass key.",
        "https://example.com/home/alice/page and /work/home/alice/x and https://x.org/root/a",
        "local_path: /tmp/pytest-of-bob/refs/IMG_001.png",
        "<tool_call>{\"name\": \"search\", \"arguments\": {\"queries\": [\"sk-8 skateboard\"]}}</tool_call>",
        "Bearer of good news",
    ],
)
def test_ordinary_text_is_untouched(scrub, text):
    assert scrub(text) == text


def test_nested_values(scrub):
    value = {"messages": [{"role": "user", "content": "key sk-abcdefghijklmnopqrstuvwxyz0123"}], "n": 3, "none": None}
    assert scrub(value) == {"messages": [{"role": "user", "content": f"key {REDACTED}"}], "n": 3, "none": None}
