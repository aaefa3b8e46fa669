// The notifyq web demo: start jobs over HTTP, follow them live over one WebSocket.
//
// The page's link carries its keys in the fragment (never sent to a server):
//   #key=<enqueue key>&dashboard=<queue token>[&queue=<name>][&step_ms=<order step>]
// The queue is the `queue` parameter, else the queue of the dashboard token, else "demo".
//
// How a card stays exact: every job keeps the id of the last event it applied and ignores
// any event whose id is not newer (the same event can arrive twice: once on the job's own
// subscription, once on the queue's). A `state` message (or a `GET /jobs/<id>` answer)
// replaces the card's state and carries the event id it is as of. After a lost connection
// the page subscribes again with `since` = that id, and the gateway replays what it missed.

const params = new URLSearchParams(location.hash.slice(1));
const ENQUEUE_KEY = params.get("key") || "";
const DASHBOARD_TOKEN = params.get("dashboard") || "";
const QUEUE = params.get("queue") || tokenClaims(DASHBOARD_TOKEN)?.q || "demo";
const ORDER_STEP_MS = boundedInt(params.get("step_ms"), 10, 5000, 600);

const BACKOFF_MIN_MS = 250; // first reconnect delay; doubles on each failure...
const BACKOFF_MAX_MS = 4000; // ...up to this
const SILENCE_LIMIT_MS = 45_000; // nothing heard for this long (heartbeats come every 15 s): reconnect
const POLL_EVERY_MS = 1000; // GET /jobs/<id> for jobs not followed live
const STATS_EVERY_MS = 1000; // GET /queues/<q>/stats
const THROUGHPUT_WINDOW_MS = 5000;
const FEED_SIZE = 50;
const EARLY_SIZE = 200; // events kept for jobs that have no card yet
const ENDED = new Set(["completed", "dead", "cancelled"]);

const $ = (selector) => document.querySelector(selector);

// ------------------------------------------------------------------ small helpers

/** The claims of a token `<base64url JSON>.<signature>`, or null. Not verified here. */
function tokenClaims(token) {
  try {
    const payload = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "=")));
  } catch {
    return null;
  }
}

function boundedInt(text, low, high, fallback) {
  const value = Number.parseInt(text ?? "", 10);
  return Number.isFinite(value) ? Math.min(Math.max(value, low), high) : fallback;
}

/** Event ids are "<ms>-<seq>": compare them as a pair of integers. */
function idKey(id) {
  const [ms, seq] = String(id).split("-");
  return [BigInt(ms), BigInt(seq ?? 0)];
}

/** Is event id `a` newer than `b` (`b` null: nothing seen yet)? */
function isNewer(a, b) {
  if (b == null) return true;
  const [x, y] = [idKey(a), idKey(b)];
  return x[0] > y[0] || (x[0] === y[0] && x[1] > y[1]);
}

function dollars(cents) {
  return `$${(Number(cents) / 100).toFixed(2)}`;
}

