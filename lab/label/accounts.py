"""Labeler and admin accounts: names, roles and salted PBKDF2 password hashes in the store, and Hugging Face
users given a role by the operator (``LAB_HF_ADMINS``, ``LAB_HF_LABELERS``).

Sign-in is asked for as soon as it is required (``sign_in_required``: an account exists, or Hugging Face sign-in
is configured), checked on every request, so an account takes effect at once; with neither, the app is a
single-user local tool and whoever opens it is the admin. Roles are read from the store on every request and
checked on the server in every labeling handler, not only by hiding tabs.

Accounts are changed here, whichever front asks (the CLI in its own process, or the Label tab): ``remove_account``,
``set_role``, ``set_password``. A password session is bound to the password it began with (``Identity.stamp``), so a
new password or a removal ends the account's sessions on the next request of the running app, with no message to it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
from dataclasses import dataclass, field

from lab.errors import LabError
from lab.home import Home, lab_home
from lab.names import check_name, quoted
from lab.store import Store

ROLES = ("admin", "labeler")
ITERATIONS = 200_000
NAME_EXTRA = "@"  # account names may be e-mail addresses
LOCAL = "local"  # the identity of everyone when sign-in is off
UNKNOWN_NAME_HASH = f"pbkdf2_sha256${ITERATIONS}$no-such-account${'0' * 64}"  # checked against, never matched
# Hugging Face users are named "hf:<username>" in the lab (votes, stats): a local account name cannot hold ':', so
# the two never collide.
HF_PREFIX = "hf:"
HF_ADMINS_ENV = "LAB_HF_ADMINS"  # comma-separated Hugging Face usernames who are admins
HF_LABELERS_ENV = "LAB_HF_LABELERS"  # comma-separated usernames who may label, or "*" for any signed-in user
ANYONE = "*"
FIRST_ADMIN = ("The first account must be an admin: as soon as an account exists the lab asks everyone to sign in, "
               "and only an admin can open the full lab (and add the other accounts).")


LAST_ADMIN = ("{name} is the only admin: the lab would have nobody to manage it while other accounts sign in. Make "
              "another account an admin first (python -m lab label user set-role NAME admin){also}.")


@dataclass(frozen=True)
class Identity:
    name: str
    role: str
    # What a password session is bound to: a digest of the account's password hash when it signed in. A new password,
    # or the account removed and made again, changes it and ends the session. Empty where there is no password.
    stamp: str = field(default="", compare=False)

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


def password_stamp(stored: str) -> str:
    """What a session remembers of the password it began with: a digest of the stored hash, which a new password (a
    new salt) always changes. Never the hash itself, so memory holds nothing a guesser could test passwords on."""
    return hashlib.sha256(stored.encode()).hexdigest()[:32]


def account_name(name: str | None) -> str:
    """``name`` as the account-name rule allows it, or a ``LabError`` saying what is wrong (no account can have any
    other name, so sign-in refuses such a name before counting or hashing it)."""
    return check_name(name, "Account name", extra=NAME_EXTRA)


def check_new_password(password: str | None) -> str:
    if len(password or "") < 8:
        raise LabError("Choose a password of at least 8 characters.")
    return password or ""


def add_account(name: str, role: str, password: str, *, home: Home | None = None) -> Identity:
    from lab.train.runner import now

    name = account_name(name)
    if name.lower() == LOCAL:  # the votes cast before sign-in existed are this name's: no account may take them over
        raise LabError(f"'{LOCAL}' is the name of everyone's votes while nobody signs in; choose another name.")
    check_role(role)
    check_new_password(password)
    store = Store(home or lab_home())
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM accounts WHERE name = ?", (name,)).fetchone():
            raise LabError(f"An account named {name} exists already.")
        if role != "admin" and not conn.execute("SELECT 1 FROM accounts WHERE role = 'admin' LIMIT 1").fetchone():
            raise LabError(FIRST_ADMIN)
        conn.execute("INSERT INTO accounts (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                     (name, role, hash_password(password), now()))
    return Identity(name, role)


def check_role(role: str) -> None:
    if role not in ROLES:
        raise LabError(f"Role must be admin or labeler, not '{role}'.")


def remove_account(name: str, *, home: Home | None = None) -> Identity:
    """Remove the account ``name``: it can no longer sign in, and its sessions end on their next request. Its votes
    stay, under its name (an account added later under that name would count as the same labeler). The only admin
    cannot be removed while other accounts exist; removing the last account of all opens the lab again."""
    with Store(home or lab_home()).write() as conn:
        who = existing(conn, name)
        if who.is_admin:
            refuse_last_admin(conn, who.name, also=", or remove the other accounts")
        conn.execute("DELETE FROM accounts WHERE name = ?", (who.name,))
    return who


def set_role(name: str, role: str, *, home: Home | None = None) -> Identity:
    """Give the account ``name`` the role ``role``, from its next request on (an admin made a labeler loses the lab
    at once). The only admin cannot be made a labeler."""
    check_role(role)
    with Store(home or lab_home()).write() as conn:
        who = existing(conn, name)
        if who.is_admin and role != "admin":
            refuse_last_admin(conn, who.name, also="")
        conn.execute("UPDATE accounts SET role = ? WHERE name = ?", (role, who.name))
    return Identity(who.name, role)


def set_password(name: str, password: str, *, home: Home | None = None) -> Identity:
    """Give the account ``name`` a new password; its sessions, in every browser, end on their next request."""
    check_new_password(password)
    stored = hash_password(password)  # before the write lock: hashing takes a tenth of a second
    with Store(home or lab_home()).write() as conn:
        who = existing(conn, name)
        conn.execute("UPDATE accounts SET password_hash = ? WHERE name = ?", (stored, who.name))
    return Identity(who.name, who.role, password_stamp(stored))


def existing(conn: sqlite3.Connection, name: str) -> Identity:
    """The account ``name``, read inside the write that changes it, or a ``LabError`` saying there is none."""
    name = (name or "").strip()
    row = conn.execute("SELECT role FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise LabError(f"No account is named {quoted(name)} (python -m lab label user list shows the accounts).")
    return Identity(name, row[0])


def refuse_last_admin(conn: sqlite3.Connection, name: str, *, also: str) -> None:
    """Refuse to take away ``name``'s admin role when it is the only admin and other accounts exist. Inside the
    write, so two admins demoting each other at the same moment cannot both succeed."""
    admins = conn.execute("SELECT COUNT(*) FROM accounts WHERE role = 'admin'").fetchone()[0]
    others = conn.execute("SELECT COUNT(*) FROM accounts WHERE name != ?", (name,)).fetchone()[0]
    if admins == 1 and others:
        raise LabError(LAST_ADMIN.format(name=name, also=also))


def verify(name: str, password: str, *, home: Home | None = None) -> Identity | None:
    """The account, if ``password`` is its password, with the stamp its session is bound to. Slow on purpose (PBKDF2):
    call it off the event loop."""
    rows = Store(home or lab_home()).query("SELECT role, password_hash FROM accounts WHERE name = ?", (name,))
    # An unknown name costs the same hash as a known one, so timing does not tell which names exist.
    stored = rows[0]["password_hash"] if rows else UNKNOWN_NAME_HASH
    if not (check_password(password, stored) and rows):
        return None
    return Identity(name, rows[0]["role"], password_stamp(stored))


def list_accounts(*, home: Home | None = None) -> list[dict[str, str]]:
    return Store(home or lab_home()).query("SELECT name, role, created_at FROM accounts ORDER BY role, name")


def hf_users(variable: str) -> set[str]:
    """The Hugging Face usernames listed in the environment variable ``variable`` (read on each call, so a changed
    Space secret applies after the Space restarts it, and a test may set it)."""
    return {name.strip().lower() for name in os.environ.get(variable, "").split(",") if name.strip()}


def hf_sign_in() -> bool:
    """Whether Hugging Face sign-in is configured (either list set)."""
    return bool(hf_users(HF_ADMINS_ENV) or hf_users(HF_LABELERS_ENV))


HF_MOCK_ENV = "LAB_HF_MOCK"  # "1": try Hugging Face sign-in off a Space, with Gradio's stand-in, on this machine only


def hf_sign_in_refusal() -> str | None:
    """Why Hugging Face sign-in, configured, would not protect the lab here (None where it would, or is not asked
    for). On a Space Gradio signs people in through huggingface.co; anywhere else it puts a stand-in in its place,
    which signs every visitor in as this machine's Hugging Face user and keeps sessions under a key derived from a
    public constant, so anyone could write a session naming a listed admin."""
    if not hf_sign_in() or os.environ.get("SPACE_ID") or os.environ.get(HF_MOCK_ENV) == "1":
        return None
    return (f"{HF_ADMINS_ENV} / {HF_LABELERS_ENV} are set, but Sign in with Hugging Face works on a Hugging Face Space "
            "only: elsewhere Gradio's stand-in signs every visitor in as this machine's Hugging Face user, with "
            f"sessions anyone could forge. Unset them and use local accounts (python -m lab label user add NAME --role "
            f"admin), or set {HF_MOCK_ENV}=1 to try the stand-in on 127.0.0.1 only.")


def hf_role(username: str) -> str | None:
    """The role the operator gave the Hugging Face user ``username``, if any: admins first, then labelers."""
    username = username.lower()
    if username in hf_users(HF_ADMINS_ENV):
        return "admin"
    labelers = hf_users(HF_LABELERS_ENV)
    return "labeler" if username in labelers or ANYONE in labelers else None


def sign_in_required(home: Home | None = None) -> bool:
    """Whether callers must sign in now: an account exists, or Hugging Face sign-in is configured. Asked on every
    request, so the first account switches sign-in on at once."""
    return hf_sign_in() or bool(Store(home or lab_home()).query("SELECT 1 FROM accounts LIMIT 1"))


def identity_of(name: str | None, *, stamp: str | None = None, home: Home | None = None) -> Identity | None:
    """The signed-in ``name`` (an account, or ``hf:<username>``) with its role now, or None if it has none. With
    ``stamp`` (a password session's), None also when the account's password is no longer the one it began with."""
    if not name:
        return None
    if name.startswith(HF_PREFIX):
        role = hf_role(name[len(HF_PREFIX):])
        return Identity(name, role) if role else None
    rows = Store(home or lab_home()).query("SELECT role, password_hash FROM accounts WHERE name = ?", (name,))
    if not rows or (stamp is not None and password_stamp(rows[0]["password_hash"]) != stamp):
        return None
    return Identity(name, rows[0]["role"], password_stamp(rows[0]["password_hash"]))


def identify(username: str | None, *, sign_in: bool, home: Home | None = None) -> Identity:
    """Who is calling: the signed-in account, or the local admin when sign-in is off (``sign_in`` False: the app
    was built without sign-in; or no account exists and Hugging Face sign-in is not configured)."""
    if not sign_in or not sign_in_required(home):
        return Identity(LOCAL, "admin")
    identity = identity_of(username, home=home)
    if identity is None:
        raise LabError("Sign in first: this lab requires an account.")
    return identity


def require_admin(who: Identity) -> None:
    if not who.is_admin:
        raise LabError(f"{who.name} is a labeler: only an admin may do this.")
