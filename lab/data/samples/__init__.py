"""The lab's own demo and test datasets, written by ``generate.py`` (no downloaded data)."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
SAMPLE_SFT = SAMPLES_DIR / "sft.jsonl"  # OpenAI ``messages`` conversations
SAMPLE_PREFERENCE = SAMPLES_DIR / "preference.jsonl"  # TRL explicit-prompt conversational pairs
SAMPLE_UNPAIRED = SAMPLES_DIR / "unpaired.jsonl"  # TRL unpaired conversational rows: prompt, completion, label
SAMPLE_PROMPTS = SAMPLES_DIR / "prompts.jsonl"  # "What is 3 + 4?" with its ground_truth "7", for GRPO/RLOO
# The samples by the kind of data they hold: each is named ``sample:<kind>`` (lab.data.sources, lab.train.datasets).
SAMPLE_FILES = {"sft": SAMPLE_SFT, "preference": SAMPLE_PREFERENCE, "unpaired": SAMPLE_UNPAIRED,
                "prompts": SAMPLE_PROMPTS}
