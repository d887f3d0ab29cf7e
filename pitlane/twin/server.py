"""The twin as a DonkeyCar simulator: a TCP server speaking docs/sim-protocol.md, one car (`Sim`) per client.

One asyncio event loop serves every client. Each connection starts in the menu (`scene_selection_ready`),
loads a scene (`car_loaded`) and then either streams telemetry in real time at `stream_hz` (asynchronous mode,
the default, like the Unity sim's 20 Hz) or answers each `control` with exactly one telemetry after exactly
`time_step` seconds of simulated time (synchronous mode, `step_mode`; `reset_car` then answers one telemetry
too). A bad message is logged (at most `ServerLimits.log_lines` lines per client per interval, the rest
counted) and skipped; an unexpected error is logged with its traceback and touches only that client.

The loop only does cheap work. Scene loads, `regen_road`, camera changes and frames bigger than a small
JPEG run on worker threads (`_FairPool`: the client that has used the least worker time goes first), so one
client's 1080p PNG camera or `regen_road` spam never stalls another client's telemetry. Each client's
messages are still handled one after another, in order (a per-client lock), so synchronous stepping stays
exact. `ServerLimits` bounds what one client can take: connections, camera size, message rate, idle time,
unsent bytes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pitlane.errors import UserError
from pitlane.twin import protocol as P
from pitlane.twin.camera import CameraParams
from pitlane.twin.limits import ServerLimits
from pitlane.twin.scenes import SCENE_NAMES, load_scene
from pitlane.twin.sim import Sim
from pitlane.twin.vehicle import Control
from pitlane.twin.world import CONTROL_HZ

LOG = logging.getLogger("pitlane.twin.server")
READ_CHUNK = 1 << 16  # [bytes]
# gym-donkeycar starts its reader thread before it registers its handler (SimClient.__init__), and drops what
# it would answer in between; the Unity sim greets a frame later, so the twin waits a moment too.
GREETING_DELAY_S = 0.02  # [s]
# frames up to this size, as JPEG, render and encode on the loop (measured ~0.4 ms at 160x120 on one core);
# a worker thread costs more than that in hand-over. Bigger ones, and PNG/TGA, go to a worker.
INLINE_FRAME_PIXELS = 320 * 240  # [px]
BAD_MESSAGE_COST = 10.0  # [messages] what an unreadable message counts for the message rate limit
WORK_POLL_S = 0.1  # [s] how often a client whose work waits for a worker is checked for having gone away
# messages that only make sense with a car in a scene
_SCENE_ONLY = {
    "control",
    "reset_car",
    "exit_scene",
    "car_config",
    "racer_info",
    "cam_config",
    "cam_config_b",
    "lidar_config",
    "set_position",
    "node_position",
    "regen_road",
    "step_mode",
}


class _LogLimit:
    """At most `lines` warnings per `interval_s`; the rest are counted and summed up in one line later."""

    def __init__(self, log: logging.Logger, prefix: str, lines: int, interval_s: float) -> None:
        self.log, self.prefix, self.lines, self.interval_s = log, prefix, lines, interval_s
        self.window_start = -float("inf")
        self.in_window = 0
        self.suppressed = 0
        self.total = 0  # every warning, logged or not

    def warn(self, text: str, *args) -> None:
        self.total += 1
        now = time.monotonic()
        if now - self.window_start >= self.interval_s:
            self.flush()
            self.window_start, self.in_window = now, 0
        if self.in_window < self.lines:
            self.in_window += 1
            self.log.warning(self.prefix + text, *args)
        else:
            self.suppressed += 1

    def flush(self) -> None:
        if self.suppressed:
            self.log.warning(
                self.prefix + "%d more warnings suppressed (at most %d per %g s)",
                self.suppressed,
                self.lines,
                self.interval_s,
            )
            self.suppressed = 0


class _Bucket:
    """Token bucket: `take()` says how long [s] to wait before the taken token is due (0: now)."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self.rate, self.burst = rate_per_s, burst
        self.tokens, self.t = burst, time.monotonic()

    def take(self, tokens: float = 1.0) -> float:
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        self.tokens -= tokens
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class _FairPool:
    """Worker threads shared by all clients; of the waiting jobs, the one whose client has used the least
    worker time so far runs first, so a client spamming expensive work waits behind everyone else's."""

    def __init__(self, threads: int) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, int, Callable[[], Any], concurrent.futures.Future]] = []
        self._used: dict[int, float] = {}  # [s] worker time per client id
        self._seq = itertools.count()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"pitlane-twin-worker-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, owner: int, fn: Callable[[], Any]) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("worker pool closed")
            used = self._used.setdefault(owner, 0.0)
            heapq.heappush(self._heap, (used, next(self._seq), owner, fn, fut))
            self._cv.notify()
        return fut

    def forget(self, owner: int) -> None:
        with self._cv:
            self._used.pop(owner, None)

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if not self._heap:
                    return
                _, _, owner, fn, fut = heapq.heappop(self._heap)
            if not fut.set_running_or_notify_cancel():
                continue
            t0 = time.perf_counter()
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting client
                fut.set_exception(e)
            with self._cv:
                if owner in self._used:  # not for a client that has gone meanwhile
                    self._used[owner] += time.perf_counter() - t0

    def close(self, timeout_s: float = 5.0) -> None:
        """Cancel waiting jobs, let running ones finish (OpenCV must not be inside a frame at exit)."""
        with self._cv:
            self._closed = True
            for *_, fut in self._heap:
                fut.cancel()
            self._heap.clear()
            self._cv.notify_all()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))


