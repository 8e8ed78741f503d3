"""Evaluation as stored background jobs (``jobs``, ``worker``, the kinds in ``kinds``): held-out perplexity,
reference overlap (ROUGE-L/BLEU), LLM-as-judge (pairwise in both orders, or 1-10 grades), lm-evaluation-harness
tasks; ``summary`` sets them beside the human results of labeling campaigns."""
