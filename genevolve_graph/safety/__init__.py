"""Checks that keep hostile data in its place, as pure functions: safe image decoding, credential
redaction, neutralising protocol tags in text that enters a prompt, and refusing an output
that would overwrite an input. Imports only ``util``.
"""
