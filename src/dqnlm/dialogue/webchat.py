"""`dqnlm dialogue serve`: talk to a dialogue agent in a browser, and see why it acts.

A small page over the standard library's ``http.server``: one static page and two JSON
endpoints (``POST /api/start``, ``POST /api/say``). No web framework: the page needs
two routes, the server must cap every request's size and refuse other hosts before
reading a byte, and ``http.server`` does both in a few lines with nothing to install
and nothing fetched from the network (gradio would add ~100 MB of dependencies and
load its front end from a CDN by default).

Safety: bound to 127.0.0.1 unless ``host`` says otherwise; then too, a client outside
loopback is refused unless the host was chosen explicitly (``allow_remote``), and a
``Host`` header naming another site is refused (DNS rebinding). Bodies over
:data:`MAX_REQUEST_BYTES` are refused unread; sessions are capped (oldest dropped).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources

from dqnlm.dialogue.chat import ChatSession, Reply

MAX_REQUEST_BYTES = 64 * 1024
"""Largest request body read; the page's own requests are a few hundred bytes."""
MAX_SESSIONS = 256
"""Conversations kept at once; the oldest is dropped beyond this."""
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
CSP = "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'"
"""The page runs only its own inline script and talks only to this server."""


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def page() -> bytes:
    return resources.files("dqnlm.dialogue").joinpath("web/chat.html").read_bytes()


class ChatServer(ThreadingHTTPServer):
    """The HTTP server: sessions by id, made by ``new_session(seed)``."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        new_session: Callable[[int], ChatSession],
        title: str,
        allow_remote: bool = False,
    ):
        super().__init__(address, _Handler)
        self.new_session, self.title, self.allow_remote = new_session, title, allow_remote
        self.sessions: OrderedDict[str, ChatSession] = OrderedDict()
        self.lock = threading.Lock()  # sessions and the agents' networks are shared
        self.started = 0

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"

    def start(self, seed: int | None) -> tuple[str, ChatSession]:
        with self.lock:
            session = self.new_session(self.started if seed is None else seed)
            self.started += 1
            key = secrets.token_urlsafe(12)
            self.sessions[key] = session
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
            return key, session

    def say(self, key: str, text: str) -> tuple[Reply, ChatSession] | None:
        with self.lock:
            session = self.sessions.get(key)
            if session is None:
                return None
            self.sessions.move_to_end(key)
            return session.say(text), session


def view(session: ChatSession, reply: Reply | None = None) -> dict:
    """What the page shows after a turn (JSON-ready)."""
    data = {"goal": session.goal_status(), "state": session.state_summary()}
    if reply is not None:
        data["reply"] = {
            "agent": reply.agent,
            "understood": reply.understood,
            "changed": reply.changed,
            "note": reply.note,
            "action": reply.action,
            "q_values": reply.q_values,
            "done": reply.done,
            "ending": reply.ending,
        }
    return data


class _Handler(BaseHTTPRequestHandler):
    server: ChatServer
    server_version = "dqnlm-chat"
    sys_version = ""

    def log_message(self, format, *args) -> None:  # noqa: A002 (the base class's name)
        pass  # the terminal shows the URL; per-request lines would bury it

    # --------------------------------------------------------------------- checks
    def _allowed(self) -> bool:
        """Refuse clients outside loopback and foreign Host headers unless allowed."""
        if self.server.allow_remote:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        host = host.split("]")[0] + "]" if host.startswith("[") else host.split(":")[0]
        if not is_loopback(self.client_address[0]) or host not in LOCAL_NAMES:
            self._send(HTTPStatus.FORBIDDEN, {"error": "only this computer may connect"})
            return False
        return True

    def _send(self, status: HTTPStatus, body: dict | bytes, kind: str = "application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{kind}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict | None:
        """The JSON object sent, or None after answering with the reason it is refused."""
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(HTTPStatus.LENGTH_REQUIRED, {"error": "send a Content-Length"})
            return None
        if length > MAX_REQUEST_BYTES or length < 0:
            self.close_connection = True  # the body stays unread
            self._send(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                {
                    "error": f"That message is too long for me ({length:,} bytes); "
                    f"please send at most {MAX_REQUEST_BYTES:,}."
                },
            )
            return None
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8", errors="replace") or "{}")
        except json.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            self._send(HTTPStatus.BAD_REQUEST, {"error": "send a JSON object"})
            return None
        return body

    # --------------------------------------------------------------------- routes
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if not self._allowed():
            return
        if self.path.split("?")[0] in ("/", "/index.html"):
            html = page().replace(b"{{title}}", self.server.title.encode())
            self._send(HTTPStatus.OK, html, "text/html")
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no page {self.path[:100]!r}"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._allowed():
            return
        route = self.path.split("?")[0]
        if route not in ("/api/start", "/api/say"):
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {route[:100]!r}"})
            return
        body = self._body()
        if body is None:
            return
        if route == "/api/start":
            seed = body.get("seed")
            if seed is not None and (not isinstance(seed, int) or not 0 <= seed < 2**31):
                self._send(
                    HTTPStatus.BAD_REQUEST,
                    {"error": f"seed must be a whole number, got {seed!r}"[:200]},
                )
                return
            key, session = self.server.start(seed)
            data = view(session)
            data.update(
                session=key,
                domain=session.domain.name,
                hint=session.opening_hint(),
                q_values=hasattr(session.agent, "q_values"),
            )
            self._send(HTTPStatus.OK, data)
            return
        text = body.get("text")
        if not isinstance(text, str):
            self._send(HTTPStatus.BAD_REQUEST, {"error": "text must be a string"})
            return
        result = self.server.say(str(body.get("session")), text)
        if result is None:
            self._send(
                HTTPStatus.NOT_FOUND, {"error": "this conversation has expired; start a new one"}
            )
            return
        reply, session = result
        self._send(HTTPStatus.OK, view(session, reply))
