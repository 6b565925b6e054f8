// The smsgate dashboard: one page, no framework, no network but smsgate itself.
// Every value from the server is put into the page as text (textContent), never as HTML.
import "./style.css";

const $ = (id) => document.getElementById(id);
const state = { key: sessionStorage.getItem("smsgate-key"), who: null, timers: [], feedAbort: null };

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return e;
}

function row(cells, head = false) {
  return el("tr", {}, ...cells.map((c) => (c instanceof Node ? el(head ? "th" : "td", {}, c) : el(head ? "th" : "td", {}, c))));
}

function fill(table, header, rows) {
  table.replaceChildren(el("thead", {}, row(header, true)), el("tbody", {}, ...rows.map((r) => row(r))));
}

const fmt = (n, d = 1) => (n == null ? "–" : Number(n).toFixed(d));
const time = (ms) => new Date(ms).toLocaleTimeString([], { hour12: false });

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${state.key}`, ...(options.headers || {}) };
  const r = await fetch(path, { ...options, headers });
  let body = null;
  try {
    body = await r.json();
  } catch {
    body = null;
  }
  return { status: r.status, body };
}

// === theme ===

function applyTheme(t) {
  document.documentElement.dataset.theme = t;
  localStorage.setItem("smsgate-theme", t);
}
applyTheme(localStorage.getItem("smsgate-theme") || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light"));
$("theme").addEventListener("click", () => applyTheme(document.documentElement.dataset.theme === "dark" ? "light" : "dark"));

// === sign in ===

async function signIn(key) {
  state.key = key;
  const { status, body } = await api("/api/v1/dashboard/whoami");
  if (status !== 200) {
    state.key = null;
    sessionStorage.removeItem("smsgate-key");
    $("login-error").textContent = body?.error?.message || `HTTP ${status}`;
    return;
  }
  sessionStorage.setItem("smsgate-key", key);
  state.who = body;
  $("login").hidden = true;
  $("views").hidden = false;
  $("logout").hidden = false;
  document.body.dataset.role = body.role;
  $("who").textContent = body.role === "admin" ? "admin view" : `client ${body.client}`;
  start();
}

$("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  $("login-error").textContent = "";
  signIn($("key").value.trim());
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem("smsgate-key");
  location.reload();
});

function every(ms, f) {
  f();
  state.timers.push(setInterval(f, ms));
}

function start() {
  if (state.who.role === "admin") {
    every(1000, refreshStats);
    every(1000, refreshLinks);
  }
  every(5000, refreshUsage);
  every(3000, refreshMessages);
  followFeed();
}

// === admin: rates, latency, links ===

async function refreshStats() {
  const { status, body } = await api("/api/v1/dashboard/stats");
  if (status !== 200) return;
  const kinds = ["accepted", "rejected", "submitted", "delivered", "failed"];
  fill(
    $("rates"),
    ["", ...kinds],
    ["1s", "10s", "60s"].map((w) => [w, ...kinds.map((k) => fmt(body.rates?.[w]?.[k]))]),
  );
  fill(
    $("latency"),
    ["", "p50", "p90", "p99", "p99.9", "max", "count"],
    ["api", "smsc"].map((k) => {
      const l = body.latency_ms?.[k] || {};
      return [k, fmt(l.p50, 2), fmt(l.p90, 2), fmt(l.p99, 2), fmt(l.p99_9, 2), fmt(l.max, 2), l.count ?? 0];
    }),
  );
  const by = [];
  for (const [layer, reasons] of Object.entries(body.rejections || {})) {
    for (const [reason, n] of Object.entries(reasons)) {
      by.push([layer, reason, fmt(body.rates?.["60s"]?.rejected_by?.[layer]?.[reason] ?? 0, 2), n]);
    }
  }
  by.sort((a, b) => b[3] - a[3]);
  fill($("reasons"), ["layer", "reason", "per s (60 s)", "since start"], by.length ? by.slice(0, 8) : [["none yet", "", "", ""]]);
}

function badge(s) {
  return el("span", { class: `badge ${s}` }, s);
}

function meter(used, size) {
  const pct = size ? Math.min(100, (100 * used) / size) : 0;
  return el("span", { class: "meter", title: `${used} of ${size}` }, el("span", { style: `width:${pct}%` }), ` ${used}/${size}`);
}

async function refreshLinks() {
  const { status, body } = await api("/api/v1/dashboard/smpp-links");
  if (status !== 200) return;
  const links = Object.entries(body.links || {});
  fill(
    $("links"),
    ["link", "state", "sessions", "rate (eff./conf.)", "window", "submits/s", "receipts/s", "last error"],
    links.map(([name, l]) => [
      name,
      badge(l.state),
      `${l.sessions_bound}/${l.sessions}`,
      `${fmt(l.effective_rate, 0)} / ${l.configured_rate}`,
      meter(l.window?.in_use ?? 0, l.window?.size ?? 0),
      fmt(l.submits_per_s?.["10s"]),
      fmt(l.receipts_per_s?.["10s"]),
      l.last_error ? `${l.last_error.kind} ${Math.round(l.last_error.age_ms / 1000)} s ago` : "–",
    ]),
  );
  const pools = Object.entries(body.pools || {});
  fill(
    $("pools"),
    ["pool", "members up", "rate (eff./conf.)"],
    pools.length
      ? pools.map(([name, p]) => [name, `${p.members_up.length}/${p.members.length} ${p.members_up.join(", ")}`, `${fmt(p.effective_rate, 0)} / ${p.configured_rate}`])
      : [["none configured", "", ""]],
  );
}

// === usage chart (history) ===

async function refreshUsage() {
  const { status, body } = await api("/api/v1/history/usage?bucket=minute");
  const box = $("usage");
  if (status !== 200) {
    box.replaceChildren(el("p", { class: "muted" }, body?.error?.code === "history_disabled" ? "History is off on this node ([history] not configured)." : body?.error?.message || `HTTP ${status}`));
    return;
  }
  box.replaceChildren(chart(body));
}

function chart(usage) {
  const width = 600, height = 160, pad = 24;
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const buckets = usage.buckets;
  const span = usage.until_ms - usage.from_ms;
  const max = Math.max(1, ...buckets.map((b) => Math.max(b.accepted, b.refused, b.delivered)));
  const x = (ms) => pad + ((ms - usage.from_ms) / span) * (width - 2 * pad);
  const y = (v) => height - pad - (v / max) * (height - 2 * pad);
  const series = [
    ["accepted", "s-accepted"],
    ["delivered", "s-delivered"],
    ["refused", "s-refused"],
  ];
  const axis = document.createElementNS(NS, "path");
  axis.setAttribute("d", `M${pad},${pad} V${height - pad} H${width - pad}`);
  axis.setAttribute("class", "axis");
  svg.append(axis);
  const top = document.createElementNS(NS, "text");
  top.setAttribute("x", 2);
  top.setAttribute("y", pad - 6);
  top.textContent = `${max}/min`;
  svg.append(top);
  series.forEach(([k, cls], i) => {
    const bw = Math.max(1, ((width - 2 * pad) / 60 - 2) / 3);
    for (const b of buckets) {
      const r = document.createElementNS(NS, "rect");
      r.setAttribute("x", x(b.start_ms) + i * bw);
      r.setAttribute("y", y(b[k]));
      r.setAttribute("width", bw);
      r.setAttribute("height", height - pad - y(b[k]));
      r.setAttribute("class", cls);
      const t = document.createElementNS(NS, "title");
      t.textContent = `${time(b.start_ms)} ${k}: ${b[k]}`;
      r.append(t);
      svg.append(r);
    }
  });
  const legend = el("p", { class: "legend" }, ...series.map(([k, cls]) => el("span", { class: `key ${cls}` }, k)));
  const total = (k) => buckets.reduce((s, b) => s + b[k], 0);
  legend.append(el("span", { class: "muted" }, ` last hour: ${total("accepted")} accepted, ${total("delivered")} delivered, ${total("refused")} refused`));
  return el("div", {}, svg, legend);
}

// === recent messages (history) ===

async function refreshMessages() {
  const { status, body } = await api("/api/v1/history/messages?limit=15");
  const t = $("messages");
  if (status !== 200) {
    t.replaceChildren(el("tbody", {}, row([body?.error?.code === "history_disabled" ? "History is off on this node." : body?.error?.message || `HTTP ${status}`])));
    return;
  }
  fill(
    t,
    ["time", "id", "client", "to", "status", "why"],
    body.messages.map((m) => [time(m.at_ms), m.id || "–", m.client || "–", m.to || m.to_hash || "–", badge(m.status || "–"), m.layer ? `${m.layer}: ${m.reason}` : ""]),
  );
}

// === live refusals (Server-Sent Events over fetch, so the key goes in a header) ===

async function followFeed() {
  const feed = $("feed");
  const status = $("feed-state");
  for (;;) {
    try {
      const r = await fetch("/api/v1/dashboard/refusals", { headers: { Authorization: `Bearer ${state.key}`, Accept: "text/event-stream" } });
      if (r.status !== 200 || !r.body) throw new Error(`HTTP ${r.status}`);
      status.textContent = "live";
      status.className = "live";
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
          if (!data) continue;
          const item = JSON.parse(data);
          feed.prepend(row([time(item.at_ms), item.client || "(no key)", item.layer, item.reason]));
          while (feed.children.length > 15) feed.lastChild.remove();
        }
      }
    } catch (e) {
      status.textContent = `reconnecting (${e.message})`;
    }
    status.className = "";
    await new Promise((ok) => setTimeout(ok, 2000));
  }
}

// === test message and its lifecycle ===

$("test-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const msg = { to: $("t-to").value.trim(), from: $("t-from").value.trim(), text: $("t-text").value };
  if ($("t-link").value.trim()) msg.link = $("t-link").value.trim();
  const steps = $("lifecycle");
  steps.replaceChildren();
  $("t-result").textContent = "sending…";
  const { status, body } = await api("/api/v1/messages", { method: "POST", body: JSON.stringify(msg), headers: { "Content-Type": "application/json" } });
  if (status !== 200) {
    $("t-result").textContent = `refused: ${status} ${body?.error?.code} — ${body?.error?.message}`;
    steps.append(el("li", { class: "step refused" }, "refused"));
    if (!body?.error?.id) return;
  }
  const id = body.id || body.error.id;
  $("t-result").textContent = `id ${id}`;
  const seen = new Set();
  const until = Date.now() + 60000;
  while (Date.now() < until) {
    const r = await api(`/api/v1/messages/${id}`);
    if (r.status === 200) {
      for (const t of r.body.transitions) {
        if (seen.has(t.status)) continue;
        seen.add(t.status);
        steps.append(el("li", { class: `step ${t.status}`, "data-status": t.status }, el("b", {}, t.status), ` ${time(t.at_ms)}`));
      }
      if (!["accepted", "submitted"].includes(r.body.status)) break;
    }
    await new Promise((ok) => setTimeout(ok, 300));
  }
});

if (state.key) signIn(state.key);
