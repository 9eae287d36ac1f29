"""Outbound HTTP the project owns: the one outbound policy (``limits``: total deadline and decoded
reply cap), the JSON API client of the search backends, the guarded
downloader's SSRF checks, and the check that a chat endpoint's reply is a chat completion.
Tools, policies and judges all call out through here.
"""
