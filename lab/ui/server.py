"""What the server adds around its two Gradio apps (``lab.ui.app.main``): sign-in that is throttled, hashes
passwords off the event loop and is decided on every request, and a labeling mount that serves no files.

Gradio's login route calls ``auth(name, password)`` with nothing else, and awaits it when it is a coroutine
function; a plain function would run PBKDF2 (~0.1 s) on the event loop and stall every other request. So
``authenticator`` is async and hashes in a small thread pool, and ``ClientAddress`` gives it the caller's address,
which Gradio does not.

Gradio decides once, when an app is mounted, whether it asks to sign in (``auth``), and then asks one dependency,
``get_current_user``, who each request comes from. The lab always mounts with ``auth`` and overrides that
dependency (``sign_in_per_request``): with no account (and no Hugging Face sign-in) every request is the local
admin, so the lab stays open; once an account exists, a request is whoever its session names, with the role the
store gives now. Both apps share one set of sessions, so a labeler who signs in at ``/`` is sent on to ``/label/``
already signed in, and a Hugging Face session (Gradio's OAuth, ``request.session``) counts at both.

Gradio keeps password sessions in ``app.tokens`` (token → name) forever. The lab puts ``Sessions`` in its place:
each session lasts ``LAB_SESSION_HOURS`` and is bound to the password it began with, so a new password or a removed
account ends it on its next request, whichever process changed the store; a sign-out (``SignOut``) ends it on the
server whoever signs out, at either app.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from lab.errors import LabError
from lab.home import Home
from lab.label.accounts import HF_PREFIX, LOCAL, Identity, account_name, identity_of, sign_in_required, verify
from lab.label.throttle import SignInThrottle

HASH_WORKERS = 2  # passwords hashed at once: a burst of sign-ins queues rather than take every core from the pages
HASHING = ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="lab-sign-in")
CLIENT_ADDRESS: ContextVar[str] = ContextVar("client_address", default="unknown")
# The account whose password the login route has just found right, for the session Gradio stores next (its login
# route awaits ``auth`` and then stores the token in the same request, so in the same context).
SIGNING_IN: ContextVar[Identity | None] = ContextVar("signing_in", default=None)
SESSION_HOURS_ENV = "LAB_SESSION_HOURS"
# A day: a cookie copied or left in a shared browser is good for one at most, and a labeler signs in once a working
# day. Every vote is saved as it is cast, so a session ending loses nothing but a sign-in; a restart ends them all.
SESSION_HOURS = 24.0
# Gradio's routes that serve, store or fetch files. The labeling page shows text only and needs none of them, and
# Gradio's file route would serve whatever is in its process-wide cache, where the admin app's downloads (dataset
# exports, evaluations.csv) are copied.
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy=", "/gradio_api/upload",
               "/gradio_api/process_recording", "/gradio_api/stream/", "/gradio_api/custom_component/",
               "/gradio_api/deep_link")


def authenticator(home: Home, throttle: SignInThrottle) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's ``auth``: whether ``name`` may sign in with ``password``. Any account may, at either app: what it
    may then reach is decided on each request (``sign_in_per_request``), and a labeler at ``/`` is sent on to
    ``/label/`` rather than told the password is wrong."""

    async def sign_in(name: str, password: str) -> bool:
        address = CLIENT_ADDRESS.get()
        try:
            account_name(name)  # no account has another name: refused before the throttle keeps it (1 MB each)
            throttle.begin(name, address)
        except LabError as err:
            # A 400, as for a wrong password: Gradio's login page then shows its "incorrect credentials" (and our
            # auth_message states the limit); API clients get the sentence.
            raise HTTPException(status_code=400, detail=str(err)) from None
        identity = await asyncio.get_running_loop().run_in_executor(HASHING, partial(verify, name, password,
                                                                                      home=home))
        if identity is None:
            return False
        throttle.succeeded(name, address)
        SIGNING_IN.set(identity)
        return True

    return sign_in


