"""The operator console's HTTP and websocket handlers: donkeycar's contract (POST /drive, /wsDrive,
/wsCalibrate, /video) for clients that log in, pitlane's page, login and telemetry.

Every request has passed the Host allow-list (`WebController.find_handler`) and gets the security headers
below. Who may do what:
- the page (GET /drive), its assets and GET /session are public: they hold no car state;
- /status, /video, POST /drive and both websockets need a session: the signed, HttpOnly, SameSite=Strict
  cookie set by POST /login, or the token itself (`Authorization: Bearer TOKEN` on any request,
  `?token=TOKEN` on a websocket URL, for donkeycar's clients and tools that cannot keep a cookie);
- a state-changing POST is refused when it comes from another site (Sec-Fetch-Site, Origin) and, with the
  cookie, without the JSON content type and the session's CSRF token (header X-Pitlane-CSRF);
- a websocket is refused when its Origin is not the console itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, cast

import tornado.iostream
import tornado.web
import tornado.websocket

from pitlane.car.console_auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Session,
    bearer,
    cross_site,
    same_origin,
    token_matches,
)
from pitlane.car.console_control import MessageError, decode

if TYPE_CHECKING:
    from pitlane.car.console import WebController

logger = logging.getLogger(__name__)

MJPEG_BOUNDARY = "pitlaneframe"
VIDEO_POLL_S = 0.02  # [s] how often /video looks for a new camera frame
VIDEO_IDLE_RESEND_S = 1.0  # [s] the same frame again after this long, so a late viewer sees a picture
SECURITY_HEADERS = {
    # no framing (clickjacking: a hostile page overlaying the console's buttons), nothing from elsewhere
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
LOGIN_HINT = 'log in first: POST /login {"token": ...}, or send Authorization: Bearer TOKEN'


class ConsoleHandler(tornado.web.RequestHandler):
    """Security headers on every answer; the caller's session (cookie or Bearer token) as current_user."""

    via = ""  # how the session came: "cookie" | "bearer" | "query" (websocket ?token=)

    @property
    def car(self) -> WebController:
        return cast("WebController", self.application)

    def set_default_headers(self) -> None:
        for name, value in SECURITY_HEADERS.items():
            self.set_header(name, value)

    def get_current_user(self) -> Session | None:
        sid = self.get_signed_cookie(SESSION_COOKIE, max_age_days=2)
        session = self.car.sessions.get(sid.decode()) if sid else None
        if session is not None:
            self.via = "cookie"
            return session
        given = bearer(self.request.headers.get("Authorization"))
        if given is not None and self.car.check_token(given, self.request.remote_ip or "?"):
            self.via = "bearer"
            return self.car.sessions.bearer(self.request.remote_ip or "?")
        return None

    def refuse(self, status: int, reason: str) -> None:
        self.set_status(status)
        self.finish({"error": reason})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish({"error": self._reason})

    def session_or_refuse(self) -> Session | None:
        session = cast("Session | None", self.current_user)
        if session is None:
            self.refuse(401, LOGIN_HINT)
        return session

    def post_refusal(self, session: Session | None) -> str | None:
        """Why this POST must not change anything (cross-site, or a cookie without JSON and CSRF token)."""
        headers = self.request.headers
        if why := cross_site(headers.get("Sec-Fetch-Site"), headers.get("Origin"), self.request.host):
            return f"refused: {why}"
        if session is not None and self.via == "cookie":
            if headers.get("Content-Type", "").split(";")[0].strip().lower() != "application/json":
                return "refused: send the body as Content-Type: application/json"
            if not token_matches(headers.get(CSRF_HEADER), session.csrf):
                return f"refused: missing or wrong {CSRF_HEADER} header (the page's CSRF token, GET /session)"
        return None


class HostRefused(ConsoleHandler):
    """Any request whose Host is not an allowed name of this car (DNS rebinding)."""

    def prepare(self) -> None:
        logger.warning("console: refused Host %r from %s", self.request.host[:80], self.request.remote_ip)
        self.refuse(403, f"Host {self.request.host[:80]!r} is not this car's; add it to WEB_ALLOWED_HOSTS")


