"""Tabs whose features are still to come: each says plainly what it will do, and when."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass(frozen=True)
class Planned:
    title: str
    issue: int
    what: str


PLANNED: tuple[Planned, ...] = (
    Planned("Compare", 6, "put checkpoints side by side: answers to the same prompts, "
                          "training curves overlaid, and the differences between their configs."),
)


def not_built_text(plan: Planned) -> str:
    return f"**Not built yet — coming in issue #{plan.issue}:** {plan.what[0].upper()}{plan.what[1:]}"


def build_placeholder(plan: Planned) -> gr.Markdown:
    """The body of a planned tab (call inside its ``gr.Tab``)."""
    return gr.Markdown(not_built_text(plan), elem_classes=["lab-placeholder"])


def planned(title: str) -> Planned:
    return next(p for p in PLANNED if p.title == title)
