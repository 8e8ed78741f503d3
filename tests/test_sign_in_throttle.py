"""The sign-in throttle's memory: what it keeps is bounded by the attempts in its window, and forgetting them does
not walk everything it holds."""

from __future__ import annotations

from lab.label.throttle import SignInThrottle


class NoWalking(dict):
    def __iter__(self):
        raise AssertionError("the throttle walked every key it holds")


def test_the_throttle_forgets_only_what_leaves_its_window():
    """Each attempt looked at every key held (a scan that grew with the guesses); now only at those whose failures
    leave the window, and addresses are kept to a bounded length."""
    now = [0.0]
    throttle = SignInThrottle(window_s=60, clock=lambda: now[0])
    throttle.failures = NoWalking()
    for i in range(1000):
        throttle.begin(f"guess{i}", f"10.0.{i // 250}.{i % 250}")
    throttle.begin("ann", "10.9.9.9" + "9" * 10_000)
    assert max(len(address) for kind, address in dict.keys(throttle.failures) if kind == "address") <= 64
    throttle.succeeded("ann", "10.9.9.9" + "9" * 10_000)
    now[0] = 30
    throttle.begin("ann", "10.9.9.9")
    now[0] = 61  # the first 1,001 attempts have left the window; ann's second has not
    throttle.begin("bob", "10.9.9.8")
    assert sorted(dict.keys(throttle.failures)) == [("account", "ann"), ("account", "bob"), ("address", "10.9.9.8"),
                                                    ("address", "10.9.9.9")]
    assert len(throttle.timeline) == 4
