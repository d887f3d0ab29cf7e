"""One client of the twin server: its menu/scene state, its car, how it wants frames, and its handlers.

`ClientSession` answers each message of docs/sim-protocol.md for one connection (an ``on_<msg_type>``
method per message) and, in asynchronous mode, streams its telemetry. The server (`pitlane.twin.server`)
owns the socket, the read loop and the rate limits; the session owns what the client sees. Expensive work
(scene loads, big frames, camera changes) runs on the server's shared `FairPool`, so the loop stays free
for the other clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

from pitlane.twin import protocol as P
from pitlane.twin.camera import CameraParams
from pitlane.twin.limits import FairPool, LogLimit, ServerLimits, TokenBucket
from pitlane.twin.scenes import SCENE_NAMES, load_scene
from pitlane.twin.sim import Sim
from pitlane.twin.vehicle import Control

# frames up to this size, as JPEG, render and encode on the loop (measured ~0.4 ms at 160x120 on one core);
# a worker thread costs more than that in hand-over. Bigger ones, and PNG/TGA, go to a worker.
INLINE_FRAME_PIXELS = 320 * 240  # [px]
WORK_POLL_S = 0.1  # [s] how often a client whose work waits for a worker is checked for having gone away
# messages that only make sense with a car in a scene
SCENE_ONLY = frozenset(
    {
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
)


class Host(Protocol):
    """What a session needs of its server (`pitlane.twin.server.TwinServer`): settings, log, worker pool."""

    log: logging.Logger
    limits: ServerLimits
    stream_hz: float  # [Hz] telemetry rate in asynchronous mode
    seed: int  # the cars' seed

    @property
    def pool(self) -> FairPool: ...


class ClientSession:
    """One client: its menu/scene state, its car and how it wants frames."""

    def __init__(self, server: Host, cid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
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
        self.warnings = LogLimit(self.log, f"client {cid}: ", limits.log_lines, limits.log_interval_s)
        self.messages = TokenBucket(limits.messages_per_s, max(1.0, limits.messages_per_s))
        # scene loads: a burst of 10 s worth (at least 2), then the rate
        self.loads = TokenBucket(
            limits.scene_loads_per_min / 60.0, max(2.0, limits.scene_loads_per_min / 6.0)
        )
        self.dropped_frames = 0
        self.throttled = 0  # messages that waited for the message rate limit

    @property
    def car(self) -> Sim:
        """The loaded car (handlers of SCENE_ONLY messages only run with one)."""
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
        elif kind in SCENE_ONLY and self.sim is None:
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
