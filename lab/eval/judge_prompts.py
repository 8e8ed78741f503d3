"""The judge's prompt templates (after MT-Bench's pairwise and single-answer prompts), their placeholders, and
reading a verdict out of an endpoint's reply.

Placeholders are ``{name}``; any other brace is plain text, so a template may show JSON or code. A template
must hold every required placeholder of its mode and no unknown one.
"""

from __future__ import annotations

import re

from lab.errors import LabError

PAIRWISE = """Please act as an impartial judge and evaluate the quality of the responses provided by two AI \
assistants to the user question displayed below. Choose the assistant that follows the user's instructions and \
answers the user's question better: consider helpfulness, relevance, accuracy, depth and level of detail. Avoid \
any position bias: the order in which the responses are presented must not influence your decision. Do not let \
the length of the responses influence you, and do not favour certain names of the assistants. Be as objective as \
possible. After a short explanation, give your final verdict strictly in this format: "[[A]]" if assistant A is \
better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.

[User Question]
{question}

[The Start of Assistant A's Answer]
{answer_a}
[The End of Assistant A's Answer]

[The Start of Assistant B's Answer]
{answer_b}
[The End of Assistant B's Answer]"""

SINGLE = """Please act as an impartial judge and evaluate the quality of the response provided by an AI \
assistant to the user question displayed below. Consider helpfulness, relevance, accuracy, depth and level of \
detail. Be as objective as possible. After a short explanation, rate the response on a scale of 1 to 10 strictly \
in this format: "[[rating]]", for example: "Rating: [[5]]".

[Question]
{question}

[The Start of Assistant's Answer]
{answer}
[The End of Assistant's Answer]"""

DEFAULTS = {"pairwise": PAIRWISE, "single": SINGLE}
REQUIRED = {"pairwise": ("question", "answer_a", "answer_b"), "single": ("question", "answer")}
OPTIONAL = ("reference",)  # the dataset's own reply, for templates that grade against it
PLACEHOLDER = re.compile(r"\{(\w+)\}")
# A local judge's reply is scored from this point on: the probability of each verdict written next.
LOCAL_PREFIX = {"pairwise": "My final verdict: [[", "single": "Rating: [["}
VERDICTS = {"pairwise": ("A", "B", "C"), "single": tuple(str(i) for i in range(1, 11))}


def check(template: str, mode: str) -> None:
    """Raise a ``LabError`` naming the first missing or unknown placeholder."""
    found = set(PLACEHOLDER.findall(template))
    for name in REQUIRED[mode]:
        if name not in found:
            raise LabError(f"The {mode} judge prompt has no {{{name}}} placeholder; it needs "
                           f"{', '.join('{' + n + '}' for n in REQUIRED[mode])} (optional: {{reference}}).")
    unknown = sorted(found - set(REQUIRED[mode]) - set(OPTIONAL))
    if unknown:
        raise LabError(f"The {mode} judge prompt has an unknown placeholder {{{unknown[0]}}}; known: "
                       f"{', '.join('{' + n + '}' for n in (*REQUIRED[mode], *OPTIONAL))}.")


def fill(template: str, **values: str) -> str:
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def question_text(messages: list[dict[str, str]]) -> str:
    """The conversation before the answer, as the judge reads it: a single user turn as it is, longer ones
    with each turn's role."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def parse_verdict(reply: str, mode: str) -> str | float | None:
    """The last ``[[A]]``/``[[B]]``/``[[C]]`` (pairwise) or ``[[7]]`` (single; ``[7]`` as MT-Bench also
    accepts) in an endpoint's reply; None when there is none."""
    if mode == "pairwise":
        found = re.findall(r"\[\[\s*([ABC])\s*\]\]", reply)
        return found[-1] if found else None
    found = re.findall(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]", reply) or re.findall(r"\[\s*(\d+(?:\.\d+)?)\s*\]", reply)
    if not found:
        return None
    grade = float(found[-1])
    if not 1 <= grade <= 10:
        return None
    return int(grade) if grade.is_integer() else grade
