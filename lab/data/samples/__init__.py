"""The lab's own demo and test datasets, written by ``generate.py`` (no downloaded data)."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
SAMPLE_SFT = SAMPLES_DIR / "sft.jsonl"  # OpenAI ``messages`` conversations
SAMPLE_PREFERENCE = SAMPLES_DIR / "preference.jsonl"  # TRL explicit-prompt conversational pairs