class _Session:
    """One client: its menu/scene state, its car and how it wants frames."""

    def __init__(
        self, server: TwinServer, cid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.server, self.cid, self.reader, self.writer, self.log = server, cid, reader, writer, server.log
        limits = server.limits
        self.sim: Sim | None = None
        self.scene: str | None = None
        self.synchronous = False
        self.time_step_s = 1.0 / server.stream_hz  # [s] per control in synchronous mode
        self.control = Control()
        self.camera = CameraParams()
        self.image_format = P.ImageFormat()
        self.prev = None  # previous Telemetry, for accelerometer and gyro
        self.clock_s = 0.0  # [s] simulated time since car_loaded, never reset (the lap timeStamp base)
        # progress [m] where the car was (re)placed; None once its first start line crossing was reported
        self.start_progress: float | None = 0.0
        self.closing = False
        self.stream: asyncio.Task | None = None
        self.lock = asyncio.Lock()  # one message (or one streamed frame) at a time touches the car
        self.warnings = _LogLimit(self.log, f"client {cid}: ", limits.log_lines, limits.log_interval_s)
        self.messages = _Bucket(limits.messages_per_s, max(1.0, limits.messages_per_s))
        # scene loads: a burst of 10 s worth (at least 2), then the rate
        self.loads = _Bucket(limits.scene_loads_per_min / 60.0, max(2.0, limits.scene_loads_per_min / 6.0))
        self.dropped_frames = 0
        self.throttled = 0  # messages that waited for the message rate limit

    @property
    def car(self) -> Sim:
        """The loaded car (handlers of _SCENE_ONLY messages only run with one)."""
        if self.sim is None:
            raise RuntimeError(f"client {self.cid} has no car loaded")
        return self.sim

    # ---- output ------------------------------------------------------------------------------------
    def send(self, msg: dict) -> None:
        if not self.writer.is_closing():
            self.writer.write(P.encode_message(msg))

    def warn(self, text: str, *args) -> None:
        self.warnings.warn(text, *args)

    async def _work(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on a worker thread (the loop serves the other clients meanwhile). A client that goes away
        while its work waits is let go at once (ConnectionResetError), so hit-and-run connections never pile
        up behind busy workers."""
        waiting = asyncio.wrap_future(self.server.pool.submit(self.cid, fn))
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=WORK_POLL_S)
            if done:
                return waiting.result()
            if self.writer.transport.is_closing() or self.reader.at_eof():
                waiting.cancel()
                raise ConnectionResetError("the client went away while its work waited")

    # ---- the car -----------------------------------------------------------------------------------
    async def _advance(self, dt_s: float) -> None:
        """Step the car, send lap events and one telemetry."""
        await self._send_telemetry(self._step(dt_s))

    def _step(self, dt_s: float):
        """Step the car and send the lap events of this step."""
        t = self.car.step(self.control, dt_s)
        self.clock_s += dt_s
        if self.start_progress is not None and (
            t.progress_m >= 0.0 if self.start_progress < 0.0 else t.speed_mps > 0.0
        ):
            # the car pulls away from the start line (or, placed elsewhere, first passes it): gym-donkeycar
            # times laps between these crossings
            self.start_progress = None
            self.send(P.collision_with_starting_line(self.clock_s))
        if t.lap_time_s is not None:
            self.send(P.collision_with_starting_line(self.clock_s))
            self.send(P.cross_start(t.lap_time_s))
            self.log.info("client %d: lap %d in %.2f s", self.cid, t.laps_completed, t.lap_time_s)
        return t

    async def _send_telemetry(self, t) -> None:
        sim, fmt, motion = self.car, self.image_format, P.motion_between(self.prev, t)

        def build() -> bytes:
            return P.encode_telemetry(t, P.encode_image(sim.render(), fmt), motion)

        cam = self.camera
        inline = fmt.encoding == "JPG" and cam.img_w * cam.img_h <= INLINE_FRAME_PIXELS
        data = build() if inline else await self._work(build)
        if not self.writer.is_closing():
            self.writer.write(data)
        self.prev = t

    async def _stream(self) -> None:
        """Asynchronous mode: real-time physics, one telemetry every 1/stream_hz seconds. A frame is only
        written when the previous ones have left the server's queue: a client that reads slowly gets the
        newest frame instead of a backlog (the car drives on; only frames are skipped)."""
        loop = asyncio.get_running_loop()
        period = 1.0 / self.server.stream_hz
        due = loop.time()
        while True:
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))
            if loop.time() - due > 5 * period:  # starved of CPU: skip ahead instead of bursting
                due = loop.time()
            try:
                async with self.lock:
                    if self.writer.transport.get_write_buffer_size() > 0:
                        self.dropped_frames += 1
                        if self.dropped_frames in (1, 100, 10000):
                            self.warn(
                                "not keeping up with its telemetry; %d frames dropped so far",
                                self.dropped_frames,
                            )
                        self._step(period)
                    else:
                        await self._advance(period)
            except ConnectionError:  # gone: the read loop ends the session
                self.closing = True
                return
            except Exception:
                self.log.exception("client %d: internal error while streaming; closing this client", self.cid)
                self.closing = True
                self.writer.close()
                return

    def _start_stream(self) -> None:
        self._stop_stream()
        if not self.synchronous and self.sim is not None:
            self.stream = asyncio.get_running_loop().create_task(self._stream())

    def _stop_stream(self) -> None:
        if self.stream is not None:
            self.stream.cancel()
            self.stream = None

    def close(self) -> None:
        self._stop_stream()
        self.sim = None
        self.warnings.flush()

    # ---- inbound -----------------------------------------------------------------------------------
    async def handle(self, msg: dict) -> None:
        kind = msg["msg_type"]
        handler = getattr(self, "on_" + kind, None) if kind.isidentifier() else None
        if handler is None:
            self.warn("unknown msg_type %r ignored", kind[:60])
        elif kind in _SCENE_ONLY and self.sim is None:
            self.warn("%s needs a loaded scene (send load_scene first); ignored", kind)
        else:
            await handler(msg)

    async def on_get_protocol_version(self, msg: dict) -> None:
        self.send(P.protocol_version())

    async def on_get_scene_names(self, msg: dict) -> None:
        self.send(P.scene_names(SCENE_NAMES))

    async def on_load_scene(self, msg: dict) -> None:
        try:
            name = P.parse_scene_name(msg, SCENE_NAMES)
        except P.ProtocolError as e:
            # answer with the valid names: gym-donkeycar then stops with "Scene name ... not in scene list"
            self.warn("load_scene: %s", e)
            self.send(P.scene_names(SCENE_NAMES))
            return
        if self.sim is not None:
            self.log.info("client %d: leaving scene %s for %s", self.cid, self.scene, name)
        camera, seed = self.camera, self.server.seed
        self._load(await self._work(lambda: Sim(name, camera=camera, seed=seed)), name)
        self.synchronous = False  # a new car streams, as each car in the Unity sim starts asynchronous
        self.log.info("client %d: car loaded in %s", self.cid, name)
        self.send(P.car_loaded())
        self._start_stream()

    def _load(self, sim: Sim, name: str) -> None:
        self.sim, self.scene = sim, name
        self.control, self.prev, self.clock_s = Control(), None, 0.0
        self.start_progress = sim.telemetry.progress_m

    async def on_exit_scene(self, msg: dict) -> None:
        self._stop_stream()
        self.sim, self.scene = None, None
        self.send(P.scene_selection_ready())

    async def on_quit_app(self, msg: dict) -> None:
        self.log.info("client %d: quit_app; closing this client (the server keeps running)", self.cid)
        self.closing = True

    async def on_control(self, msg: dict) -> None:
        control, warnings = P.parse_control(msg)
        for w in warnings:
            self.warn("control: %s", w)
        self.control = control
        if self.synchronous:
            await self._advance(self.time_step_s)

    async def on_reset_car(self, msg: dict) -> None:
        self.car.reset()
        self.control, self.prev = Control(brake=1.0), None  # Unity: foot brake on reset
        self.start_progress = self.car.telemetry.progress_m
        if self.synchronous:
            await self._send_telemetry(self.car.telemetry)

    async def on_step_mode(self, msg: dict) -> None:
        self.synchronous, self.time_step_s = P.parse_step_mode(msg, self.time_step_s)
        self.log.info(
            "client %d: %s mode%s",
            self.cid,
            "synchronous" if self.synchronous else "asynchronous",
            f", time_step {self.time_step_s} s" if self.synchronous else "",
        )
        self._start_stream()

    async def on_car_config(self, msg: dict) -> None:
        self.log.info(
            "client %d: car_config body_style=%r car_name=%r",
            self.cid,
            str(msg.get("body_style"))[:60],
            str(msg.get("car_name"))[:60],
        )

    async def on_racer_info(self, msg: dict) -> None:
        self.log.info(
            "client %d: racer_info racer_name=%r car_name=%r",
            self.cid,
            str(msg.get("racer_name"))[:60],
            str(msg.get("car_name"))[:60],
        )

    async def on_cam_config(self, msg: dict) -> None:
        values, warnings = P.normalize_cam_config(msg)
        fmt, more = P.ImageFormat.from_cam_config(msg, self.image_format)
        for w in warnings + more:
            self.warn("cam_config: %s", w)
        for key in ("fish_eye_x", "fish_eye_y", "rot_y", "rot_z"):
            if values.get(key):
                self.warn("cam_config: %s is not simulated; ignored", key)
        try:
            camera = CameraParams.from_cam_config(values, self.camera)
        except ValueError as e:
            self.warn("cam_config rejected, camera unchanged: %s", e)
            return
        limit = self.server.limits.max_camera_pixels
        if camera.img_w * camera.img_h > limit:
            self.warn(
                "cam_config refused, camera unchanged: %dx%d is %d pixels, over this twin's limit of %d "
                "(pitlane twin serve --max-camera-pixels)",
                camera.img_w,
                camera.img_h,
                camera.img_w * camera.img_h,
                limit,
            )
            return
        if camera != self.camera:
            car = self.car
            await self._work(lambda: car.set_camera(camera))
        self.camera, self.image_format = camera, fmt
        self.log.info(
            "client %d: camera %dx%d fov %.0f deg, %s",
            self.cid,
            camera.img_w,
            camera.img_h,
            camera.fov_deg,
            fmt.encoding,
        )

    async def on_cam_config_b(self, msg: dict) -> None:
        self.warn("cam_config_b: a second camera is not simulated; ignored")

    async def on_lidar_config(self, msg: dict) -> None:
        self.log.info(
            "client %d: lidar_config accepted; the twin has no lidar, telemetry carries none", self.cid
        )

    async def on_set_position(self, msg: dict) -> None:
        x, y, yaw = P.parse_set_position(msg)
        if yaw is None:  # Unity sets the identity rotation: facing +z (north)
            yaw = P.twin_yaw_rad(0.0)
        self.car.set_pose(x, y, yaw)
        self.prev, self.start_progress = None, self.car.telemetry.progress_m

    async def on_node_position(self, msg: dict) -> None:
        index = P.parse_int(msg.get("index"), "index")
        track = self.car.track
        if not 0 <= index < track.total_nodes:
            raise P.ProtocolError(f"index {index} outside 0..{track.total_nodes - 1}")
        x, y = track.centerline[index]
        self.send(P.node_position(index, x, y, float(track.heading[index])))

    async def on_regen_road(self, msg: dict) -> None:
        seed = P.parse_int(msg.get("rand_seed", 0), "rand_seed")
        if self.scene != "generated_road":
            self.warn("regen_road only regenerates generated_road (scene is %s); ignored", self.scene)
            return
        camera, server_seed = self.camera, self.server.seed
        self._load(
            await self._work(
                lambda: Sim(load_scene("generated_road", rand_seed=seed), camera=camera, seed=server_seed)
            ),
            "generated_road",
        )
        self.log.info("client %d: generated_road regenerated with rand_seed %d", self.cid, seed)


class TwinServer:
    """The simulator server. `start()` runs it in a background thread (tests use port 0); `serve_forever()`
    runs it in the calling thread."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9091,
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
        self._clients: dict[int, _Session] = {}
        self._refusals = _LogLimit(self.log, "", self.limits.log_lines, self.limits.log_interval_s)
        self.refused_clients = 0
        self._pool: _FairPool | None = None
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
    def pool(self) -> _FairPool:
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
        self._pool = _FairPool(self.limits.worker_threads)
        lim = self.limits
        self.log.info(
            "pitlane twin listening on %s:%d (telemetry %.0f Hz, seed %d; limits: %d clients, cameras up to %d "
            "px, %g messages/s, %g scene loads/min, idle %g s, %d KiB send buffer, %d worker threads)",
            self.host,
            self._port,
            self.stream_hz,
            self.seed,
            lim.max_clients,
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
        if len(self._sessions) >= self.limits.max_clients:
            self.refused_clients += 1
            self._refusals.warn(
                "refused a connection from %s: %d clients connected, this twin's limit "
                "(pitlane twin serve --max-clients)",
                peer,
                len(self._sessions),
            )
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            return
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
        session = _Session(self, cid, reader, writer)
        self._clients[cid] = session
        splitter = P.MessageSplitter()
        loop = asyncio.get_running_loop()
        idle_s = self.limits.idle_timeout_s or None
        last_message = loop.time()
        reason = "disconnected"
        try:
            await asyncio.sleep(GREETING_DELAY_S)
            session.send(P.scene_selection_ready())
            while not session.closing:
                try:
                    async with asyncio.timeout(
                        None if idle_s is None else last_message + idle_s - loop.time()
                    ):
                        data = await reader.read(READ_CHUNK)
                except TimeoutError:
                    reason = f"sent no complete message for {idle_s:g} s; closed (pitlane twin serve --idle-timeout)"
                    self.log.warning("client %d: %s", cid, reason)
                    break
                if not data:
                    break
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
        except _NotReading:
            reason = (
                f"read nothing for {idle_s:g} s with data waiting; closed (pitlane twin serve --idle-timeout)"
            )
            self.log.warning("client %d: %s", cid, reason)
        except (ConnectionError, OSError) as e:
            reason = f"connection lost ({e.__class__.__name__}: {e})"
        except asyncio.CancelledError:
            reason = "server stopping"
        except Exception:  # noqa: BLE001 - one client's failure must not reach the server
            self.log.exception("client %d: internal error; closing this client", cid)
            reason = "closed after an internal error"
        finally:
            if splitter.pending_bytes:
                self.log.warning(
                    "client %d: went away mid-message; %d bytes of an unfinished message discarded",
                    cid,
                    splitter.pending_bytes,
                )
            session.close()
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):  # closing anyway
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            self._sessions.pop(cid, None)
            self._clients.pop(cid, None)
            self.pool.forget(cid)
            self.log.info("client %d: %s", cid, reason)

    async def _drain(self, session: _Session) -> None:
        """Wait while the client's queue is over the send buffer (TCP back-pressure: its next messages wait);
        a client that reads nothing for the idle timeout is closed."""
        idle_s = self.limits.idle_timeout_s or None
        try:
            async with asyncio.timeout(idle_s):
                await session.writer.drain()
        except TimeoutError:
            raise _NotReading from None

    async def _admit(self, session: _Session, item) -> None:
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

    async def _dispatch(self, session: _Session, item) -> None:
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
    port: int = 9091,
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


def main(argv: list[str] | None = None) -> int:
    """`python -m pitlane.twin.server [--host H] [--port P] [--hz F] [--seed S] [limits]` (bench, debugging)."""
    import argparse

    from pitlane.twin.limits import add_limit_arguments, limits_from_args

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9091)
    ap.add_argument("--hz", type=float, default=CONTROL_HZ, help="telemetry rate in asynchronous mode [Hz]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="log warnings only")
    add_limit_arguments(ap)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        serve(
            args.host,
            args.port,
            stream_hz=args.hz,
            seed=args.seed,
            limits=limits_from_args(args),
            on_ready=lambda port: print(f"listening on {args.host}:{port}", flush=True),
        )
    except UserError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
