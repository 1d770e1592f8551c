// The Selfman dashboard: polls this node's and its peers' JSON endpoints every second and
// draws the ring (positions from ring identifiers), successor and finger links, ranges,
// branches and suspicions; and a chosen node's component tree and rates. No dependencies.
"use strict";

const POLL_MS = 1000;
const FETCH_TIMEOUT_MS = 800;
const CX = 280, CY = 280, R = 220;
const SVG = "http://www.w3.org/2000/svg";

const state = {
  self: null,            // this node's /api/node
  targets: [""],         // HTTP bases to poll ("" is this node)
  views: new Map(),      // base -> { view, ok, at }
  chosen: "",            // base whose tree is shown
  lastTree: null,        // { at, handled, bytesIn, bytesOut }
  series: { events: [], netIn: [], netOut: [], commits: [], latencyMs: [] },
  ticks: 0,
};

function base(addr) { return addr === "" ? "" : "http://" + addr; }

async function getJson(b, path) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const r = await fetch(base(b) + path, { signal: ctl.signal, cache: "no-store" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return await r.json();
  } finally {
    clearTimeout(t);
  }
}

function key(addr) { return addr ? addr.addr + "#" + addr.id : "?"; }
function point(f, radius) {
  const a = f * 2 * Math.PI - Math.PI / 2;
  return [CX + radius * Math.cos(a), CY + radius * Math.sin(a)];
}
function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

// The most nodes the dashboard polls.
const MAX_TARGETS = 64;

async function discover() {
  try {
    state.self = await getJson("", "/api/node");
    // This node's peers, then theirs (a node lists the endpoints of its ring neighbours):
    // breadth first, bounded.
    const seen = new Set([state.self.http]);
    const found = [];
    let frontier = [""];
    while (frontier.length && found.length < MAX_TARGETS) {
      const lists = await Promise.all(frontier.map((b) => getJson(b, "/api/peers").catch(() => [])));
      frontier = [];
      for (const p of lists.flat()) {
        if (typeof p !== "string" || seen.has(p) || found.length >= MAX_TARGETS) continue;
        seen.add(p); found.push(p); frontier.push(p);
      }
    }
    state.targets = [""].concat(found);
    // nodes no longer listed by anyone are no longer drawn
    for (const b of [...state.views.keys()]) if (!state.targets.includes(b)) state.views.delete(b);
    document.getElementById("me").textContent =
      state.self.name + " · http " + state.self.http + (state.self.node ? " · node " + key(state.self.node) : "");
  } catch (e) {
    document.getElementById("me").textContent = "this node does not answer: " + e.message;
  }
}

async function pollRing() {
  await Promise.all(state.targets.map(async (b) => {
    const prev = state.views.get(b);
    try {
      const view = await getJson(b, "/api/ring");
      state.views.set(b, { view, ok: true, at: Date.now() });
    } catch (e) {
      state.views.set(b, { view: prev ? prev.view : null, ok: false, at: Date.now(), error: e.message });
    }
  }));
}

