"""Plumbing with no project imports: JSONL input files, cache paths, atomic file writes, the
command line's event loop. The bottom layer: it imports nothing else of the package.
"""
