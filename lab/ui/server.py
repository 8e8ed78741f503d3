"""What the server adds around its two Gradio apps (``lab.ui.app.main``): sign-in that is throttled and hashes
passwords off the event loop, and a labeling mount that serves no files.

Gradio's login route calls ``auth(name, password)`` with nothing else, and awaits it when it is a coroutine
function; a plain function would run PBKDF2 (~0.1 s) on the event loop and stall every other request. So
``authenticator`` is async and hashes in a small thread pool, and ``ClientAddress`` gives it the caller's address,
which Gradio does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from functools import partial

from fastapi import HTTPException
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from lab.errors import LabError
from lab.home import Home
from lab.label.accounts import verify
from lab.label.throttle import SignInThrottle

HASH_WORKERS = 2  # passwords hashed at once: a burst of sign-ins queues rather than take every core from the pages
HASHING = ThreadPoolExecutor(max_workers=HASH_WORKERS, thread_name_prefix="lab-sign-in")
CLIENT_ADDRESS: ContextVar[str] = ContextVar("client_address", default="unknown")
# Gradio's routes that serve, store or fetch files. The labeling page shows text only and needs none of them, and
# Gradio's file route would serve whatever is in its process-wide cache, where the admin app's downloads (dataset
# exports, evaluations.csv) are copied.
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/", "/gradio_api/proxy=", "/gradio_api/upload",
               "/gradio_api/process_recording", "/gradio_api/stream/", "/gradio_api/custom_component/",
               "/gradio_api/deep_link")


def authenticator(home: Home, throttle: SignInThrottle, *,
                  admin_only: bool = False) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's ``auth``: whether ``name`` may sign in with ``password`` (at ``/``, admins only)."""

    async def sign_in(name: str, password: str) -> bool:
        address = CLIENT_ADDRESS.get()
        try:
            throttle.begin(name, address)
        except LabError as err:
            # A 400, as for a wrong password: Gradio's login page then shows its "incorrect credentials" (and our
            # auth_message states the limit); API clients get the sentence.
            raise HTTPException(status_code=400, detail=str(err)) from None
        identity = await asyncio.get_running_loop().run_in_executor(HASHING, partial(verify, name, password,
                                                                                      home=home))
        if identity is None:
            return False
        throttle.succeeded(name, address)  # the password was right, even where the role is not
        return identity.is_admin or not admin_only

    return sign_in


class ClientAddress:
    """ASGI middleware: each request's client address (uvicorn has already applied a trusted proxy's
    X-Forwarded-For) in ``CLIENT_ADDRESS``, for the sign-in throttle."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            client = scope.get("client")
            CLIENT_ADDRESS.set(client[0] if client else "unknown")
        await self.app(scope, receive, send)


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
