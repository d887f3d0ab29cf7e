"""The twin as a DonkeyCar simulator: a TCP server speaking docs/sim-protocol.md, one car (`Sim`) per client.

One asyncio event loop serves every client. Each connection starts in the menu (`scene_selection_ready`),
loads a scene (`car_loaded`) and then either streams telemetry in real time at `stream_hz` (asynchronous mode,
the default, like the Unity sim's 20 Hz) or answers each `control` with exactly one telemetry after exactly
`time_step` seconds of simulated time (synchronous mode, `step_mode`; `reset_car` then answers one telemetry
too). A bad message is logged (at most `ServerLimits.log_lines` lines per client per interval, the rest
counted) and skipped; an unexpected error is logged with its traceback and touches only that client.

The loop only does cheap work. Scene loads, `regen_road`, camera changes and frames bigger than a small
JPEG run on worker threads (`FairPool`: the client that has used the least worker time goes first), so one
client's 1080p PNG camera or `regen_road` spam never stalls another client's telemetry. Each client's
messages are still handled one after another, in order (a per-client lock), so synchronous stepping stays
exact. `ServerLimits` bounds what one client can take: connections (in all and per address, so one host
cannot lock every car out), camera size, message rate, idle time, unsent bytes.

This module owns the sockets and the read loop; what a client sees is `pitlane.twin.session.ClientSession`,
the limits' tools are in `pitlane.twin.limits`. `pitlane twin serve` is the command that runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import threading
from typing import Any

from pitlane.errors import UserError
from pitlane.twin import protocol as P
from pitlane.twin.limits import FairPool, LogLimit, ServerLimits, client_address
from pitlane.twin.session import ClientSession
from pitlane.twin.world import CONTROL_HZ

LOG = logging.getLogger("pitlane.twin.server")
READ_CHUNK = 1 << 16  # [bytes]
# gym-donkeycar starts its reader thread before it registers its handler (SimClient.__init__), and drops what
# it would answer in between; the Unity sim greets a frame later, so the twin waits a moment too.
GREETING_DELAY_S = 0.02  # [s]
BAD_MESSAGE_COST = 10.0  # [messages] what an unreadable message counts for the message rate limit


class TwinServer:
    """The simulator server. `start()` runs it in a background thread (tests use port 0); `serve_forever()`
    runs it in the calling thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = P.DEFAULT_PORT,
        *,
        stream_hz: float = CONTROL_HZ,
        seed: int = 0,
        limits: ServerLimits | None = None,
        log: logging.Logger | None = None,
    ):
        if not 0.1 <= stream_hz <= 1000.0:
            raise UserError(f"stream rate {stream_hz} Hz outside 0.1..1000")
        self.host, self.stream_hz, self.seed = host, float(stream_hz), int(seed)
        self.limits = limits or ServerLimits()
        self.log = log or LOG
        self._requested_port = port
        self._port: int | None = None
        self._ids = itertools.count(1)
        self._sessions: dict[int, asyncio.Task] = {}
        self._clients: dict[int, ClientSession] = {}
        self._per_address: dict[str, int] = {}  # connections served now, by client address
        self._refusals = LogLimit(self.log, "", self.limits.log_lines, self.limits.log_interval_s)
        self.refused_clients = 0
        self._pool: FairPool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._on_ready = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def client_count(self) -> int:
        return len(self._sessions)

    @property
    def pool(self) -> FairPool:
        if self._pool is None:
            raise RuntimeError("server not started")
        return self._pool

    def client_stats(self) -> dict[int, dict[str, int]]:
        """Per connected client: frames dropped for not reading, bytes queued unsent, warnings (logged or
        suppressed) and messages that waited for the rate limit."""
        out = {}
        for cid, s in list(self._clients.items()):
            transport = s.writer.transport
            out[cid] = {
                "dropped_frames": s.dropped_frames,
                "buffered_bytes": 0 if transport.is_closing() else transport.get_write_buffer_size(),
                "warnings": s.warnings.total,
                "throttled": s.throttled,
            }
        return out

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout_s: float = 10.0) -> TwinServer:
        self._thread = threading.Thread(target=self._run, name="pitlane-twin-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"twin server did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def serve_forever(self, on_ready=None) -> None:
        """Serve in this thread until Ctrl-C; `on_ready(port)` is called once the socket listens."""
        self._on_ready = on_ready
        try:
            self._run(raise_errors=True)
        except KeyboardInterrupt:
            self.log.info("stopped")

    def __enter__(self) -> TwinServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self, raise_errors: bool = False) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            if self._ready.is_set() and not isinstance(e, KeyboardInterrupt):
                self.log.exception("twin server stopped by an internal error")
            self._error = e
            self._ready.set()
            if raise_errors:
                raise

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            server = await asyncio.start_server(self._client, self.host, self._requested_port)
        except OSError as e:
            raise UserError(
                f"cannot listen on {self.host}:{self._requested_port}: {e.strerror or e} "
                "(is another simulator already using that port?)"
            ) from None
        self._port = server.sockets[0].getsockname()[1]
        self._pool = FairPool(self.limits.worker_threads)
        lim = self.limits
        self.log.info(
            "pitlane twin listening on %s:%d (telemetry %.0f Hz, seed %d; limits: %d clients, %d per address, "
            "cameras up to %d px, %g messages/s, %g scene loads/min, idle %g s, %d KiB send buffer, "
            "%d worker threads)",
            self.host,
            self._port,
            self.stream_hz,
            self.seed,
            lim.max_clients,
            lim.max_clients_per_address,
            lim.max_camera_pixels,
            lim.messages_per_s,
            lim.scene_loads_per_min,
            lim.idle_timeout_s,
            lim.send_buffer_bytes >> 10,
            lim.worker_threads,
        )
        self._ready.set()
        if threading.current_thread() is threading.main_thread():  # `docker stop` and kill: a clean exit
            with contextlib.suppress(NotImplementedError, RuntimeError):
                self._loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        if self._on_ready is not None:
            self._on_ready(self._port)
        try:
            await self._stop.wait()
            self.log.info("stopping")
        finally:
            server.close()
            for task in list(self._sessions.values()):
                task.cancel()
            await asyncio.gather(*self._sessions.values(), return_exceptions=True)
            self._pool.close()
            self._refusals.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    # ---- one client --------------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = client_address(peer)
        if len(self._sessions) >= self.limits.max_clients:
            await self._refuse(writer, peer, "--max-clients", f"{len(self._sessions)} clients connected")
            return
        if self._per_address.get(address, 0) >= self.limits.max_clients_per_address:
            await self._refuse(
                writer, peer, "--max-clients-per-address", f"{self._per_address[address]} from {address}"
            )
            return
        self._per_address[address] = self._per_address.get(address, 0) + 1
        try:
            await self._serve_client(reader, writer, peer)
        finally:
            left = self._per_address.pop(address, 1) - 1
            if left > 0:
                self._per_address[address] = left

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any
    ) -> None:
        session = self._open(reader, writer, peer)
        splitter = P.MessageSplitter()
        idle_s = self.limits.idle_timeout_s or None
        reason = "disconnected"
        try:
            reason = await self._read_loop(session, splitter)
        except _NotReading:
            reason = (
                f"read nothing for {idle_s:g} s with data waiting; closed (pitlane twin serve --idle-timeout)"
            )
            self.log.warning("client %d: %s", session.cid, reason)
        except (ConnectionError, OSError) as e:
            reason = f"connection lost ({e.__class__.__name__}: {e})"
        except asyncio.CancelledError:
            reason = "server stopping"
        except Exception:  # noqa: BLE001 - one client's failure must not reach the server
            self.log.exception("client %d: internal error; closing this client", session.cid)
            reason = "closed after an internal error"
        finally:
            await self._close(session, splitter, reason)

    async def _refuse(self, writer: asyncio.StreamWriter, peer: Any, flag: str, count: str) -> None:
        """Over --max-clients or --max-clients-per-address: close at once, with a (rate-limited) log line."""
        self.refused_clients += 1
        self._refusals.warn(
            "refused a connection from %s: %s, this twin's limit (pitlane twin serve %s)", peer, count, flag
        )
        writer.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(writer.wait_closed(), 1.0)

    def _open(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any) -> ClientSession:
        """A session for a new connection: registered, its socket tuned (no Nagle delay, bounded buffers)."""
        cid = next(self._ids)
        task = asyncio.current_task()
        if task is not None:
            self._sessions[cid] = task
        send_buffer = self.limits.send_buffer_bytes
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        writer.transport.set_write_buffer_limits(high=send_buffer)
        self.log.info("client %d connected from %s", cid, peer)
        session = ClientSession(self, cid, reader, writer)
        self._clients[cid] = session
        return session

    async def _read_loop(self, session: ClientSession, splitter: P.MessageSplitter) -> str:
        """Greet, then read, pace and handle the client's messages until it goes; returns why it ended."""
        loop = asyncio.get_running_loop()
        idle_s = self.limits.idle_timeout_s or None
        last_message = loop.time()
        reason = "disconnected"
        await asyncio.sleep(GREETING_DELAY_S)
        session.send(P.scene_selection_ready())
        while not session.closing:
            try:
                async with asyncio.timeout(None if idle_s is None else last_message + idle_s - loop.time()):
                    data = await session.reader.read(READ_CHUNK)
            except TimeoutError:
                reason = (
                    f"sent no complete message for {idle_s:g} s; closed (pitlane twin serve --idle-timeout)"
                )
                self.log.warning("client %d: %s", session.cid, reason)
                return reason
            if not data:
                return reason
            items = splitter.feed(data)
            for item in items:
                await self._admit(session, item)
                await self._dispatch(session, item)
                if session.closing:
                    reason = "closed"
                    break
                if len(items) > 1:  # a burst (one chunk can hold ~800 controls): let other clients run
                    await self._drain(session)
                    await asyncio.sleep(0)
            await self._drain(session)
            if items:  # idle time counts while the server waits for the client, not while it works
                last_message = loop.time()
        return reason

    async def _close(self, session: ClientSession, splitter: P.MessageSplitter, reason: str) -> None:
        cid = session.cid
        if splitter.pending_bytes:
            self.log.warning(
                "client %d: went away mid-message; %d bytes of an unfinished message discarded",
                cid,
                splitter.pending_bytes,
            )
        session.close()
        session.writer.close()
        with contextlib.suppress(Exception, asyncio.CancelledError):  # closing anyway
            await asyncio.wait_for(session.writer.wait_closed(), 1.0)
        self._sessions.pop(cid, None)
        self._clients.pop(cid, None)
        self.pool.forget(cid)
        self.log.info("client %d: %s", cid, reason)

    async def _drain(self, session: ClientSession) -> None:
        """Wait while the client's queue is over the send buffer (TCP back-pressure: its next messages wait);
        a client that reads nothing for the idle timeout is closed."""
        idle_s = self.limits.idle_timeout_s or None
        try:
            async with asyncio.timeout(idle_s):
                await session.writer.drain()
        except TimeoutError:
            raise _NotReading from None

    async def _admit(self, session: ClientSession, item) -> None:
        """The rate limits: a client over its message rate (or scene load rate) is read more slowly. A message
        that cannot be read at all counts as BAD_MESSAGE_COST messages: garbage is slowed down sooner."""
        wait = session.messages.take(BAD_MESSAGE_COST if isinstance(item, P.ProtocolError) else 1.0)
        if isinstance(item, dict) and item.get("msg_type") in ("load_scene", "regen_road"):
            loads = session.loads.take()
            if loads > 0:
                session.warn(
                    "%s: over %g scene loads a minute; waiting %.1f s (pitlane twin serve --max-scene-loads)",
                    item["msg_type"],
                    self.limits.scene_loads_per_min,
                    loads,
                )
            wait = max(wait, loads)
        if wait > 0:
            session.throttled += 1
            if session.throttled in (1, 1000, 100_000):
                session.warn(
                    "over %g messages/s; reading it more slowly (pitlane twin serve --max-message-rate); "
                    "%d messages delayed so far",
                    self.limits.messages_per_s,
                    session.throttled,
                )
            await asyncio.sleep(wait)

    async def _dispatch(self, session: ClientSession, item) -> None:
        if isinstance(item, P.ProtocolError):
            session.warn("%s", item)
            return
        try:
            async with session.lock:
                await session.handle(item)
        except (P.ProtocolError, ValueError, TypeError) as e:
            session.warn("bad %s message: %s", item["msg_type"], e)
        except ConnectionError:
            raise
        except Exception:  # noqa: BLE001 - a bug handling one message must not end the session or the server
            self.log.exception(
                "client %d: internal error handling %s; message skipped", session.cid, item["msg_type"]
            )


class _NotReading(Exception):
    """A client left data unread for the idle timeout."""


def serve(
    host: str = "127.0.0.1",
    port: int = P.DEFAULT_PORT,
    *,
    stream_hz: float = CONTROL_HZ,
    seed: int = 0,
    limits: ServerLimits | None = None,
    log: logging.Logger | None = None,
    on_ready=None,
) -> None:
    """Run the twin simulator server until Ctrl-C or SIGTERM. Blocks; `on_ready(port)` once listening.

    The process is the server's: OpenCV runs single-threaded, since its thread pool costs more than it saves
    on 160x120 frames and takes cores from the clients (bench/bench_protocol.py: ~1.3-1.6x the round trips
    on two cores); big frames use the server's own worker threads instead."""
    import cv2

    cv2.setNumThreads(1)
    TwinServer(host, port, stream_hz=stream_hz, seed=seed, limits=limits, log=log).serve_forever(on_ready)