class ConsolePage(ConsoleHandler):
    """GET /drive: the console page (it logs in itself); POST /drive: donkeycar's JSON contract (angle,
    throttle, drive_mode, recording, buttons), checked, for the client holding the wheel."""

    def get(self) -> None:
        self.write((self.car.static_dir / "index.html").read_bytes())
        self.set_header("Content-Type", "text/html; charset=utf-8")

    def post(self) -> None:
        session = self.current_user
        if why := self.post_refusal(session):
            return self.refuse(403, why)
        if (session := self.session_or_refuse()) is None:
            return None
        try:
            refusal = self.car.handle(session, decode(self.request.body))
        except MessageError as exc:
            return self.refuse(400, str(exc))
        if refusal:
            return self.refuse(409, refusal)
        self.finish({"ok": True, **self.car.wheel_view(session)})
        return None


class LoginAPI(ConsoleHandler):
    """POST /login {"token": ...}: a new session in a signed, HttpOnly, SameSite=Strict cookie."""

    def post(self) -> None:
        if why := self.post_refusal(None):
            return self.refuse(403, why)
        address = self.request.remote_ip or "?"
        if not self.car.login_allowed(address):
            return self.refuse(429, "too many wrong tokens from this address; wait a minute")
        try:
            token = decode(self.request.body).get("token")
        except MessageError as exc:
            return self.refuse(400, str(exc))
        if not isinstance(token, str) or not self.car.check_token(token, address):
            return self.refuse(403, "wrong token: use the car's console token (printed at its first start)")
        session = self.car.sessions.create(address, "cookie")
        self.set_signed_cookie(
            SESSION_COOKIE,
            session.id,
            expires_days=None,  # a browser-session cookie; the car ends it after WEB session_ttl_s unused
            httponly=True,
            samesite="Strict",
            secure=self.request.protocol == "https",
            path="/",
        )
        logger.info("console: %s logged in", session.label)
        self.finish({"client": session.label, "csrf": session.csrf})
        return None


class LogoutAPI(ConsoleHandler):
    def post(self) -> None:
        session = self.current_user
        if why := self.post_refusal(session):
            return self.refuse(403, why)
        if session is not None:
            self.car.end_session(session)
        self.clear_cookie(SESSION_COOKIE, path="/")
        self.finish({"ok": True})


class SessionAPI(ConsoleHandler):
    """GET /session: whether this browser is logged in, and its CSRF token (same-origin pages only can
    read it: no CORS header is ever sent)."""

    def get(self) -> None:
        session = cast("Session | None", self.current_user)
        if session is None:
            self.finish({"logged_in": False})
            return
        csrf = session.csrf if self.via == "cookie" else None
        self.finish({"logged_in": True, "client": session.label, "csrf": csrf})


class StatusAPI(ConsoleHandler):
    """GET /status: the console's telemetry as JSON (mode, recording, records, loop rate, watchdog, who
    drives, ...)."""

    def get(self) -> None:
        if (session := self.session_or_refuse()) is None:
            return
        self.finish(self.car.status(session))


