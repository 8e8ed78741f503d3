"""Datasets: read files in the formats people have, convert them to the canonical form,
validate row by row, clean (dedup, filters, split), describe, and save immutable versions.

Canonical rows, one shape per data kind (the registry ``lab.data.kinds``; see ``lab.data.canonical``):
- sft:        ``{"messages": [{"role": ..., "content": ...}, ...], "tools": "<JSON list or ''>"}``
- preference: ``{"prompt": [messages], "chosen": [messages], "rejected": [messages]}``
- unpaired:   ``{"prompt": [messages], "completion": [messages], "label": True | False}``
- prompts:    ``{"prompt": [messages], "answer": "<text or ''>", "meta": "<JSON object as text, '{}' if none>"}``
"""