def session_lifetime_s() -> float:
    """How long a password session lasts: ``LAB_SESSION_HOURS`` (default 24), in seconds."""
    text = os.environ.get(SESSION_HOURS_ENV, "").strip()
    try:
        hours = float(text) if text else SESSION_HOURS
    except ValueError:
        hours = math.nan
    if not 0 < hours < math.inf:
        raise LabError(f"{SESSION_HOURS_ENV} is how many hours a sign-in lasts: a number above 0, such as 24 or 0.5 "
                       f"(got '{text}').")
    return hours * 3600


@dataclass(frozen=True)
class Session:
    name: str
    stamp: str  # the account's password stamp when it signed in (lab.label.accounts.Identity.stamp)
    began: float


class Sessions(MutableMapping[str, str]):
    """Gradio's ``app.tokens`` (token → account name) with a lifetime and the password each session began with.

    Gradio stores a token once its login route has found the password right, reads it with ``get``, and deletes
    tokens at its logout route; the lab reads ``session`` instead, which ends a session past ``lifetime_s``.
    Sessions are kept in the order they began, so forgetting expired ones looks at those only."""

    def __init__(self, lifetime_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime_s = lifetime_s
        self.clock = clock
        self.sessions: dict[str, Session] = {}

    def __setitem__(self, token: str, name: str) -> None:
        signed_in = SIGNING_IN.get()
        if signed_in is None or signed_in.name != name:
            raise RuntimeError("Gradio stored a session the lab's sign-in did not just check: this Gradio version's "
                               "login route differs from the one lab/ui/server.py was written for.")
        self.forget_expired()
        self.sessions[token] = Session(name, signed_in.stamp, self.clock())

    def __getitem__(self, token: str) -> str:
        return self.sessions[token].name

    def __delitem__(self, token: str) -> None:
        del self.sessions[token]

    def __iter__(self) -> Iterator[str]:
        return iter(self.sessions)

    def __len__(self) -> int:
        return len(self.sessions)

    def get(self, token: Any, default: Any = None) -> Any:
        session = self.session(token)
        return session.name if session else default

    def session(self, token: str | None) -> Session | None:
        """The session ``token`` names, or None (no such session, or its lifetime is over)."""
        session = self.sessions.get(token) if token else None
        if session and self.clock() - session.began >= self.lifetime_s:
            del self.sessions[token]
            return None
        return session

    def end(self, token: str | None, *, everywhere: bool) -> None:
        """End the session ``token`` names, and with ``everywhere`` every other session of its account too."""
        session = self.sessions.pop(token, None) if token else None
        if session and everywhere:
            for other in [t for t, s in self.sessions.items() if s.name == session.name]:
                del self.sessions[other]

    def forget_expired(self) -> None:
        cutoff = self.clock() - self.lifetime_s
        expired = [t for t, _ in itertools.takewhile(lambda item: item[1].began <= cutoff, self.sessions.items())]
        for token in expired:
            del self.sessions[token]


LOOPBACK = ("127.0.0.1", "localhost", "::1")
ALLOWED_HOSTS_ENV = "LAB_ALLOWED_HOSTS"  # comma-separated: the names a reverse proxy serves the lab under


def allowed_hosts(bound: str) -> list[str]:
    """The Host names a request may carry: this machine's loopback names, the address the server listens on, a
    Space's own host, and ``LAB_ALLOWED_HOSTS``. A server listening on every address (0.0.0.0) is reached by names
    it cannot know, so it takes any unless ``LAB_ALLOWED_HOSTS`` names them."""
    named = [h.strip() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]
    if bound in ("0.0.0.0", "::", "") and not named:
        return ["*"]
    extra = [h for h in (bound, os.environ.get("SPACE_HOST", "")) if h and h not in ("0.0.0.0", "::")]
    return [*LOOPBACK, "[::1]", *extra, *named]


def gradio_app(parent: FastAPI, path: str) -> Any:
    """The Gradio app ``gr.mount_gradio_app`` mounted on ``parent`` at ``path``."""
    for route in parent.routes:
        if isinstance(route, Mount) and route.path == path.rstrip("/"):
            return route.app
    raise LookupError(f"No app is mounted at {path}.")


def unknown_api_not_found(parent: FastAPI, *paths: str) -> None:
    """A call to an API name or function number the app does not have answers 404, not a 500 and a logged
    traceback (Gradio raises for both and leaves them to the server)."""
    from fastapi.responses import JSONResponse
    from gradio.route_utils import FnIndexInferError

    async def no_api_name(request: Request, err: Exception) -> JSONResponse:
        name = request.path_params.get("api_name", "")
        return JSONResponse({"detail": f"This app has no API named '{name}'." if name else str(err)}, status_code=404)

    async def no_fn_index(request: Request, err: Exception) -> JSONResponse:
        if not request.url.path.endswith("/queue/join"):  # only the queue looks functions up by number
            raise err
        return JSONResponse({"detail": f"This app has no function number {err}."}, status_code=404)

    for path in paths:
        app = gradio_app(parent, path)
        app.add_exception_handler(FnIndexInferError, no_api_name)
        app.add_exception_handler(KeyError, no_fn_index)


def sign_in_per_request(parent: FastAPI, home: Home, *, admin_at: str, labeling_at: str) -> None:
    """Make the Gradio apps mounted at ``admin_at`` (admins only) and ``labeling_at`` (any role) decide sign-in on
    every request: they share one set of password sessions (one cookie, ``Sessions``), Gradio's ``get_current_user``
    is replaced by ``current_user``, and a sign-out at either app ends the session on the server (``SignOut``)."""
    admin, labeling = gradio_app(parent, admin_at), gradio_app(parent, labeling_at)
    admin.tokens = labeling.tokens = Sessions(session_lifetime_s())
    labeling.cookie_id = admin.cookie_id
    for app, admin_only in ((admin, True), (labeling, False)):
        app.dependency_overrides[gradio_user_dependency(app)] = current_user(app, home, admin_only=admin_only,
                                                                             labeling_url=labeling_at.strip("/") + "/")
    parent.add_middleware(SignOut, sessions=admin.tokens, cookie_id=admin.cookie_id,
                          paths=(admin_at.rstrip("/") + "/logout", labeling_at.rstrip("/") + "/logout"))


def gradio_user_dependency(app: Any) -> Callable:
    """Gradio's ``get_current_user``: the dependency its page, API and queue routes ask who is calling, found among
    what its page route (``/``) depends on."""
    for route in app.routes:
        if getattr(route, "path", None) == "/" and hasattr(route, "dependant"):
            for dependency in route.dependant.dependencies:
                if getattr(dependency.call, "__name__", None) == "get_current_user":
                    return dependency.call
    raise RuntimeError("This Gradio version's page route does not ask get_current_user who is calling: sign-in "
                       "cannot be decided per request.")


def current_user(app: Any, home: Home, *, admin_only: bool, labeling_url: str) -> Callable[[Request],
                                                                                        Awaitable[str | None]]:
    """The dependency that replaces Gradio's ``get_current_user``: the caller's name, or None (Gradio then shows
    its sign-in page, or answers 401). A labeler's request for the admin app's page is redirected to the
    labeling page instead."""

    async def user(request: Request) -> str | None:
        if not sign_in_required(home):
            return LOCAL  # no accounts: the local single-user lab, open to whoever reaches it
        identity = session_identity(app, request, home)
        if identity is None:
            return None
        if admin_only and not identity.is_admin:
            if request.method == "GET" and route_path(request.scope) in ("", "/"):
                raise HTTPException(status_code=303, headers={"Location": labeling_url},
                                    detail=f"{identity.name} is a labeler: the labeling page is at /{labeling_url}.")
            return None
        return identity.name

    return user


def session_identity(app: Any, request: Request, home: Home) -> Identity | None:
    """Who the request's session names, with their role now: a password sign-in (Gradio's token cookie) whose
    account still has the password it began with, else a Hugging Face sign-in (``hf:<username>``, from Gradio's
    OAuth session when the app has a login button). A password session whose account is gone or has a new password
    is ended here."""
    token = session_token(request, app.cookie_id)
    session = app.tokens.session(token)
    if session:
        identity = identity_of(session.name, stamp=session.stamp, home=home)
        if identity:
            return identity
        app.tokens.end(token, everywhere=False)
    username = hf_username(request.scope.get("session"))
    return identity_of(HF_PREFIX + username, home=home) if username else None


def session_token(request: Request, cookie_id: str) -> str | None:
    """The password session's token in the request's cookies (Gradio sets a secure and a plain copy)."""
    return request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(f"access-token-unsecure-{cookie_id}")


def hf_username(session: dict | None) -> str | None:
    """The Hugging Face username of a valid OAuth sign-in in ``session`` (Gradio's ``oauth_info``), if any."""
    info = (session or {}).get("oauth_info") or {}
    expires_at = info.get("expires_at")
    if expires_at is not None and expires_at < time.time():
        return None
    return (info.get("userinfo") or {}).get("preferred_username")



class SignOut:
    """ASGI middleware: a sign-out (``/logout``, ``/label/logout``) ends, on the server, the password session its
    cookie names (and, unless ``all_session=false``, the account's other sessions, as Gradio's route means to) before
    Gradio's route clears the cookie. Gradio's own route ends the sessions of whoever ``get_current_user`` names,
    which at ``/`` is nobody for a labeler, and its Hugging Face variant ends none: a copied cookie stayed signed in."""

    def __init__(self, app: ASGIApp, sessions: Sessions, cookie_id: str, paths: tuple[str, ...]) -> None:
        self.app = app
        self.sessions = sessions
        self.cookie_id = cookie_id
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope) in self.paths:
            request = Request(scope)
            everywhere = request.query_params.get("all_session", "true").lower() not in ("false", "0", "no", "off")
            self.sessions.end(session_token(request, self.cookie_id), everywhere=everywhere)
        await self.app(scope, receive, send)