function drawRing() {
  const ranges = document.getElementById("layer-ranges");
  const links = document.getElementById("layer-links");
  const nodes = document.getElementById("layer-nodes");
  ranges.replaceChildren(); links.replaceChildren(); nodes.replaceChildren();
  const showFingers = document.getElementById("show-fingers").checked;

  // Every node we have a view of (live or last seen), by node address.
  const byKey = new Map();
  const suspected = new Set();
  for (const [b, s] of state.views) {
    if (!s.view) continue;
    byKey.set(key(s.view.me.addr), { base: b, ...s });
    if (s.ok) for (const c of s.view.crashed || []) suspected.add(key(c));
  }
  let up = 0, down = 0;
  for (const [k, n] of byKey) {
    const v = n.view;
    if (n.ok && v.range) {
      const f0 = v.range.start_f, f1 = v.range.end_f;
      let span = f1 - f0; if (span <= 0) span += 1;
      const [x0, y0] = point(f0, R), [x1, y1] = point(f1, R);
      const large = span > 0.5 ? 1 : 0;
      el("path", {
        class: "range", "data-node": k, style: `fill: hsl(${Math.round(v.me.f * 360)} 55% 55%)`,
        d: `M ${CX} ${CY} L ${x0} ${y0} A ${R} ${R} 0 ${large} 1 ${x1} ${y1} Z`,
      }, ranges);
    }
    if (n.ok && v.succ) {
      const [x0, y0] = point(v.me.f, R), [x1, y1] = point(v.succ.f, R);
      // an arc just inside the circle, bulging towards the centre by how far it reaches
      let d = v.succ.f - v.me.f; if (d <= 0) d += 1;
      const [qx, qy] = point(v.me.f + d / 2, R * (1 - Math.min(0.6, d * 0.9)));
      el("path", { class: "succ", d: `M ${x0} ${y0} Q ${qx} ${qy} ${x1} ${y1}` }, links)
        .setAttribute("data-from", k);
    }
    if (n.ok && showFingers) {
      for (const fg of v.fingers || []) {
        const [x0, y0] = point(v.me.f, R), [x1, y1] = point(fg.f, R);
        el("line", { class: "finger", x1: x0, y1: y0, x2: x1, y2: y1 }, links);
      }
    }
  }
  for (const [k, n] of byKey) {
    const v = n.view;
    let cls = "node";
    if (!n.ok) { cls += " down"; down++; }
    else {
      up++;
      if (v.status === "InRing") {
        const pred = v.pred && byKey.get(key(v.pred.addr));
        const inBranch = pred && pred.ok && pred.view.succ && key(pred.view.succ.addr) !== k;
        cls += inBranch ? " up branch" : " up";
      } else if (v.status === "Joining" || v.status === "Outside") cls += " up joining";
      else cls += " up leaving";
    }
    if (suspected.has(k)) cls += " suspected";
    if (n.base === state.chosen) cls += " selected";
    const [x, y] = point(v.me.f, R);
    const c = el("circle", { class: cls, cx: x, cy: y, r: 9, "data-node": k, "data-http": n.base || "self" }, nodes);
    el("title", {}, c).textContent = `${k}\nstatus ${n.ok ? v.status : "not answering"}\nid ${v.me.id}`;
    c.addEventListener("click", () => { state.chosen = n.base; state.lastTree = null; clearSeries(); });
    const [lx, ly] = point(v.me.f, R + 24);
    const t = el("text", { class: "label", x: lx, y: ly, "text-anchor": "middle" }, nodes);
    t.textContent = v.me.addr.addr.split(":").pop();
  }
  const self = state.views.get("");
  const est = self && self.ok ? self.view.size_estimate : "?";
  document.getElementById("summary").textContent =
    `${up} answering · ${down} not answering · ${suspected.size} suspected · size estimate ${est}`;
  const errs = [...state.views.values()].filter((s) => !s.ok && !s.view).length;
  document.getElementById("ring-errors").textContent = errs ? `${errs} node(s) never answered` : "";
  document.body.dataset.nodesUp = String(up);
  document.body.dataset.nodesDown = String(down);
}

function clearSeries() { state.series = { events: [], netIn: [], netOut: [], commits: [], latencyMs: [] }; }

// The unlabelled samples of a Prometheus text document that we chart, by name.
function promValues(text) {
  const want = ["selfman_store_commits_total", "selfman_store_commit_latency_seconds_sum",
    "selfman_store_commit_latency_seconds_count"];
  const out = {};
  for (const line of text.split("\n")) {
    const sp = line.indexOf(" ");
    if (sp > 0 && want.includes(line.slice(0, sp))) out[line.slice(0, sp)] = Number(line.slice(sp + 1));
  }
  return out;
}

async function getText(b, path) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const r = await fetch(base(b) + path, { signal: ctl.signal, cache: "no-store" });
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return await r.text();
  } finally {
    clearTimeout(t);
  }
}

function push(series, v) { series.push(v); if (series.length > 120) series.shift(); }

