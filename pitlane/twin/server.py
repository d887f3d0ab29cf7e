"""The twin as a DonkeyCar simulator: a TCP server speaking docs/sim-protocol.md, one car (`Sim`) per client.

One asyncio event loop serves every client. Each connection starts in the menu (`scene_selection_ready`),
loads a scene (`car_loaded`) and then either streams telemetry in real time at `stream_hz` (asynchronous mode,
the default, like the Unity sim's 20 Hz) or answers each `control` with exactly one telemetry after exactly
`time_step` seconds of simulated time (synchronous mode, `step_mode`; `reset_car` then answers one telemetry
too). A bad message is logged with the client's id and skipped; an unexpected error is logged with its
traceback and touches only that client; the server itself never stops for a client. Rendering and JPEG
encoding run on the loop (well under a millisecond per 160x120 frame); bursts of messages yield between
messages so one busy client cannot starve the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import threading

from pitlane.errors import UserError
from pitlane.twin import protocol as P
from pitlane.twin.camera import CameraParams
from pitlane.twin.scenes import SCENE_NAMES, load_scene
from pitlane.twin.sim import Sim
from pitlane.twin.vehicle import Control
from pitlane.twin.world import CONTROL_HZ

LOG = logging.getLogger("pitlane.twin.server")
MAX_WRITE_BUFFER = (
    4 << 20
)  # [bytes] above this a slow reader misses streamed frames instead of piling them up
READ_CHUNK = 1 << 16  # [bytes]
# gym-donkeycar starts its reader thread before it registers its handler (SimClient.__init__), and drops what
# it would answer in between; the Unity sim greets a frame later, so the twin waits a moment too.
GREETING_DELAY_S = 0.02  # [s]
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


class _Session:
    """One client: its menu/scene state, its car and how it wants frames."""

    def __init__(self, server: TwinServer, cid: int, writer: asyncio.StreamWriter):
        self.server, self.cid, self.writer, self.log = server, cid, writer, server.log
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
        self.dropped_frames = 0

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
        self.log.warning("client %d: " + text, self.cid, *args)

    # ---- the car -----------------------------------------------------------------------------------
    def _advance(self, dt_s: float) -> None:
        """Step the car, send lap events and one telemetry."""
        self._send_telemetry(self._step(dt_s))

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

    def _send_telemetry(self, t) -> None:
        image = P.encode_image(self.car.render(), self.image_format)
        if not self.writer.is_closing():
            self.writer.write(P.encode_telemetry(t, image, P.motion_between(self.prev, t)))
        self.prev = t

    async def _stream(self) -> None:
        """Asynchronous mode: real-time physics, one telemetry every 1/stream_hz seconds."""
        loop = asyncio.get_running_loop()
        period = 1.0 / self.server.stream_hz
        due = loop.time()
        while True:
            due += period
            await asyncio.sleep(max(0.0, due - loop.time()))
            if loop.time() - due > 5 * period:  # starved of CPU: skip ahead instead of bursting
                due = loop.time()
            try:
                if self.writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                    self.dropped_frames += 1
                    if self.dropped_frames in (1, 100, 10000):
                        self.warn("not reading its telemetry; %d frames dropped so far", self.dropped_frames)
                    self._step(period)  # the car drives on in real time; only the frame is skipped
                else:
                    self._advance(period)
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

    # ---- inbound -----------------------------------------------------------------------------------
    def handle(self, msg: dict) -> None:
        kind = msg["msg_type"]
        handler = getattr(self, "on_" + kind, None) if kind.isidentifier() else None
        if handler is None:
            self.warn("unknown msg_type %r ignored", kind[:60])
        elif kind in _SCENE_ONLY and self.sim is None:
            self.warn("%s needs a loaded scene (send load_scene first); ignored", kind)
        else:
            handler(msg)

    def on_get_protocol_version(self, msg: dict) -> None:
        self.send(P.protocol_version())

    def on_get_scene_names(self, msg: dict) -> None:
        self.send(P.scene_names(SCENE_NAMES))

    def on_load_scene(self, msg: dict) -> None:
        try:
            name = P.parse_scene_name(msg, SCENE_NAMES)
        except P.ProtocolError as e:
            # answer with the valid names: gym-donkeycar then stops with "Scene name ... not in scene list"
            self.warn("load_scene: %s", e)
            self.send(P.scene_names(SCENE_NAMES))
            return
        if self.sim is not None:
            self.log.info("client %d: leaving scene %s for %s", self.cid, self.scene, name)
        self._load(Sim(name, camera=self.camera, seed=self.server.seed), name)
        self.synchronous = False  # a new car streams, as each car in the Unity sim starts asynchronous
        self.log.info("client %d: car loaded in %s", self.cid, name)
        self.send(P.car_loaded())
        self._start_stream()

    def _load(self, sim: Sim, name: str) -> None:
        self.sim, self.scene = sim, name
        self.control, self.prev, self.clock_s = Control(), None, 0.0
        self.start_progress = sim.telemetry.progress_m

    def on_exit_scene(self, msg: dict) -> None:
        self._stop_stream()
        self.sim, self.scene = None, None
        self.send(P.scene_selection_ready())

    def on_quit_app(self, msg: dict) -> None:
        self.log.info("client %d: quit_app; closing this client (the server keeps running)", self.cid)
        self.closing = True

    def on_control(self, msg: dict) -> None:
        control, warnings = P.parse_control(msg)
        for w in warnings:
            self.warn("control: %s", w)
        self.control = control
        if self.synchronous:
            self._advance(self.time_step_s)

    def on_reset_car(self, msg: dict) -> None:
        self.car.reset()
        self.control, self.prev = Control(brake=1.0), None  # Unity: foot brake on reset
        self.start_progress = self.car.telemetry.progress_m
        if self.synchronous:
            self._send_telemetry(self.car.telemetry)

    def on_step_mode(self, msg: dict) -> None:
        self.synchronous, self.time_step_s = P.parse_step_mode(msg, self.time_step_s)
        self.log.info(
            "client %d: %s mode%s",
            self.cid,
            "synchronous" if self.synchronous else "asynchronous",
            f", time_step {self.time_step_s} s" if self.synchronous else "",
        )
        self._start_stream()

    def on_car_config(self, msg: dict) -> None:
        self.log.info(
            "client %d: car_config body_style=%r car_name=%r",
            self.cid,
            msg.get("body_style"),
            msg.get("car_name"),
        )

    def on_racer_info(self, msg: dict) -> None:
        self.log.info(
            "client %d: racer_info racer_name=%r car_name=%r",
            self.cid,
            msg.get("racer_name"),
            msg.get("car_name"),
        )

    def on_cam_config(self, msg: dict) -> None:
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
        self.camera, self.image_format = camera, fmt
        self.car.set_camera(camera)
        self.log.info(
            "client %d: camera %dx%d fov %.0f deg, %s",
            self.cid,
            camera.img_w,
            camera.img_h,
            camera.fov_deg,
            fmt.encoding,
        )

    def on_cam_config_b(self, msg: dict) -> None:
        self.warn("cam_config_b: a second camera is not simulated; ignored")

    def on_lidar_config(self, msg: dict) -> None:
        self.log.info(
            "client %d: lidar_config accepted; the twin has no lidar, telemetry carries none", self.cid
        )

    def on_set_position(self, msg: dict) -> None:
        x, y, yaw = P.parse_set_position(msg)
        if yaw is None:  # Unity sets the identity rotation: facing +z (north)
            yaw = P.twin_yaw_rad(0.0)
        self.car.set_pose(x, y, yaw)
        self.prev, self.start_progress = None, self.car.telemetry.progress_m

    def on_node_position(self, msg: dict) -> None:
        index = P.parse_int(msg.get("index"), "index")
        track = self.car.track
        if not 0 <= index < track.total_nodes:
            raise P.ProtocolError(f"index {index} outside 0..{track.total_nodes - 1}")
        x, y = track.centerline[index]
        self.send(P.node_position(index, x, y, float(track.heading[index])))

    def on_regen_road(self, msg: dict) -> None:
        seed = P.parse_int(msg.get("rand_seed", 0), "rand_seed")
        if self.scene != "generated_road":
            self.warn("regen_road only regenerates generated_road (scene is %s); ignored", self.scene)
            return
        self._load(
            Sim(load_scene("generated_road", rand_seed=seed), camera=self.camera, seed=self.server.seed),
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
        log: logging.Logger | None = None,
    ):
        if not 0.1 <= stream_hz <= 1000.0:
            raise UserError(f"stream rate {stream_hz} Hz outside 0.1..1000")
        self.host, self.stream_hz, self.seed = host, float(stream_hz), int(seed)
        self.log = log or LOG
        self._requested_port = port
        self._port: int | None = None
        self._ids = itertools.count(1)
        self._sessions: dict[int, asyncio.Task] = {}
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
        self.log.info(
            "pitlane twin listening on %s:%d (telemetry %.0f Hz, seed %d)",
            self.host,
            self._port,
            self.stream_hz,
            self.seed,
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
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)

    # ---- one client --------------------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cid = next(self._ids)
        task = asyncio.current_task()
        if task is not None:
            self._sessions[cid] = task
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.log.info("client %d connected from %s", cid, writer.get_extra_info("peername"))
        session = _Session(self, cid, writer)
        splitter = P.MessageSplitter()
        reason = "disconnected"
        try:
            await asyncio.sleep(GREETING_DELAY_S)
            session.send(P.scene_selection_ready())
            while not session.closing:
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                items = splitter.feed(data)
                for item in items:
                    self._dispatch(session, item)
                    if session.closing:
                        reason = "closed"
                        break
                    if len(items) > 1:  # a burst (one chunk can hold ~800 controls): let other clients run
                        await writer.drain()
                        await asyncio.sleep(0)
                await writer.drain()
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
            self.log.info("client %d: %s", cid, reason)

    def _dispatch(self, session: _Session, item) -> None:
        if isinstance(item, P.ProtocolError):
            session.warn("%s", item)
            return
        try:
            session.handle(item)
        except (P.ProtocolError, ValueError, TypeError) as e:
            session.warn("bad %s message: %s", item["msg_type"], e)
        except Exception:  # noqa: BLE001 - a bug handling one message must not end the session or the server
            self.log.exception(
                "client %d: internal error handling %s; message skipped", session.cid, item["msg_type"]
            )


def serve(
    host: str = "127.0.0.1",
    port: int = 9091,
    *,
    stream_hz: float = CONTROL_HZ,
    seed: int = 0,
    log: logging.Logger | None = None,
    on_ready=None,
) -> None:
    """Run the twin simulator server until Ctrl-C or SIGTERM. Blocks; `on_ready(port)` once listening.

    The process is the server's: OpenCV runs single-threaded, since its thread pool costs more than it saves
    on 160x120 frames and takes cores from the clients (bench/bench_protocol.py: ~1.3-1.6x the round trips
    on two cores)."""
    import cv2

    cv2.setNumThreads(1)
    TwinServer(host, port, stream_hz=stream_hz, seed=seed, log=log).serve_forever(on_ready)


def main(argv: list[str] | None = None) -> int:
    """`python -m pitlane.twin.server [--host H] [--port P] [--hz F] [--seed S]` (bench and debugging)."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9091)
    ap.add_argument("--hz", type=float, default=CONTROL_HZ, help="telemetry rate in asynchronous mode [Hz]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="log warnings only")
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
            on_ready=lambda port: print(f"listening on {args.host}:{port}", flush=True),
        )
    except UserError as e:
        print(f"error: {e}")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
