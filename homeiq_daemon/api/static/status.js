// The status page: polls /api/v1/status and draws it. No framework, no build step.
"use strict";

const REFRESH_MS = 2000;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);
const nf = new Intl.NumberFormat("en-US");

function setText(id, text, value) {
  const el = $(id);
  el.textContent = text;
  if (value !== undefined) el.dataset.value = String(value);
}

function count(n) { return n === null || n === undefined ? "–" : nf.format(n); }

function rate(n) {
  if (n === null || n === undefined) return "–";
  return n >= 100 ? nf.format(Math.round(n)) : n.toFixed(n >= 10 ? 1 : 2);
}

function bytes(n) {
  if (!n) return "0 B";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

function clock(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function since(label, iso, nowIso) {
  if (!iso) return "";
  const age = (new Date(nowIso) - new Date(iso)) / 1000;
  return `${label} ${clock(iso)} (${duration(age)} ago)`;
}

function dot(id, level) {
  $(id).className = `dot ${level}`;
}

function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function meter(fraction) {
  const outer = document.createElement("div");
  outer.className = "meter";
  const inner = document.createElement("span");
  inner.style.width = `${Math.round(Math.max(0, Math.min(1, fraction)) * 100)}%`;
  outer.appendChild(inner);
  return outer;
}

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (parent) parent.appendChild(el);
  return el;
}

function drawChart(minutes) {
  const box = $("chart");
  clear(box);
  const w = Math.max(box.clientWidth, 300);
  const h = box.clientHeight || 170;
  const pad = { l: 44, r: 8, t: 8, b: 20 };
  const root = svg("svg", { viewBox: `0 0 ${w} ${h}`, preserveAspectRatio: "none" }, box);
  const slots = 61;
  const data = minutes.slice(-slots);
  const max = Math.max(1, ...data.map((m) => Math.max(m.points, m.events)));
  const innerW = w - pad.l - pad.r;
  const innerH = h - pad.t - pad.b;
  const step = innerW / slots;
  const offset = slots - data.length;
  const y = (v) => pad.t + innerH - (v / max) * innerH;
  svg("line", { x1: pad.l, x2: w - pad.r, y1: pad.t + innerH, y2: pad.t + innerH, class: "axis" }, root);
  svg("line", { x1: pad.l, x2: w - pad.r, y1: pad.t, y2: pad.t, class: "axis" }, root);
  svg("text", { x: pad.l - 6, y: pad.t + 10, "text-anchor": "end" }, root).textContent = nf.format(max);
  svg("text", { x: pad.l - 6, y: pad.t + innerH, "text-anchor": "end" }, root).textContent = "0";
  data.forEach((m, i) => {
    const x = pad.l + (offset + i) * step;
    const barH = (m.points / max) * innerH;
    const bar = svg("rect", {
      x: x + step * 0.12, y: pad.t + innerH - barH, width: Math.max(1, step * 0.76), height: barH,
      class: i === data.length - 1 ? "bar now" : "bar",
    }, root);
    svg("title", {}, bar).textContent = `${clock(m.minute)}: ${nf.format(m.points)} points, ${nf.format(m.events)} events`;
  });
  if (data.length > 1) {
    const pts = data.map((m, i) => `${pad.l + (offset + i + 0.5) * step},${y(m.events)}`).join(" ");
    svg("polyline", { points: pts, class: "line" }, root);
  }
  for (const [slot, label, anchor] of [[0, "−60 min", "start"], [30, "−30 min", "middle"], [slots, "now", "end"]]) {
    svg("text", { x: pad.l + slot * step, y: h - 4, "text-anchor": anchor }, root).textContent = label;
  }
}

function drawWork(work) {
  const box = $("work");
  clear(box);
  if (!work.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "Nothing running: no replay, backfill, history import or spool drain.";
    box.appendChild(p);
    return;
  }
  for (const item of work) {
    const div = document.createElement("div");
    div.className = item.finished ? "work-item finished" : "work-item";
    div.dataset.task = item.task;
    const row = document.createElement("div");
    row.className = "row";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = item.task;
    const what = document.createElement("span");
    const amount = item.total !== null ? `${count(item.done)} / ${count(item.total)} ${item.unit}` : `${count(item.done)} ${item.unit}`;
    const pace = item.rate_per_s ? ` · ${rate(item.rate_per_s)}/s` : "";
    const tail = item.finished ? ` · done in ${duration(item.elapsed_s)}` : item.eta_s !== null ? ` · ETA ${duration(item.eta_s)}` : "";
    what.textContent = amount + pace + tail + (item.detail ? ` · ${item.detail}` : "");
    row.append(name, what);
    div.appendChild(row);
    div.appendChild(meter(item.fraction !== null ? item.fraction : item.finished ? 1 : 0));
    box.appendChild(div);
  }
}

function drawBusiest(busiest) {
  const body = $("busiest").tBodies[0];
  clear(body);
  $("busiest-empty").hidden = busiest.length > 0;
  const top = busiest.length ? busiest[0].events : 1;
  for (const item of busiest) {
    const row = body.insertRow();
    row.dataset.entity = item.entity_id;
    cell(row, item.entity_id);
    cell(row, "").appendChild(meter(item.events / top));
    cell(row, count(item.events), "num");
  }
}

function drawWebhooks(hooks) {
  const table = $("webhooks");
  const body = table.tBodies[0];
  clear(body);
  $("webhooks-empty").hidden = hooks !== null;
  table.hidden = hooks === null || hooks.recent.length === 0;
  if (hooks === null) { setText("webhook-counts", ""); return; }
  setText("webhook-counts", `${count(hooks.delivered)} delivered · ${count(hooks.failed)} failed · ${count(hooks.pending)} pending`);
  if (!hooks.recent.length) {
    $("webhooks-empty").hidden = false;
    $("webhooks-empty").textContent = "No delivery yet.";
  }
  for (const d of hooks.recent) {
    const row = body.insertRow();
    cell(row, clock(d.time));
    cell(row, d.rule);
    cell(row, d.target);
    cell(row, d.outcome, `outcome-${d.outcome}`);
    cell(row, d.http_status === null ? "–" : String(d.http_status), "num");
    cell(row, String(d.attempts), "num");
  }
}

function render(s) {
  const overall = $("overall");
  overall.dataset.status = s.status;
  overall.textContent = s.status;
  setText("version", s.version);
  setText("uptime", duration(s.uptime_s), s.uptime_s);
  setText("updated", clock(s.now));
  const reasons = $("reasons");
  clear(reasons);
  for (const r of s.reasons) {
    const li = document.createElement("li");
    li.textContent = r;
    reasons.appendChild(li);
  }

  const ha = s.home_assistant;
  if (!ha.configured) {
    setText("hub-state", "not set", "none");
    dot("hub-dot", "");
    setText("hub-since", "no Home Assistant configured: replay or other sources only");
  } else {
    setText("hub-state", ha.connected ? "connected" : ha.state, ha.state);
    dot("hub-dot", ha.connected ? "ok" : "bad");
    setText("hub-since", since(ha.connected ? "since" : "down since", ha.since, s.now));
  }
  setText("hub-reconnects", count(ha.reconnects), ha.reconnects);
  setText("last-event", ha.last_event_age_s === null ? "none yet" : `${duration(ha.last_event_age_s)} ago`);

  const sink = s.sink;
  const sinkLevel = { up: "ok", embedded: "ok", down: "bad" }[sink.state] || "warn";
  setText("sink-state", sink.state, sink.state);
  dot("sink-dot", sinkLevel);
  setText("sink-since", since(sink.state === "down" ? "down since" : "since", sink.since, s.now));
  setText("sink-describe", sink.describe);

  setText("events-rate", rate(s.events.per_s), s.events.per_s);
  setText("events-total", count(s.events.total), s.events.total);
  setText("events-skipped", count(s.events.skipped), s.events.skipped);
  setText("points-written", count(s.points.written), s.points.written);
  setText("points-rate", rate(s.points.per_s), s.points.per_s);
  setText("points-dropped", count(s.points.dropped), s.points.dropped);

  const sp = s.spool;
  setText("spool-points", count(sp.points), sp.points);
  setText("spool-bytes", bytes(sp.bytes), sp.bytes);
  setText("spool-fill", `${(sp.fill_ratio * 100).toFixed(1)} %`, sp.fill_ratio);
  setText("spool-oldest", sp.oldest ? `oldest point ${clock(sp.oldest)} (${duration(sp.oldest_age_s)} ago)` : "empty");

  const dl = s.dead_letters;
  setText("deadletter-count", count(dl.count), dl.count);
  const list = $("deadletter-reasons");
  clear(list);
  for (const item of dl.recent.slice(0, 5)) {
    const li = document.createElement("li");
    li.textContent = `${clock(item.time)} ${item.reason}`;
    list.appendChild(li);
  }

  drawChart(s.last_hour);
  drawWork(s.work);
  drawBusiest(s.busiest);
  drawWebhooks(s.webhooks);
  document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
}

async function refresh() {
  const banner = $("banner");
  try {
    const response = await fetch("/api/v1/status", { cache: "no-store", credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    banner.hidden = true;
  } catch (err) {
    banner.textContent = `The daemon does not answer (${err.message}); retrying every ${REFRESH_MS / 1000} s.`;
    banner.hidden = false;
    $("overall").dataset.status = "unreachable";
    $("overall").textContent = "unreachable";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

refresh();
