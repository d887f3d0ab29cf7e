// pitlane operator console: logs in (POST /login with the car's token: a session cookie), then drives the
// car through donkeycar's /wsDrive websocket contract ({angle, throttle, drive_mode, recording, buttons});
// polls /status for telemetry and who drives. One driver at a time; STOP works for everyone.
// No dependencies.
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
  ws: null, held: new Set(), joy: null, padName: null, csrf: null, running: false, generation: 0,
  maxThrottle: 0.3, sent: { angle: 0, throttle: 0 }, recording: false,
  buttons: { stop: "w1", resume: "w2" }, wheel: { driver: null, you_drive: false },
};

// ---- login -------------------------------------------------------------------------------------------
async function checkSession() {
  try {
    const response = await fetch("/session", { cache: "no-store" });
    const session = await response.json();
    if (session.logged_in) start(session);
    else showLogin("");
  } catch (err) {
    showLogin("car unreachable");
  }
}

function showLogin(message) {
  state.running = false;
  $("console").hidden = true;
  $("login").hidden = false;
  $("logout").hidden = true;
  $("video").removeAttribute("src");
  $("login-error").textContent = message;
  $("token").value = "";
  setBadge($("client"), "off", "not logged in");
  $("token").focus();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const response = await fetch("/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
  }).catch(() => null);
  const answer = response ? await response.json().catch(() => ({})) : { error: "car unreachable" };
  if (response && response.ok) { $("token").value = ""; start(answer); }
  else showLogin(answer.error || "login failed");
});

$("logout").addEventListener("click", async () => {
  await post("/logout", {});
  if (state.ws) state.ws.close();
  showLogin("logged out");
});

function start(session) {
  state.csrf = session.csrf;
  setBadge($("client"), "ok", session.client);
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = false;
  $("video").src = "/video";
  if (state.running) return;
  state.running = true;
  state.generation += 1; // a poll loop from before a logout ends instead of running twice
  connect();
  pollStatus(state.generation);
}

// ---- link to the car ---------------------------------------------------------------------------------
function connect() {
  if (!state.running) return;
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/wsDrive`);
  ws.onopen = () => setBadge($("link"), "ok", "connected");
  ws.onclose = () => {
    setBadge($("link"), "off", "reconnecting…");
    state.ws = null;
    if (state.running) setTimeout(connect, 1000);
  };
  ws.onmessage = (event) => {
    const data = JSON.parse(event.data);
    if (data.driveMode !== undefined) showMode(data.driveMode);
    if (data.recording !== undefined) showRecording(data.recording);
    if (data.num_records !== undefined) $("records").textContent = data.num_records;
    if (data.refused !== undefined) notice(data.refused);
    if (data.driver !== undefined) showWheel(data);
  };
  state.ws = ws;
}

function post(url, message) {
  return fetch(url, {
    method: "POST", body: JSON.stringify(message),
    headers: { "Content-Type": "application/json", "X-Pitlane-CSRF": state.csrf || "" },
  }).catch(() => null);
}

async function send(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) { state.ws.send(JSON.stringify(message)); return; }
  const response = await post("/drive", message); // donkeycar's HTTP contract
  if (response && response.status === 401) showLogin("logged out by the car (it restarted?)");
  else if (response && !response.ok) notice((await response.json().catch(() => ({}))).error || "refused");
}

let noticeTimer = null;
function notice(text) {
  $("notice").textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { $("notice").textContent = ""; }, 4000);
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
  if (!state.running) return;
  const cmd = fromKeys() || state.joy || fromGamepad() || { angle: 0, throttle: 0 };
  if (state.wheel.driver && !state.wheel.you_drive) return; // another operator drives: watch (STOP still works)
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

const typing = (event) => !state.running || (event.target.tagName === "INPUT" && event.target.type !== "range");
document.addEventListener("keydown", (event) => {
  if (typing(event)) return;
  if (event.code === "Space") { event.preventDefault(); stop(); return; }
  const key = KEYS[event.code];
  if (!key) return;
  event.preventDefault();
  state.held.add(key);
  controlTick();
});
document.addEventListener("keyup", (event) => {
  if (typing(event)) return;
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
$("release").addEventListener("click", () => { send({ angle: 0, throttle: 0 }); send({ release: true }); });
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

function showWheel(w) {
  state.wheel = { driver: w.driver, you_drive: w.you_drive };
  if (w.you_drive) setBadge($("wheel"), "ok", "you drive");
  else if (w.driver) setBadge($("wheel"), "off", `watching: ${w.driver} drives`);
  else setBadge($("wheel"), "", "wheel free");
  $("release").disabled = !w.you_drive;
  const stoppers = w.stopped_by || [];
  $("resume").title = stoppers.length ? `stopped by ${stoppers.join(", ")}` : "";
}

function showStatus(s) {
  state.buttons = s.buttons || state.buttons;
  const console_ = s.console || {};
  showWheel(console_);
  const cap = console_.user_max_throttle;
  if (typeof cap === "number" && Number($("max-throttle").max) !== cap) {
    $("max-throttle").max = cap;
    state.maxThrottle = Math.min(state.maxThrottle, cap);
    $("max-throttle").value = state.maxThrottle;
    $("max-val").textContent = state.maxThrottle.toFixed(2);
  }
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
  const fresh = model.freshness && model.freshness !== "current" ? ` (${model.freshness})` : "";
  $("model-state").textContent = (model.state || (model.file ? "loaded" : "–")) + fresh;  // stale, frozen
  $("model-error-row").hidden = !model.error;
  $("model-error").textContent = model.error || "";
}

async function pollStatus(generation) {
  if (!state.running || generation !== state.generation) return;
  try {
    const response = await fetch("/status", { cache: "no-store" });
    if (response.status === 401) { showLogin("logged out by the car (it restarted?)"); return; }
    if (response.ok) showStatus(await response.json());
  } catch (err) {
    setBadge($("link"), "off", "car unreachable");
  }
  setTimeout(() => pollStatus(generation), STATUS_PERIOD_MS);
}

setInterval(controlTick, CONTROL_PERIOD_MS);
checkSession();
