"""``provider:model`` strings, as LangChain's ``init_chat_model`` reads them ("openai:gpt-4o-mini").

Only a known provider prefix makes a string a model string: a served model's own name may
hold a colon ("llama3:8b" on an Ollama-style gateway) and stays a plain model name.
"""

from __future__ import annotations

PROVIDERS = frozenset({
    "openai", "anthropic", "azure_openai", "azure_ai", "google_vertexai", "google_genai", "google_anthropic_vertex",
    "bedrock", "bedrock_converse", "cohere", "fireworks", "together", "mistralai", "huggingface", "groq", "ollama",
    "deepseek", "ibm", "nvidia", "xai", "perplexity",
})
"""The provider names of ``init_chat_model`` (langchain 1.x)."""

ALLOWED_PROVIDERS_ENV = "GENEVOLVE_ALLOWED_MODEL_PROVIDERS"
"""Providers (comma- or space-separated) whose model strings a served caller may choose."""


def split_model_string(model: str) -> tuple[str, str] | None:
    """``(provider, model name)`` for ``provider:name`` with a known provider, else None."""
    provider, sep, name = str(model or "").partition(":")
    if sep and name and provider.strip().lower() in PROVIDERS:
        return provider.strip().lower(), name.strip()
    return None


__all__ = ["ALLOWED_PROVIDERS_ENV", "PROVIDERS", "split_model_string"]