class VideoAPI(ConsoleHandler):
    """GET /video: the camera as MJPEG (multipart/x-mixed-replace), a placeholder until the first frame.

    Unlike donkeycar's (which needs the missing placeholder file and never ends), it sends a frame only when
    a new one arrived (or once a second), stops when the viewer goes away, and serves a bounded number of
    viewers (each frame is encoded once for all of them).
    """

    async def get(self) -> None:
        if self.session_or_refuse() is None:
            return
        car = self.car
        if car.viewers >= car.console.max_viewers:
            self.refuse(503, f"{car.viewers} viewers already watch; close one and retry")
            return
        car.viewers += 1
        try:
            await self._stream(car)
        finally:
            car.viewers -= 1

    async def _stream(self, car: WebController) -> None:
        self.set_header("Content-Type", f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}")
        self.write(f"--{MJPEG_BOUNDARY}\r\n")
        last, last_sent_s = None, 0.0
        while True:
            img = car.img_arr
            now = time.monotonic()
            if img is None:
                img = car.placeholder
            if img is not last or now - last_sent_s > VIDEO_IDLE_RESEND_S:
                jpeg = car.jpeg(img)
                self.write(f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n")
                self.write(jpeg)
                self.write(f"\r\n--{MJPEG_BOUNDARY}\r\n")  # the boundary right away: browsers show it now
                last, last_sent_s = img, now
                try:
                    await self.flush()
                except tornado.iostream.StreamClosedError:
                    return
            await asyncio.sleep(VIDEO_POLL_S)


class StaticAssets(ConsoleHandler, tornado.web.StaticFileHandler):
    """The page's script and style, with the console's security headers."""


class Redirect(ConsoleHandler, tornado.web.RedirectHandler):
    pass


class DriveSocket(ConsoleHandler, tornado.websocket.WebSocketHandler):
    """/wsDrive: donkeycar's drive messages over a websocket; each refusal is answered {"refused": why}.

    Logged in by the cookie, a Bearer header, or ?token= (a session that lasts as long as this socket).
    """

    calibrate = False
    session: Session

    def prepare(self) -> None:
        session = cast("Session | None", self.current_user)
        given = self.get_query_argument("token", None)
        address = self.request.remote_ip or "?"
        if session is None and given is not None and self.car.check_token(given, address):
            session, self.via = self.car.sessions.create(address, "socket"), "query"
        if session is None:
            raise tornado.web.HTTPError(401, reason="log in first (cookie, Bearer header or ?token=)")
        self.session = session

    def check_origin(self, origin: str) -> bool:
        """Cross-site websocket hijacking: only the console's own page (a non-browser sends no Origin)."""
        ok = same_origin(origin, self.request.host)
        if not ok:
            logger.warning("console: refused a websocket from Origin %r", origin[:80])
        return ok

    def open(self, *args: str, **kwargs: str) -> None:
        self.car.socket_opened(self)
        self.write_message({"client": self.session.label, **self.car.wheel_view(self.session)})

    def on_message(self, message: str | bytes) -> None:
        try:
            refusal = self.car.handle(self.session, decode(message), calibrate=self.calibrate)
        except MessageError as exc:
            refusal = str(exc)
        if refusal:
            self.write_message({"refused": refusal, **self.car.wheel_view(self.session)})

    def on_close(self) -> None:
        self.car.socket_closed(self)


class CalibrateSocket(DriveSocket):
    """/wsCalibrate: donkeycar's calibration messages (angle, throttle) for the client holding the wheel."""

    calibrate = True


def handlers(static_dir: str) -> list[Any]:
    return [
        (r"/", Redirect, {"url": "/drive"}),
        (r"/drive", ConsolePage),
        (r"/login", LoginAPI),
        (r"/logout", LogoutAPI),
        (r"/session", SessionAPI),
        (r"/status", StatusAPI),
        (r"/wsDrive", DriveSocket),
        (r"/wsCalibrate", CalibrateSocket),
        (r"/video", VideoAPI),
        (r"/static/(.*)", StaticAssets, {"path": static_dir}),
    ]


def log_request(handler: tornado.web.RequestHandler) -> None:
    """tornado's access log without the query string (a websocket's ?token= must not reach the logs):
    every refusal as a warning; of the rest only logins and logouts at info (pages poll, clients drive
    several times a second)."""
    status = handler.get_status()
    log = logger.warning if status >= 400 else logger.debug
    if status < 400 and handler.request.path in ("/login", "/logout"):
        log = logger.info
    request = handler.request
    log(
        "%d %s %s (%s) %.1f ms",
        status,
        request.method,
        request.path,
        request.remote_ip,
        request.request_time() * 1e3,
    )
