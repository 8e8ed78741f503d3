"""Simulated labelers that follow a known rule, for tests and benchmarks of the labeling flywheel.

A ``Labeler`` scores each answer's text with a function the caller knows (so the true ranking of the sources is
known), votes for the higher score, makes a random a/b click with probability ``noise``, and can be set to vote
the opposite way (an unreliable labeler). ``label`` has them take turns through the real ``serving.next_pair`` and
``serving.vote``, so leases, the serving rule, extra votes and the store are exercised exactly as with people.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Callable

from lab.home import Home
from lab.label import serving
from lab.store import Store


@dataclass
class Labeler:
    name: str
    score: Callable[[str], float]  # higher = better answer; the rule this labeler follows
    noise: float = 0.1  # probability of a random a/b click instead of the rule
    seed: int = 0
    flip: bool = False  # vote against the rule (an unreliable labeler)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Seeded by name too, so several labelers with the default seed do not make the same random clicks.
        self.rng = random.Random(f"{self.seed}:{self.name}")

    def choose(self, pair: serving.Served, graded: bool) -> tuple[str, int | None]:
        """The choice (and a graded campaign's strength) for a served pair; thumbs items get up or down."""
        if pair.thumbs:  # one answer, good when its score is positive
            good = self.score(pair.left) > 0
            if self.rng.random() < self.noise:
                good = self.rng.random() < 0.5
            return ("down" if good == self.flip else "up"), None
        if self.rng.random() < self.noise:
            # A random click on one of the two answers, drawn by answer rather than by side: serving shows each pair
            # on sides of its own random choosing, and a seeded simulation must give the same votes every time.
            clicked = sorted((pair.left, pair.right))[self.rng.random() < 0.5]
            return ("a" if clicked == pair.left else "b"), (1 if graded else None)
        left, right = self.score(pair.left), self.score(pair.right)
        if left == right:
            return "tie", None
        choice = "a" if (left > right) != self.flip else "b"
        return choice, ((2 if abs(left - right) >= 1 else 1) if graded else None)


def label(campaign_id: str, labelers: list[Labeler], *, home: Home, max_votes: int | None = None) -> int:
    """Labelers take turns (one vote each per turn) until a whole turn serves nobody a pair, or ``max_votes`` votes
    are cast; returns the number of votes cast. A labeler with nothing to do now stays in the turns: another's vote
    can make a pair want an extra vote (disagreement) that they may give."""
    config = json.loads(Store(home).query("SELECT config FROM campaigns WHERE id = ?", (campaign_id,))[0]["config"])
    graded = bool(config.get("graded"))
    cast = 0
    while max_votes is None or cast < max_votes:
        served_any = False
        for labeler in labelers:
            if max_votes is not None and cast >= max_votes:
                break
            pair = serving.next_pair(campaign_id, labeler.name, home=home)
            if pair is None:
                continue
            served_any = True
            choice, strength = labeler.choose(pair, graded)
            cast += serving.vote(pair.token, labeler.name, choice, strength=strength, home=home)
        if not served_any:
            break
    return cast
