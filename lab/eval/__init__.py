"""Evaluation: held-out loss and perplexity now; reference overlap, LLM-as-judge and lm-eval tasks follow (issue 6)."""