// Lines with a `label` are each scaled to their own maximum (and labelled with it); the
// others share one scale.
function drawChart(id, lines) {
  const c = document.getElementById(id);
  const g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const shared = Math.max(1, ...lines.filter((l) => !l.label).flatMap((l) => l.data));
  lines.forEach((l) => {
    const max = l.label ? Math.max(1e-9, ...l.data) : shared;
    g.strokeStyle = l.color; g.lineWidth = 1.6; g.beginPath();
    l.data.forEach((v, i) => {
      const x = (i / 119) * (c.width - 4) + 2;
      const y = c.height - 4 - (v / max) * (c.height - 16);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  });
  g.font = "11px sans-serif";
  const labelled = lines.filter((l) => l.label);
  if (!labelled.length) {
    g.fillStyle = "#49505e";
    g.fillText("max " + Math.round(shared).toLocaleString() + "/s", 6, 12);
  }
  let x = 6;
  for (const l of labelled) {
    const max = Math.max(0, ...l.data);
    const text = l.label + " max " + (max >= 10 ? Math.round(max).toLocaleString() : max.toFixed(2));
    g.fillStyle = l.color; g.fillText(text, x, 12);
    x += g.measureText(text).width + 14;
  }
}

async function pollTree() {
  const b = state.chosen;
  document.getElementById("chosen").textContent = b === "" ? "(this node)" : b;
  let snap, net, prom;
  try {
    [snap, net, prom] = await Promise.all([getJson(b, "/api/components"), getJson(b, "/api/net").catch(() => null),
      getText(b, "/metrics").then(promValues).catch(() => ({}))]);
  } catch (e) {
    document.getElementById("tree").innerHTML = `<tr><td colspan="6" class="err">${e.message}</td></tr>`;
    return;
  }
  const now = Date.now();
  const handled = snap.components.reduce((s, c) => s + c.handled, 0);
  const bytesIn = net ? net.bytes_in : 0, bytesOut = net ? net.bytes_out : 0;
  const hasTx = "selfman_store_commits_total" in prom;
  const commits = prom["selfman_store_commits_total"] || 0;
  const latSum = prom["selfman_store_commit_latency_seconds_sum"] || 0;
  const latCount = prom["selfman_store_commit_latency_seconds_count"] || 0;
  if (state.lastTree) {
    const l = state.lastTree;
    const dt = Math.max(0.001, (now - l.at) / 1000);
    push(state.series.events, (handled - l.handled) / dt);
    push(state.series.netIn, (bytesIn - l.bytesIn) / dt);
    push(state.series.netOut, (bytesOut - l.bytesOut) / dt);
    push(state.series.commits, (commits - l.commits) / dt);
    // the mean latency of the commits of this interval (none: 0)
    const n = latCount - l.latCount;
    push(state.series.latencyMs, n > 0 ? ((latSum - l.latSum) / n) * 1000 : 0);
  }
  state.lastTree = { at: now, handled, bytesIn, bytesOut, commits, latSum, latCount };
  document.getElementById("tx-note").textContent = hasTx
    ? `(${commits.toLocaleString()} commits in all)` : "(this node runs no transactions)";
  document.body.dataset.commits = String(commits);
  drawChart("chart-tx", [{ data: state.series.commits, color: "#7a4fd6", label: "commits/s" },
    { data: state.series.latencyMs, color: "#d63a6f", label: "ms" }]);
  drawChart("chart-events", [{ data: state.series.events, color: "#3a6fd6" }]);
  drawChart("chart-net", [{ data: state.series.netIn, color: "#3aa76d" }, { data: state.series.netOut, color: "#e07b39" }]);

  const byId = new Map(snap.components.map((c) => [c.id, c]));
  const rows = [];
  const walk = (c, depth) => {
    rows.push(`<tr><td>${"  ".repeat(depth)}${escapeHtml(shortType(c.type_name))}</td>` +
      `<td class="state-${c.state}">${c.state}</td><td class="num">${c.queued}</td>` +
      `<td class="num">${c.handled.toLocaleString()}</td><td class="num">${c.faults}</td><td class="num">${c.swaps}</td></tr>`);
    for (const k of c.children) if (byId.has(k)) walk(byId.get(k), depth + 1);
  };
  const roots = snap.components.filter((c) => c.parent === null);
  roots.forEach((r) => walk(r, 0));
  document.getElementById("tree").innerHTML = rows.join("");
}

function shortType(t) {
  // drop module paths everywhere, generic arguments included
  return t.replace(/\b[a-z_][a-z0-9_]*::/g, "");
}

function escapeHtml(s) {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));
}

async function tick() {
  if (!state.self || state.ticks % 10 === 0) await discover();
  await pollRing();
  drawRing();
  await pollTree();
  state.ticks++;
  document.body.dataset.ticks = String(state.ticks);
  setTimeout(tick, POLL_MS);
}

document.getElementById("show-fingers").addEventListener("change", drawRing);
tick();