class ClientAddress:
    """ASGI middleware: each request's client address in ``CLIENT_ADDRESS``, for the sign-in throttle
    (:func:`client_address`; ``proxied``: the server sits behind a Space's proxy)."""

    def __init__(self, app: ASGIApp, proxied: bool = False) -> None:
        self.app = app
        self.proxied = proxied

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            CLIENT_ADDRESS.set(client_address(scope, self.proxied))
        await self.app(scope, receive, send)


def client_address(scope: Scope, proxied: bool) -> str:
    """Who is asking. Off a Space, the connecting address, which uvicorn replaces with ``X-Forwarded-For``'s only
    for the proxies an operator names in ``FORWARDED_ALLOW_IPS`` (none by default: :func:`forwarded_allow_ips`).
    Behind a Space's proxy, the last public address of ``X-Forwarded-For``: proxies append the address that
    connected to them, so entries to its left are whatever the caller sent, and private ones to its right are the
    Space's own proxies."""
    if proxied:
        header = ",".join(value.decode("latin1") for name, value in scope.get("headers", ())
                          if name == b"x-forwarded-for")
        for hop in reversed([part.strip() for part in header.split(",") if part.strip()]):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                return hop[:64]  # not an address a proxy writes: counted as it is (the throttle keeps 64 characters)
            if not (address.is_private or address.is_loopback):
                return hop
    client = scope.get("client")
    return client[0] if client else "unknown"