function clock(ms) {
  const d = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

function errorText(error) {
  if (!error) return "";
  if (typeof error !== "object") return String(error);
  return `${error.type || "Error"}: ${error.message || ""}`.split("\n")[0];
}

function showNotice(text) {
  const notice = $("#notice");
  notice.textContent = text;
  notice.hidden = !text;
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function http(method, path, token, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new HttpError(response.status, data.error || response.statusText);
  return data;
}

// ------------------------------------------------------------------ jobs and their cards

/** Every job started from this page, by id. */
const jobs = new Map();

/** Events of jobs with no card yet: the queue's subscription can bring a job's first
 * events before the POST that started it has answered. A new card applies them. */
const early = [];

function newJob(id, token, payload) {
  const job = {
    id, token, payload, kind: payload.kind,
    state: "queued", attempt: 0, progress: null, result: undefined, error: null, retryMs: null,
    last: null, // the id of the newest event applied (or the one a state was as of)
    applied: [], // ids of the events applied, in order
    progressSeen: [], // progress values of the applied progress events
    history: ["queued"], // the states the card went through
    completions: 0, // how many times a completion was applied: 1 at most, ever
    live: false, // subscribed on the current socket (else followed by polling)
    lost: false, // the gateway refused it for good (gone, token expired)
    polling: false,
    el: document.importNode($("#job-card").content, true).firstElementChild,
  };
  job.el.dataset.jobId = id;
  job.el.dataset.kind = job.kind;
  job.el.dataset.payload = JSON.stringify(payload);
  job.el.querySelector(".kind").textContent = jobTitle(payload);
  job.el.querySelector(".progress").setAttribute("aria-label", `${jobTitle(payload)}: progress`);
  job.el.querySelector(".job-id").textContent = id;
  jobs.set(id, job);
  $("#jobs").prepend(job.el);
  $("#empty").hidden = true;
  render(job);
  for (const event of early) if (event.id === id) applyEvent(job, event);
  return job;
}

function jobTitle(payload) {
  switch (payload.kind) {
    case "order": return `Order #${payload.order_id} · ${dollars(payload.amount_cents)}`;
    case "sms": return `SMS to ${payload.to}`;
    default: return "A job that always fails";
  }
}

function setState(job, state) {
  if (!state || state === job.state) return;
  job.state = state;
  job.history.push(state);
}

function setProgress(job, value) {
  const percent = typeof value === "object" && value !== null ? value.percent : value;
  if (typeof percent === "number" && Number.isFinite(percent)) {
    job.progress = Math.min(Math.max(percent, 0), 100);
  }
}

function complete(job, result) {
  if (job.state === "completed") return; // rendered once, ever
  job.result = result;
  job.completions += 1;
  setState(job, "completed");
  announce(`${jobTitle(job.payload)}: completed. ${resultText(job)}`);
}

/** Tell screen readers how a job ended (the cards themselves are not a live region). */
function announce(text) {
  $("#announce").textContent = text;
}

/** Apply one event of the job's queue; false if it was seen already (or is older). */
function applyEvent(job, event) {
  if (!isNewer(event.event_id, job.last)) return false;
  job.last = event.event_id;
  job.applied.push(event.event_id);
  switch (event.type) {
    case "enqueued": setState(job, event.delay_ms ? "delayed" : "queued"); break;
    case "started":
      job.attempt = event.attempt;
      job.error = null;
      if (event.attempt > 1 && job.kind === "order") job.progress = 0;
      setState(job, "active");
      break;
    case "progress":
      setProgress(job, event.progress);
      if (job.progress !== null) job.progressSeen.push(job.progress);
      break;
    case "completed":
      if (job.state === "completed") job.completions += 1; // a second one: must never show
      complete(job, event.result);
      break;
    case "failed":
      job.error = event.error;
      if (event.retry) setState(job, "retrying");
      break;
    case "retrying": job.retryMs = event.delay_ms; setState(job, "retrying"); break;
    case "dead": case "cancelled":
      job.error = event.error;
      setState(job, event.type);
      announce(`${jobTitle(job.payload)}: ${event.type}. ${errorText(event.error)}`);
      break;
    default: break; // a type this page does not know: ignored, as docs/events.md asks
  }
  render(job);
  return true;
}

/** Replace the card's state with a snapshot (a `state` message, or `GET /jobs/<id>`). */
function applyState(job, state) {
  if (job.last !== null && isNewer(job.last, state.event_id)) return; // older than what we have
  job.last = state.event_id;
  job.attempt = state.attempt ?? job.attempt;
  if (state.progress !== undefined) setProgress(job, state.progress);
  job.error = state.error ?? null;
  if (state.state === "completed") complete(job, state.result);
  else setState(job, state.state);
  render(job);
}

function detailText(job) {
  switch (job.state) {
    case "queued": return job.attempt ? "back in the queue for another attempt" : "waiting for a worker";
    case "delayed": return "scheduled for later";
    case "active": return `attempt ${job.attempt || 1} running`;
    case "retrying": {
      const wait = job.retryMs != null ? `; retrying in ${(job.retryMs / 1000).toFixed(1)} s` : "; will retry";
      return `attempt ${job.attempt} failed${wait}`;
    }
    case "completed": return `completed on attempt ${job.attempt || 1}`;
    case "dead": return `failed for good after ${job.attempt} attempts: in the dead-letter list`;
    case "cancelled": return "cancelled";
    default: return job.state;
  }
}

function resultText(job) {
  const r = job.result;
  if (job.kind === "order" && r?.receipt) return `Receipt ${r.receipt} · charged ${dollars(r.charged_cents)}`;
  if (job.kind === "sms" && r?.delivered_to) return `Delivered to ${r.delivered_to} on attempt ${r.attempt}`;
  return JSON.stringify(r);
}

function render(job) {
  const el = job.el;
  const ended = ENDED.has(job.state);
  Object.assign(el.dataset, {
    state: job.state,
    completions: String(job.completions),
    events: String(job.applied.length),
    applied: job.applied.join(" "),
    progressSeen: job.progressSeen.join(" "),
    history: job.history.join(" "),
    lastEvent: job.last ?? "",
  });
  const badge = el.querySelector(".state");
  badge.textContent = job.state;
  badge.dataset.state = job.state;

  const bar = el.querySelector(".progress");
  if (job.progress !== null) {
    bar.value = job.state === "completed" ? 100 : job.progress;
  } else if (job.state === "active") {
    bar.removeAttribute("value"); // indeterminate: this kind reports no progress
  } else {
    bar.value = ended ? 100 : 0;
  }
  el.dataset.progress = bar.hasAttribute("value") ? String(bar.value) : "";

  el.querySelector(".detail").textContent = detailText(job);
  const outcome = el.querySelector(".result");
  const error = job.error ? errorText(job.error) : "";
  outcome.hidden = !(job.state === "completed" || error);
  outcome.classList.toggle("error", job.state !== "completed" && Boolean(error));
  outcome.textContent = job.state === "completed" ? resultText(job) : error;
  if (job.state === "completed") el.dataset.result = JSON.stringify(job.result);
  el.querySelector(".trail").textContent = job.history.join(" → ");
  if (ended) finish(job);
}

// ------------------------------------------------------------------ starting jobs

let nextOrder = 1000 + Math.floor(Math.random() * 9000);

function payloadFor(kind) {
  switch (kind) {
    case "order":
      nextOrder += 1;
      return { kind, order_id: nextOrder, amount_cents: 500 + Math.floor(Math.random() * 9500), step_ms: ORDER_STEP_MS };
    case "sms":
      return { kind, to: `+1555010${String(Math.floor(Math.random() * 10000)).padStart(4, "0")}`, text: "Your order has shipped" };
    default:
      return { kind: "flaky" };
  }
}

async function start(kind) {
  const payload = payloadFor(kind);
  try {
    const { id, token } = await http("POST", `/queues/${encodeURIComponent(QUEUE)}/jobs`, ENQUEUE_KEY, payload);
    subscribeJob(newJob(id, token, payload));
    showNotice("");
  } catch (exc) {
    showNotice(`Could not start the job: ${exc.message}`);
  }
}

// ------------------------------------------------------------------ the WebSocket

const socket = {
  ws: null,
  backoff: BACKOFF_MIN_MS,
  lastHeard: 0, // Date.now() of the last message (or of the connection attempt)
  connects: 0,
  timer: null,
  feedLast: null, // the newest event id of the feed: where the queue subscription resumes
};

function setStatus(state, text) {
  const status = $("#status");
  status.textContent = text;
  status.dataset.state = state;
  status.dataset.connects = String(socket.connects);
  status.parentElement.dataset.state = state;
}

function connect() {
  socket.timer = null;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.ws = ws;
  socket.lastHeard = Date.now();
  ws.onopen = () => {
    socket.connects += 1;
    socket.backoff = BACKOFF_MIN_MS;
    setStatus("connected", "connected");
    subscribeAll();
  };
  ws.onmessage = (message) => {
    socket.lastHeard = Date.now();
    try {
      onMessage(JSON.parse(message.data));
    } catch (exc) {
      console.error("bad message from the gateway", exc);
    }
  };
  ws.onclose = () => {
    if (socket.ws === ws) lost();
  };
}

/** The socket closed (or went silent): follow jobs by polling, reconnect with backoff. */
function lost() {
  socket.ws = null;
  $("#feed").dataset.subscribed = "false";
  for (const job of jobs.values()) job.live = false;
  setStatus("reconnecting", "reconnecting…");
  if (socket.timer) return;
  const delay = socket.backoff * (0.8 + Math.random() * 0.4);
  socket.backoff = Math.min(socket.backoff * 2, BACKOFF_MAX_MS);
  socket.timer = setTimeout(connect, delay);
}

/** No message for SILENCE_LIMIT_MS (not even a heartbeat): the connection is dead. */
function watchdog() {
  const ws = socket.ws;
  if (ws && Date.now() - socket.lastHeard > SILENCE_LIMIT_MS) {
    socket.ws = null;
    ws.close();
    lost();
  }
}

function send(message) {
  if (socket.ws?.readyState !== WebSocket.OPEN) return false;
  socket.ws.send(JSON.stringify(message));
  return true;
}

function subscribeAll() {
  if (DASHBOARD_TOKEN) {
    const since = socket.feedLast ? { since: socket.feedLast } : {};
    send({ op: "subscribe", token: DASHBOARD_TOKEN, queue: QUEUE, ...since });
  }
  for (const job of jobs.values()) subscribeJob(job);
}

function subscribeJob(job) {
  if (job.live || job.lost || ENDED.has(job.state)) return;
  const since = job.last ? { since: job.last } : {};
  send({ op: "subscribe", token: job.token, queue: QUEUE, job: job.id, ...since });
}

/** A job ended: stop following it (a connection may hold 64 subscriptions). */
function finish(job) {
  if (job.live && send({ op: "unsubscribe", queue: QUEUE, job: job.id })) job.live = false;
}

function onMessage(message) {
  switch (message.type) {
    case "event": onEvent(message.event); break;
    case "state": {
      const job = jobs.get(message.job);
      if (job) applyState(job, message);
      break;
    }
    case "subscribed": onSubscribed(message); break;
    case "gap": onGap(message); break;
    case "error": onError(message); break;
    default: break; // heartbeat, pong, unsubscribed: only proof of life
  }
}

function onSubscribed(message) {
  if (message.job == null) {
    $("#feed").dataset.subscribed = "true";
    return;
  }
  const job = jobs.get(message.job);
  if (!job) return;
  job.live = true;
  if (ENDED.has(job.state)) finish(job); // it ended while the request was on its way
}

function onEvent(event) {
  addToFeed(event);
  const job = jobs.get(event.id);
  if (job) {
    applyEvent(job, event);
  } else {
    early.push(event);
    if (early.length > EARLY_SIZE) early.shift();
  }
}

/** Events after `after` are gone: re-read the job (the gateway also sends its state). */
function onGap(message) {
  if (message.job == null) {
    addNote("some events were trimmed from the stream before they could be replayed");
    return;
  }
  const job = jobs.get(message.job);
  if (job) refresh(job);
}

function onError(message) {
  const job = message.job ? jobs.get(message.job) : null;
  if (!job) {
    $("#feed").dataset.subscribed = "false";
    showNotice(`The gateway refused a request: ${message.message} (${message.code})`);
    return;
  }
  job.live = false;
  if (["not_found", "forbidden", "invalid_token", "token_expired"].includes(message.code)) {
    job.lost = true;
    job.error = { type: "Unavailable", message: message.message };
    render(job);
  }
}

// ------------------------------------------------------------------ polling

/** Read a job over HTTP and apply its state (for gaps, and while the socket is down). */
async function refresh(job) {
  if (job.polling || job.lost) return;
  job.polling = true;
  try {
    applyState(job, await http("GET", `/jobs/${encodeURIComponent(job.id)}`, job.token));
  } catch (exc) {
    if (exc instanceof HttpError && [401, 403, 404].includes(exc.status)) {
      job.lost = true;
      job.error = { type: "Unavailable", message: exc.message };
      render(job);
    } // else: the gateway is down; the next poll tries again
  } finally {
    job.polling = false;
  }
}

function pollJobs() {
  for (const job of jobs.values()) {
    if (!job.live && !ENDED.has(job.state)) refresh(job);
  }
}

// ------------------------------------------------------------------ the dashboard

const feedSeen = new Set();
const samples = []; // {t, completed}: the last few seconds of the completed counter

function addToFeed(event) {
  if (feedSeen.has(event.event_id)) return;
  feedSeen.add(event.event_id);
  if (isNewer(event.event_id, socket.feedLast)) socket.feedLast = event.event_id;
  const item = document.createElement("li");
  item.className = "feed-item";
  item.dataset.type = event.type;
  item.dataset.eventId = event.event_id;
  const time = document.createElement("time");
  time.textContent = clock(event.ts);
  const type = document.createElement("span");
  type.className = "feed-type";
  type.textContent = event.type;
  const what = document.createElement("span");
  what.className = "feed-what";
  what.textContent = `${event.id}${feedDetail(event)}`;
  item.append(time, type, what);
  insertByEventId(item);
  while ($("#feed").children.length > FEED_SIZE) {
    const oldest = $("#feed").lastElementChild;
    feedSeen.delete(oldest.dataset.eventId);
    oldest.remove();
  }
}

/** Newest first: an event replayed late still lands in its place. */
function insertByEventId(item) {
  const feed = $("#feed");
  for (const other of feed.children) {
    if (other.dataset.eventId && isNewer(item.dataset.eventId, other.dataset.eventId)) {
      feed.insertBefore(item, other);
      return;
    }
  }
  feed.append(item);
}

function feedDetail(event) {
  switch (event.type) {
    case "progress": return ` · ${JSON.stringify(event.progress)}%`;
    case "started": return ` · attempt ${event.attempt}`;
    case "completed": return ` · ${JSON.stringify(event.result)}`;
    case "failed": case "dead": case "cancelled": return ` · ${errorText(event.error)}`;
    case "retrying": return ` · in ${(event.delay_ms / 1000).toFixed(1)} s`;
    default: return "";
  }
}

function addNote(text) {
  const item = document.createElement("li");
  item.className = "feed-item note";
  item.textContent = text;
  $("#feed").prepend(item);
}

let statsBusy = false;

async function pollStats() {
  if (statsBusy) return; // the last request has not answered yet
  statsBusy = true;
  try {
    const stats = await http("GET", `/queues/${encodeURIComponent(QUEUE)}/stats`, DASHBOARD_TOKEN);
    for (const name of ["pending", "active", "delayed", "dead"]) {
      $(`#count-${name}`).textContent = String(stats[name]);
    }
    const completed = stats.totals?.completed ?? 0;
    $("#count-completed").textContent = String(completed);
    $("#throughput").textContent = throughput(completed);
    $("#stats-age").textContent = stats.paused ? "queue paused" : "live, every second";
  } catch (exc) {
    $("#stats-age").textContent = `stats unavailable (${exc.message})`;
  } finally {
    statsBusy = false;
  }
}

/** Completed jobs per second over the last few seconds, from the counter's deltas. */
function throughput(completed) {
  const now = Date.now();
  samples.push({ t: now, completed });
  while (samples.length > 2 && now - samples[0].t > THROUGHPUT_WINDOW_MS) samples.shift();
  const first = samples[0];
  const seconds = (now - first.t) / 1000;
  return seconds > 0 ? ((completed - first.completed) / seconds).toFixed(1) : "–";
}

// ------------------------------------------------------------------ start

function main() {
  $("#queue-name").textContent = QUEUE;
  if (!ENQUEUE_KEY) {
    showNotice("This page needs the link printed by `notifyq demo`: its #key=… part lets it start jobs.");
  } else {
    for (const kind of ["order", "sms", "flaky"]) {
      const button = $(`#${kind}`);
      button.disabled = false;
      button.addEventListener("click", () => start(kind));
    }
  }
  if (DASHBOARD_TOKEN) {
    pollStats();
    setInterval(pollStats, STATS_EVERY_MS);
  } else {
    $("#stats-age").textContent = "no dashboard token in the link";
  }
  window.addEventListener("hashchange", () => location.reload());
  setInterval(pollJobs, POLL_EVERY_MS);
  setInterval(watchdog, 1000);
  connect();
}

main();
