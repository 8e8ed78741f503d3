"""The fine-tuning lab: data → SFT → human preferences → DPO → evaluation.

Everything outside ``lab.ui`` imports and runs without Gradio; heavy libraries
(torch, transformers, trl, datasets) are imported lazily inside functions so
that ``python -m lab --help`` and the web app start fast.
"""

__version__ = "0.1.0"
