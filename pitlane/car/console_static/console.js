// pitlane operator console: drives the car through donkeycar's /wsDrive websocket contract
// ({angle, throttle, drive_mode, recording, buttons}); polls /status for telemetry. No dependencies.
"use strict";

const $ = (id) => document.getElementById(id);
const KEYS = {
  ArrowUp: "up", KeyW: "up", ArrowDown: "down", KeyS: "down",
  ArrowLeft: "left", KeyA: "left", ArrowRight: "right", KeyD: "right",
};
const CONTROL_PERIOD_MS = 50;
const STATUS_PERIOD_MS = 250;
const DEADZONE = 0.08;

const state = {
  ws: null, held: new Set(), joy: null, padName: null,
  maxThrottle: 0.3, sent: { angle: 0, throttle: 0 }, recording: false,
  buttons: { stop: "w1", resume: "w2" },
};

// ---- link to the car ---------------------------------------------------------------------------------
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/wsDrive`);
  ws.onopen = () => setBadge($("link"), "ok", "connected");
  ws.onclose = () => { setBadge($("link"), "off", "reconnecting…"); state.ws = null; setTimeout(connect, 1000); };
  ws.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.driveMode !== undefined) showMode(data.driveMode);
    if (data.recording !== undefined) showRecording(data.recording);
    if (data.num_records !== undefined) $("records").textContent = data.num_records;
  };
  state.ws = ws;
}

function send(message) {
  const body = JSON.stringify(message);
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(body);
  else fetch("/drive", { method: "POST", body }).catch(() => {}); // donkeycar's HTTP contract
}

// ---- driving -----------------------------------------------------------------------------------------
function fromKeys() {
  if (!state.held.size) return null;
  const has = (k) => (state.held.has(k) ? 1 : 0);
  return { angle: has("right") - has("left"), throttle: (has("up") - has("down")) * state.maxThrottle };
}

function fromGamepad() {
  const pads = navigator.getGamepads ? [...navigator.getGamepads()].filter(Boolean) : [];
  const pad = pads[0];
  const name = pad ? pad.id.slice(0, 40) : null;
  if (name !== state.padName) { state.padName = name; $("pad").textContent = name ? `gamepad: ${name}` : "no gamepad"; }
  if (!pad) return null;
  if (pad.buttons[1] && pad.buttons[1].pressed) { stop(); return null; }
  const dz = (v) => (Math.abs(v) < DEADZONE ? 0 : v);
  const angle = dz(pad.axes[0] || 0);
  const triggers = (pad.buttons[7] ? pad.buttons[7].value : 0) - (pad.buttons[6] ? pad.buttons[6].value : 0);
  const stick = -dz(pad.axes[1] || 0);
  const throttle = Math.abs(triggers) > DEADZONE ? triggers : stick;
  if (!angle && !throttle) return null;
  return { angle, throttle: throttle * state.maxThrottle };
}

function controlTick() {
  const cmd = fromKeys() || state.joy || fromGamepad() || { angle: 0, throttle: 0 };
  const angle = Math.max(-1, Math.min(1, cmd.angle));
  const throttle = Math.max(-1, Math.min(1, cmd.throttle));
  if (angle !== state.sent.angle || throttle !== state.sent.throttle) {
    send({ angle, throttle });
    state.sent = { angle, throttle };
  }
}

function stop() {
  state.held.clear();
  state.joy = null;
  moveKnob(0, 0);
  state.sent = { angle: 0, throttle: 0 };
  send({ angle: 0, throttle: 0, buttons: { [state.buttons.stop]: true } });
  setBadge($("watchdog"), "bad", "STOPPING…");
}

document.addEventListener("keydown", (event) => {
  if (event.code === "Space") { event.preventDefault(); stop(); return; }
  const key = KEYS[event.code];
  if (!key) return;
  event.preventDefault();
  state.held.add(key);
  controlTick();
});
document.addEventListener("keyup", (event) => {
  const key = KEYS[event.code];
  if (!key) return;
  state.held.delete(key);
  controlTick();
});
window.addEventListener("blur", () => { state.held.clear(); controlTick(); });

// touch (or mouse) joystick: x steers, up drives forward; released, it springs back to zero
function moveKnob(x, y) {
  $("knob").style.transform = `translate(${x * 48}px, ${y * 48}px)`;
}
function joyAt(event) {
  const box = $("joy").getBoundingClientRect();
  let x = (event.clientX - box.left - box.width / 2) / (box.width / 2);
  let y = (event.clientY - box.top - box.height / 2) / (box.height / 2);
  const r = Math.hypot(x, y);
  if (r > 1) { x /= r; y /= r; }
  moveKnob(x, y);
  state.joy = { angle: x, throttle: -y * state.maxThrottle };
  controlTick();
}
$("joy").addEventListener("pointerdown", (event) => { $("joy").setPointerCapture(event.pointerId); joyAt(event); });
$("joy").addEventListener("pointermove", (event) => { if (state.joy) joyAt(event); });
for (const type of ["pointerup", "pointercancel"]) {
  $("joy").addEventListener(type, () => { state.joy = null; moveKnob(0, 0); controlTick(); });
}

// ---- controls ----------------------------------------------------------------------------------------
$("stop").addEventListener("click", stop);
$("resume").addEventListener("click", () => send({ buttons: { [state.buttons.resume]: true } }));
for (const button of $("modes").querySelectorAll("button")) {
  button.addEventListener("click", () => { send({ drive_mode: button.dataset.mode }); showMode(button.dataset.mode); });
}
$("record").addEventListener("click", () => { send({ recording: !state.recording }); showRecording(!state.recording); });
$("max-throttle").addEventListener("input", (event) => {
  state.maxThrottle = Number(event.target.value);
  $("max-val").textContent = state.maxThrottle.toFixed(2);
});

// ---- display -----------------------------------------------------------------------------------------
function setBadge(el, kind, text) { el.className = `badge ${kind}`; el.textContent = text; }
function showMode(mode) {
  for (const button of $("modes").querySelectorAll("button")) button.classList.toggle("active", button.dataset.mode === mode);
}
function showRecording(on) {
  state.recording = Boolean(on);
  $("record").classList.toggle("on", state.recording);
  $("record").textContent = `record: ${state.recording ? "ON" : "off"}`;
}
function bar(el, value) {
  const v = Math.max(-1, Math.min(1, value || 0));
  el.style.left = `${50 + Math.min(0, v) * 50}%`;
  el.style.width = `${Math.abs(v) * 50}%`;
}
const fmt = (v, digits, unit) => (v === null || v === undefined ? "–" : `${Number(v).toFixed(digits)}${unit}`);

function showStatus(s) {
  state.buttons = s.buttons || state.buttons;
  showMode(s.mode);
  showRecording(s.recording);
  $("records").textContent = s.num_records;
  $("profile").textContent = `profile ${s.profile || "–"}`;
  $("steer-val").textContent = fmt(s.steering, 2, "");
  $("thr-val").textContent = fmt(s.throttle, 2, "");
  bar($("steer-bar"), s.steering);
  bar($("thr-bar"), s.throttle);
  const wd = s.watchdog || {};
  if (wd.stopped) setBadge($("watchdog"), "bad", `STOPPED: ${wd.reason || "?"}`);
  else setBadge($("watchdog"), "ok", "watchdog ok");
  $("speed").textContent = fmt(s.speed_m_s, 2, " m/s");
  $("cte").textContent = fmt(s.cte_m, 3, " m");
  const laps = s.lap_times_s || [];
  $("laps").textContent = s.laps === null || s.laps === undefined ? "–" : s.laps;
  $("last-lap").textContent = laps.length ? fmt(laps[laps.length - 1], 2, " s") : "–";
  $("best-lap").textContent = laps.length ? fmt(Math.min(...laps), 2, " s") : "–";
  $("loop-hz").textContent = fmt(s.loop_hz, 1, " Hz");
  $("latency").textContent = fmt(s.pilot_latency_ms, 1, " ms");
  $("twin").textContent = s.twin_connected === null || s.twin_connected === undefined ? "–" : s.twin_connected ? "connected" : "lost";
  const model = s.model || {};
  $("model-file").textContent = model.file || "none";
  $("model-digest").textContent = model.digest || "–";
  $("model-serial").textContent = model.serial ?? "–";
  $("model-state").textContent = model.state || (model.file ? "loaded" : "–");
  $("model-error-row").hidden = !model.error;
  $("model-error").textContent = model.error || "";
}

async function pollStatus() {
  try {
    const response = await fetch("/status", { cache: "no-store" });
    if (response.ok) showStatus(await response.json());
  } catch (err) {
    setBadge($("link"), "off", "car unreachable");
  }
  setTimeout(pollStatus, STATUS_PERIOD_MS);
}

connect();
setInterval(controlTick, CONTROL_PERIOD_MS);
pollStatus();
