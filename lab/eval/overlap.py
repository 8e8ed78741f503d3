"""Reference overlap: the model answers the conversation before each final reply of a dataset version, and its
answer is scored against that reply with ROUGE-L (rouge-score, F1 of the longest common subsequence, stemmed)
and BLEU (sacrebleu: corpus BLEU over all answers, and sentence BLEU per example, both 0-100).

ROUGE-L over the corpus is the mean of the per-example F1, as rouge-score's own aggregation does. rouge-score's
default tokenizer keeps only ASCII letters and digits, so text in other scripts scores 0; BLEU uses sacrebleu's
13a tokenizer, which does not have that blind spot.
"""

from __future__ import annotations

from typing import Any

from lab.eval.answers import Progress, generate_answers, reference_rows
from lab.eval.config import OverlapConfig
from lab.home import Home


def score(generations: list[str], references: list[str]) -> dict[str, Any]:
    """Corpus numbers and one ``{"rouge_l", "bleu"}`` per (generation, reference) pair."""
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(ref, gen)["rougeL"].fmeasure for gen, ref in zip(generations, references)]
    corpus = BLEU()
    bleu = corpus.corpus_score(generations, [references])
    sentence = BLEU(effective_order=True)  # short answers have no 4-grams; effective order keeps them scorable
    per = [sentence.sentence_score(gen, [ref]).score for gen, ref in zip(generations, references)]
    return {"rouge_l": round(sum(rouge) / len(rouge), 4) if rouge else 0.0, "bleu": round(bleu.score, 2),
            "bleu_signature": str(corpus.get_signature()),
            "per_example": [{"rouge_l": round(float(r), 4), "bleu": round(b, 2)} for r, b in zip(rouge, per)]}


def evaluate(model_ref: str, dataset_ref: str, cfg: OverlapConfig, *, examples: int = 3, home: Home,
             progress: Progress | None = None) -> dict[str, Any]:
    """ROUGE-L and BLEU of ``model_ref``'s answers against the reference replies of ``dataset_ref``, with
    per-example scores and the best and worst examples."""
    from lab.train.datasets import resolve_version

    rows = reference_rows(dataset_ref, cfg.split, cfg.max_rows, home)
    answers = generate_answers(model_ref, [r["prompt"] for r in rows], max_new_tokens=cfg.max_new_tokens,
                               batch_size=cfg.batch_size, temperature=cfg.temperature, seed=cfg.seed, home=home,
                               progress=progress)
    scores = score(answers, [r["reference"] for r in rows])
    per_example = [{"line": row["line"], **s, "generation": answer}
                   for row, s, answer in zip(rows, scores["per_example"], answers)]
    ranked = sorted(range(len(rows)), key=lambda i: (per_example[i]["rouge_l"], per_example[i]["bleu"]))

    def shown(i: int) -> dict[str, Any]:
        return {"prompt": rows[i]["prompt"], "reference": rows[i]["reference"], **per_example[i]}

    return {"model": model_ref, "dataset": resolve_version(dataset_ref, home).ref, "split": cfg.split,
            "rows": len(rows), "rouge_l": scores["rouge_l"], "bleu": scores["bleu"],
            "bleu_signature": scores["bleu_signature"], "per_example": per_example,
            "best": [shown(i) for i in ranked[::-1][:examples]], "worst": [shown(i) for i in ranked[:examples]]}