def forwarded_allow_ips(environ: MutableMapping[str, str] = os.environ) -> str:
    """The proxies whose ``X-Forwarded-For`` uvicorn believes: the operator's ``FORWARDED_ALLOW_IPS``, else none.
    uvicorn's own default trusts this machine, so anyone reaching a local lab through a tunnel or port forwarding
    could name any address and slip past the per-address sign-in limit."""
    return environ.get("FORWARDED_ALLOW_IPS", "")


class NoFilesUnder:
    """ASGI middleware: 404 for Gradio's file routes (``FILE_ROUTES``) of the app mounted at ``prefix``."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.refused(route_path(scope)):
            await PlainTextResponse("Not found.", status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refused(self, path: str) -> bool:
        return path.startswith(self.prefix + "/") and path[len(self.prefix):].startswith(FILE_ROUTES)


def route_path(scope: Scope) -> str:
    """The request's path as Starlette's router matches it: without a root path a proxy put in front."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root + "/") else path


def unservable(home: Home) -> list[str]:
    """Folders Gradio's own file checks must refuse on the labeling mount, should a file route ever slip past
    ``NoFilesUnder``: the lab's home, and Gradio's process-wide upload and example caches, which hold copies of
    the admin app's downloads."""
    from gradio.utils import get_cache_folder, get_upload_folder

    return [str(home.root), get_upload_folder(), str(get_cache_folder().resolve())]
