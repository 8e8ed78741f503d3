"""Throttling password guesses: at most so many failed sign-ins per account and per client address in any window.

Counts are kept in memory. The server is one process, and a restart forgetting them costs little: each attempt
that is checked still costs a guesser a PBKDF2 hash, and only the operator can restart the server.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from lab.errors import LabError

# A person who mistypes gets a few tries; a guesser gets 5 per account per 5 minutes (1,440 a day) instead of the
# ~10 a second one core can hash. The address limit is higher because labelers may share one office address.
ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20
WINDOW_S = 300.0
# Characters of an address kept as its key: an IPv6 address with a zone fits; a forged X-Forwarded-For of kilobytes
# would otherwise be stored whole for every attempt. (Account names are refused beyond the name rule's length before
# they get here: lab.ui.server.authenticator.)
ADDRESS_CHARS = 64


class SignInThrottle:
    """Thread-safe counts of recent failed sign-ins, keyed by account name and by client address.

    An attempt counts as failed from the moment it starts until ``succeeded`` says otherwise, so a burst of
    parallel guesses cannot all be let in before the first of them is found wrong.
    """

    def __init__(self, *, account_limit: int = ACCOUNT_LIMIT, address_limit: int = ADDRESS_LIMIT,
                 window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.limits = {"account": account_limit, "address": address_limit}
        self.window_s = window_s
        self.clock = clock
        self.failures: dict[tuple[str, str], deque[float]] = {}
        # Every counted failure in time order, so that forgetting old ones touches only those, not every key.
        self.timeline: deque[tuple[float, tuple[str, str]]] = deque()
        self.lock = threading.Lock()

    def rule(self) -> str:
        """The limit in words, for the sign-in page (which shows no reason when it refuses)."""
        return (f"After {self.limits['account']} wrong passwords an account waits up to {self.window_s:g} s "
                f"before it may try again. At most {self.limits['address']} sign-ins are checked at once from one "
                "address: if many people sign in together and yours fails, try again in a few seconds.")

    def begin(self, name: str, address: str) -> None:
        """Count this sign-in as failed, or refuse it if its account or address has no failures left."""
        keys = (("account", name), ("address", address[:ADDRESS_CHARS]))
        with self.lock:
            now = self.clock()
            self.forget_before(now - self.window_s)
            for kind, value in keys:
                wait = self.wait_s(kind, value, now)
                if wait:
                    where = f"for {value}" if kind == "account" else f"from {value}"
                    raise LabError(f"Too many failed sign-ins {where}; try again in {wait} s.")
            for key in keys:
                self.failures.setdefault(key, deque()).append(now)
                self.timeline.append((now, key))

    def succeeded(self, name: str, address: str) -> None:
        """The password was right: the account starts afresh; the address gets back the one attempt it was charged
        (not its other failures, or one known password would let it keep guessing the other accounts)."""
        with self.lock:
            self.failures.pop(("account", name), None)
            charged = self.failures.get(("address", address[:ADDRESS_CHARS]))
            if charged:
                charged.pop()

    def wait_s(self, kind: str, value: str, now: float) -> int:
        """Whole seconds until the oldest of the last ``limit`` failures leaves the window (0: not throttled)."""
        times = self.failures.get((kind, value), ())
        limit = self.limits[kind]
        if len(times) < limit:
            return 0
        return max(1, math.ceil(times[-limit] + self.window_s - now))

    def forget_before(self, cutoff: float) -> None:
        """Drop failures older than the window, and keys left with none, so memory stays bounded by recent attempts.
        Only the keys of the failures leaving the window are looked at: each failure once, whatever the number of
        keys. (A success may have dropped a key's failures already; what is left of it is trimmed by time.)"""
        while self.timeline and self.timeline[0][0] <= cutoff:
            _, key = self.timeline.popleft()
            times = self.failures.get(key)
            while times and times[0] <= cutoff:
                times.popleft()
            if times is not None and not times:
                del self.failures[key]
