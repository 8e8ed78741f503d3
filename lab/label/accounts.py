"""Labeler and admin accounts: names, roles and salted PBKDF2 password hashes in the store.

Sign-in is Gradio's own login page, switched on when the app starts with at least one account; with
none, the app is a single-user local tool and whoever opens it is the admin. Roles are checked on the
server in every labeling handler, not only by hiding tabs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from lab.errors import LabError
from lab.home import Home, lab_home
from lab.names import check_name
from lab.store import Store

ROLES = ("admin", "labeler")
ITERATIONS = 200_000
NAME_EXTRA = "@"  # account names may be e-mail addresses
LOCAL = "local"  # the identity of everyone when sign-in is off
UNKNOWN_NAME_HASH = f"pbkdf2_sha256${ITERATIONS}$no-such-account${'0' * 64}"  # checked against, never matched


@dataclass(frozen=True)
class Identity:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_password(password: str, *, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), ITERATIONS).hex()
    return f"pbkdf2_sha256${ITERATIONS}${salt}${digest}"


def check_password(password: str, stored: str) -> bool:
    _, iterations, salt, digest = stored.split("$")
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations)).hex()
    return hmac.compare_digest(candidate, digest)


def add_account(name: str, role: str, password: str, *, home: Home | None = None) -> Identity:
    from lab.train.runner import now

    name = check_name(name, "Account name", extra=NAME_EXTRA)
    if role not in ROLES:
        raise LabError(f"Role must be admin or labeler, not '{role}'.")
    if len(password or "") < 8:
        raise LabError("Choose a password of at least 8 characters.")
    store = Store(home or lab_home())
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
            raise LabError(f"An account named {name} exists already.")
        conn.execute("INSERT INTO accounts (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                     (name, role, hash_password(password), now()))
    return Identity(name, role)


def verify(name: str, password: str, *, home: Home | None = None) -> Identity | None:
    """The account, if ``password`` is its password. Slow on purpose (PBKDF2): call it off the event loop."""
    rows = Store(home or lab_home()).query("SELECT role, password_hash FROM accounts WHERE name = ?", (name,))
    # An unknown name costs the same hash as a known one, so timing does not tell which names exist.
    stored = rows[0]["password_hash"] if rows else UNKNOWN_NAME_HASH
    return Identity(name, rows[0]["role"]) if check_password(password, stored) and rows else None


def role_of(name: str, *, home: Home | None = None) -> str | None:
    rows = Store(home or lab_home()).query("SELECT role FROM accounts WHERE name = ?", (name,))
    return rows[0]["role"] if rows else None


def list_accounts(*, home: Home | None = None) -> list[dict[str, str]]:
    return Store(home or lab_home()).query("SELECT name, role, created_at FROM accounts ORDER BY role, name")


def sign_in_required(home: Home | None = None) -> bool:
    return bool(Store(home or lab_home()).query("SELECT 1 FROM accounts LIMIT 1"))


def identify(username: str | None, *, sign_in: bool, home: Home | None = None) -> Identity:
    """Who is calling: the signed-in account, or the local admin when the app runs without sign-in."""
    if not sign_in:
        return Identity(LOCAL, "admin")
    role = role_of(username, home=home) if username else None
    if role is None:
        raise LabError("Sign in first: this lab requires an account.")
    return Identity(username, role)


def require_admin(who: Identity) -> None:
    if not who.is_admin:
        raise LabError(f"{who.name} is a labeler: only an admin may do this.")
