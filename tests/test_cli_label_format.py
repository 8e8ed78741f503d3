"""What ``python -m lab label`` prints for people: statistics to three digits, the reliability table's flag apart
from its reason, help without empty or repeated defaults, and ``create --wait`` printing a line per change."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from lab.cli import main
from lab.label import campaigns
from tests.test_label import file_campaign, vote_all


@pytest.fixture
def voted(home, tmp_path):
    """Nine pairs, two labelers: ann always takes the left answer, bob the right one on every third pair."""
    campaign = file_campaign(home, tmp_path, n=9, votes=2)
    vote_all(campaign.id, "ann", home)
    turn = iter(range(100))
    vote_all(campaign.id, "bob", home, rule=lambda left, right: "b" if next(turn) % 3 == 0 else "a")
    return campaign


def run(capsys, *argv: str) -> tuple[str, str]:
    assert main(list(argv)) == 0
    out = capsys.readouterr()
    return out.out, out.err


def test_status_prints_statistics_to_three_digits(voted, capsys):
    out, _ = run(capsys, "label", "status", voted.id)
    assert "left 0.667" in out, out  # bob's left-answer rate, 6 of 9
    assert not re.search(r"\d\.\d{4,}", out), out


def test_reliability_has_a_flag_column_and_a_reason_column(voted, capsys):
    out, _ = run(capsys, "label", "reliability", voted.id)
    lines = out.splitlines()
    assert lines[0].split()[-2:] == ["flag", "why"]
    flag_at = lines[0].index("flag")
    rows = {line.split()[0]: line for line in lines[1:3]}
    assert set(rows) == {"ann", "bob"}
    for row in rows.values():
        assert row[flag_at:].split()[0] in ("yes", "no")
        assert "agrees with the others" in row[flag_at:]  # the reason follows the flag


def test_create_help_names_each_default_once_and_no_empty_ones(capsys):
    with pytest.raises(SystemExit):
        main(["label", "create", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: )" not in text
    assert "(default: campaign-<time>)." in text and "campaign-<time>). (default" not in text
    assert "(default: pairwise)" in text  # a default the text does not state is still given


def test_create_wait_prints_a_line_per_change(home, monkeypatch, capsys):
    def state(status: str, generated: int) -> SimpleNamespace:
        return SimpleNamespace(id="c1", status=status, name="round1", generated=generated, to_generate=4, error="",
                               summary=lambda: {"id": "c1", "status": status})

    polls = iter([state("generating", 0), state("generating", 0), state("generating", 2), state("generating", 2),
                  state("generating", 2), state("open", 4)])
    monkeypatch.setattr(campaigns, "create_campaign", lambda config: state("generating", 0))
    monkeypatch.setattr(campaigns, "get_campaign", lambda campaign_id: next(polls))
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    out, err = run(capsys, "label", "create", "--sources", "tiny,tiny#2", "--wait")
    assert out == "c1\n"
    assert [line.split("responses ")[-1] for line in err.splitlines()[1:]] == ["0/4", "2/4", "4/4"], err
