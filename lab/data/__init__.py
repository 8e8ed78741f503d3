"""Datasets: read files in the formats people have, convert them to the canonical form,
validate row by row, clean (dedup, filters, split), describe, and save immutable versions.

Canonical rows (see ``lab.data.canonical``):
- SFT:        ``{"messages": [{"role": ..., "content": ...}, ...]}``
- preference: ``{"prompt": [messages], "chosen": [messages], "rejected": [messages]}``
"""
