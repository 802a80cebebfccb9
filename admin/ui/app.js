// ferry status page: polls api/status every second, draws the pipeline as
// sources → routes → sinks with live rates, lists what happened from
// api/events (asking only for what is newer each time), and charts
// throughput and spool depth from api/history plus the live samples. No
// library, no build step.
"use strict";

(() => {
  const POLL_MS = 1000;
  const RATE_SPAN_MS = 3000; // live rates average over about this long
  const CHART_SPAN_MS = 10 * 60 * 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_EVENTS = 300; // rows kept on the page; the server keeps its own ring
  const DROPPING_MS = 60000; // a buffer that dropped this recently is marked as dropping

  const $ = (id) => document.getElementById(id);

  let graph = null; // api/graph: sources, sinks, services, routes (from/to)
  let cards = new Map(); // key "kind:name" → {el, fields}
  let recent = []; // last few status samples: {t, mods: Map, routes: Map}
  let totals = []; // chart points: {t, read, sent, spool} (cumulative read/sent)
  let lastStatus = null;
  let failing = false;
  let lastReload = ""; // time of the last successful reload seen
  let lastEventId = 0; // api/events?after= this
  let eventsOf = null; // the start time of the ferry whose event ids those are
  const drops = new Map(); // sink → {n: records dropped from its buffer, at: server time it last rose}

  // ---------- formatting ----------

  const nf = new Intl.NumberFormat("en-US");
  const fmtInt = (n) => nf.format(Math.round(n));

  function fmtRate(r) {
    if (r == null || !isFinite(r)) return "–";
    if (r >= 1e6) return (r / 1e6).toFixed(1) + "M/s";
    if (r >= 1e4) return (r / 1e3).toFixed(0) + "k/s";
    if (r >= 1e3) return (r / 1e3).toFixed(1) + "k/s";
    if (r >= 10) return r.toFixed(0) + "/s";
    if (r > 0) return r.toFixed(1) + "/s";
    return "0/s";
  }

  function fmtBytes(b) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (b >= 1024 && i < units.length - 1) {
      b /= 1024;
      i++;
    }
    return (i === 0 ? b.toFixed(0) : b.toFixed(1)) + " " + units[i];
  }

  function fmtAge(sec) {
    if (sec == null || !isFinite(sec) || sec < 0) return "–";
    sec = Math.floor(sec);
    if (sec < 60) return sec + "s";
    if (sec < 3600) return Math.floor(sec / 60) + "m " + (sec % 60) + "s";
    if (sec < 86400) return Math.floor(sec / 3600) + "h " + Math.floor((sec % 3600) / 60) + "m";
    return Math.floor(sec / 86400) + "d " + Math.floor((sec % 86400) / 3600) + "h";
  }

  function fmtClock(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }

  // ---------- DOM helpers ----------

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }

  function setText(e, text) {
    if (e && e.textContent !== text) e.textContent = text;
  }

  // A state word for people: what the connector is doing now.
  const STATE_HELP = {
    up: "connected and working",
    connecting: "trying to connect",
    starting: "starting",
    down: "lost its connection; retrying",
    retrying: "could not start, or keeps failing; tried again with back-off",
    failed: "could not start; will not be tried again",
    stopped: "stopped",
    standby: "another instance on the shared bus owns this source; this one takes over if it goes",
  };

  function stateClass(s) {
    switch (s) {
      case "up":
        return "ok";
      case "connecting":
      case "starting":
        return "warn";
      case "down":
      case "retrying":
      case "failed":
        return "bad";
      default:
        return "idle";
    }
  }

  // ---------- building the graph ----------

  function moduleCard(name, kind) {
    const c = el("article", "card module");
    c.dataset.module = name;
    c.dataset.kind = kind;
    const head = el("header", "card-head");
    head.append(el("span", "name", name));
    const type = el("span", "type");
    head.append(type);
    const state = el("span", "pill");
    state.dataset.field = "state";
    head.append(state);
    c.append(head);

    const since = el("div", "since");
    c.append(since);
    const retry = el("div", "retry");
    retry.dataset.field = "retry";
    retry.hidden = true;
    c.append(retry);

    const nums = el("div", "nums");
    const rate = el("span", "rate");
    rate.dataset.rate = kind + ":" + name;
    const total = el("span", "total");
    nums.append(rate, total);
    c.append(nums);

    const f = { el: c, type, state, since, retry, rate, total };

    if (kind === "sink") {
      const link = el("div", "link");
      link.dataset.link = name;
      link.hidden = true;
      c.append(link);
      f.link = link;

      const sp = el("div", "spool");
      sp.hidden = true;
      const depth = el("div", "spool-depth");
      const rec = el("b");
      rec.dataset.field = "spool-records";
      const unit = el("span", null, " records waiting");
      depth.append(el("span", "spool-label", "spool "), rec, unit);
      const meta = el("div", "spool-meta");
      sp.append(depth, meta);
      c.append(sp);
      f.spool = sp;
      f.spoolRecords = rec;
      f.spoolUnit = unit;
      f.spoolMeta = meta;

      // The in-memory buffer of a sink without store_and_forward.
      const bf = el("div", "spool buffer");
      bf.dataset.field = "buffer";
      bf.hidden = true;
      const bdepth = el("div", "spool-depth");
      const brec = el("b");
      brec.dataset.field = "buffer-records";
      bdepth.append(el("span", "spool-label", "buffer "), brec, el("span", null, " records waiting in memory"));
      const fill = el("div", "fill");
      const meter = el("meter");
      meter.min = 0;
      meter.optimum = 0;
      meter.setAttribute("aria-label", name + " buffer fill");
      const fillText = el("span", "fill-text");
      fill.append(meter, fillText);
      const bmeta = el("div", "spool-meta");
      bmeta.dataset.field = "buffer-meta";
      const flag = el("div", "dropflag");
      flag.dataset.field = "buffer-dropping";
      flag.hidden = true;
      bf.append(bdepth, fill, bmeta, flag);
      c.append(bf);
      f.buffer = bf;
      f.bufferRecords = brec;
      f.meter = meter;
      f.fillText = fillText;
      f.bufferMeta = bmeta;
      f.dropFlag = flag;
    }
    const err = el("div", "error");
    err.hidden = true;
    c.append(err);
    f.error = err;
    f.errors = el("span", "errcount");
    nums.append(f.errors);
    return f;
  }

  function routeCard(r) {
    const c = el("article", "card route");
    c.dataset.route = r.name;
    const head = el("header", "card-head");
    head.append(el("span", "name", r.name));
    const prio = el("span", "type");
    head.append(prio);
    c.append(head);
    const flow = el("div", "flow");
    flow.append(
      el("span", "ends", (r.from.length ? r.from.join(", ") : "no source") + " → " + r.to.join(", "))
    );
    c.append(flow);
    const nums = el("div", "nums");
    const rate = el("span", "rate");
    rate.dataset.rate = "route:" + r.name;
    const total = el("span", "total");
    nums.append(rate, total);
    c.append(nums);
    const extra = el("div", "extra");
    c.append(extra);
    return { el: c, prio, rate, total, extra };
  }

  function build(g) {
    const pos = (name) => {
      const idx = [];
      g.routes.forEach((r, i) => {
        if (r.to.includes(name)) idx.push(i);
      });
      return idx.length ? idx.reduce((a, b) => a + b, 0) / idx.length : Infinity;
    };
    g.sinks = g.sinks.map((n, i) => ({ n, i, p: pos(n) })).sort((a, b) => a.p - b.p || a.i - b.i).map((x) => x.n);
    graph = g;
    cards = new Map();
    for (const id of ["col-sources", "col-routes", "col-sinks", "col-services"]) {
      const col = $(id);
      for (const n of [...col.querySelectorAll(".card, .empty")]) n.remove();
    }
    const add = (colId, key, f) => {
      cards.set(key, f);
      $(colId).append(f.el);
    };
    for (const n of g.sources) add("col-sources", "source:" + n, moduleCard(n, "source"));
    for (const r of g.routes) add("col-routes", "route:" + r.name, routeCard(r));
    for (const n of g.sinks) add("col-sinks", "sink:" + n, moduleCard(n, "sink"));
    for (const n of g.services) add("col-services", "service:" + n, moduleCard(n, "service"));
    for (const [id, what] of [
      ["col-sources", "no sources"],
      ["col-routes", "no routes"],
      ["col-sinks", "no sinks"],
    ]) {
      if (!$(id).querySelector(".card")) $(id).append(el("p", "empty", what));
    }
    $("services").hidden = g.services.length === 0;
  }

  // ---------- samples and rates ----------

  function sampleOf(st) {
    // Server time: started + uptime, so rates do not depend on when the
    // answer reached the browser.
    let t = Date.parse(st.started) + st.uptime_seconds * 1000;
    if (!isFinite(t) || st.uptime_seconds === 0) t = Date.now();
    const mods = new Map();
    for (const m of st.modules || []) mods.set(m.name, m);
    const routes = new Map();
    for (const r of st.routes || []) routes.set(r.name, r);
    return { t, mods, routes };
  }

  // rate of a counter over the last few seconds: from the newest sample back
  // to one at least RATE_SPAN_MS older, or the oldest there is.
  function rate(get) {
    if (recent.length < 2) return null;
    const b = recent[recent.length - 1];
    let a = recent[0];
    for (const s of recent) if (s.t <= b.t - RATE_SPAN_MS) a = s;
    const dt = (b.t - a.t) / 1000;
    const va = get(a);
    const vb = get(b);
    if (!(dt > 0) || va == null || vb == null) return null;
    return Math.max(0, vb - va) / dt;
  }

  const modRate = (name, field) => rate((s) => (s.mods.has(name) ? s.mods.get(name)[field] : null));
  const routeRate = (name) => rate((s) => (s.routes.has(name) ? s.routes.get(name).forwarded : null));

  function totalsOf(t, get) {
    let read = 0;
    let sent = 0;
    let spool = 0;
    for (const n of graph.sources) read += get(n, "out") || 0;
    for (const n of graph.sinks) {
      sent += get(n, "out") || 0;
      spool += get(n, "spool") || 0;
    }
    return { t, read, sent, spool };
  }

  function pushTotal(p) {
    const last = totals[totals.length - 1];
    if (last && p.t < last.t + 500) return;
    totals.push(p);
    const cut = p.t - CHART_SPAN_MS - 10000;
    while (totals.length > 2 && totals[0].t < cut) totals.shift();
  }

  // ---------- rendering ----------

  function isUplink(m) {
    return m && m.spool != null;
  }

  function linkWord(m) {
    switch (m.state) {
      case "up":
        return "up";
      case "connecting":
      case "starting":
        return "connecting";
      default:
        return "down";
    }
  }

  function renderModule(f, m, kind, now) {
    if (!m) {
      setText(f.state, "unknown");
      f.state.className = "pill idle";
      return;
    }
    setText(f.type, m.type);
    f.type.title = "connector type; roles: " + m.roles;
    setText(f.state, m.state);
    f.state.className = "pill " + stateClass(m.state);
    f.state.title = STATE_HELP[m.state] || m.state;
    f.el.dataset.state = m.state;
    const since = Date.parse(m.since);
    let sinceText = isFinite(since) ? m.state + " for " + fmtAge((now - since) / 1000) + " · since " + fmtClock(since) : "";
    if (m.lease) {
      // Active/standby on a NATS bus: who holds the source's lease.
      sinceText += " · lease " + (m.lease.mine ? "held here" : m.lease.owner ? "held by " + m.lease.owner : "free");
    }
    setText(f.since, sinceText);
    if (m.state === "retrying") {
      const next = Date.parse(m.next_try);
      let when = "";
      if (isFinite(next)) when = next - now > 500 ? ", next try in " + fmtAge(Math.ceil((next - now) / 1000)) : ", trying again now";
      setText(f.retry, "retrying (attempt " + (m.attempt || 1) + when + ")");
      f.retry.title = "the supervisor starts it again with back-off (about 1 s doubling to 1 min); the error below is the cause";
      f.retry.hidden = false;
    } else {
      f.retry.hidden = true;
    }

    if (kind === "source") {
      setText(f.rate, "reads " + fmtRate(modRate(m.name, "records_out")));
      setText(f.total, fmtInt(m.records_out) + " records");
    } else if (kind === "sink") {
      setText(f.rate, "delivers " + fmtRate(modRate(m.name, "records_out")));
      setText(f.total, fmtInt(m.records_out) + " delivered");
    } else {
      f.rate.hidden = true;
      f.total.hidden = true;
    }
    setText(f.errors, m.errors ? fmtInt(m.errors) + " errors" : "");
    f.errors.hidden = !m.errors;

    if (m.last_error) {
      const at = Date.parse(m.last_error_at);
      const ago = isFinite(at) ? " (" + fmtAge((now - at) / 1000) + " ago)" : "";
      setText(f.error, "last error" + ago + ": " + m.last_error);
      f.error.title = m.last_error;
      f.error.hidden = false;
      // An error from before the module came up again is history, not an
      // alarm: shown with its age, in muted colour.
      const since = Date.parse(m.since);
      f.error.classList.toggle("stale", m.state === "up" && isFinite(at) && ((isFinite(since) && at <= since) || now - at > 60000));
    } else {
      f.error.hidden = true;
    }

    if (kind === "sink") {
      const up = isUplink(m);
      f.link.hidden = !up;
      f.spool.hidden = !m.spool;
      if (up) {
        const w = linkWord(m);
        setText(f.link, "link " + w);
        f.link.className = "link " + stateClass(w === "connecting" ? "connecting" : w);
        f.link.title = w === "down" ? "the far side cannot be reached; records wait in the spool" : "";
      }
      if (m.spool) {
        const s = m.spool;
        // A JetStream queue counts batches; the local spool, records.
        const waiting = s.backend === "jetstream" ? s.batches : s.records;
        setText(f.spoolRecords, fmtInt(waiting));
        setText(f.spoolUnit, s.backend === "jetstream" ? " batches waiting in JetStream" : " records waiting");
        let dropped = 0;
        const why = [];
        for (const k in s.dropped || {}) {
          dropped += s.dropped[k];
          why.push(k + ": " + fmtInt(s.dropped[k]));
        }
        setText(
          f.spoolMeta,
          fmtInt(s.batches) + " batches · " + fmtBytes(s.bytes) + " · oldest " +
            (waiting > 0 ? fmtAge(s.oldest_seconds) : "–") + " · dropped " + fmtInt(dropped)
        );
        f.spoolMeta.title = why.length ? "dropped by reason: " + why.join(", ") : "nothing dropped";
        f.spool.classList.toggle("filling", waiting > 0);
        f.spool.classList.toggle("dropping", dropped > 0);
      }
      f.buffer.hidden = !m.buffer;
      let droppingNow = false;
      if (m.buffer) droppingNow = renderBuffer(f, m, now);
      f.el.classList.toggle("dropping", droppingNow);
    }
  }

  function sumValues(o) {
    let n = 0;
    for (const k in o || {}) n += o[k];
    return n;
  }

  // droppingNow reports a sink whose buffer's drop count rose within the
  // last DROPPING_MS, tracking the count across polls.
  function droppingNow(name, dropped, now) {
    const d = drops.get(name);
    if (!d) {
      // First sight: when those drops happened is not known until a drop
      // event says (noteDrop).
      drops.set(name, { n: dropped, at: -Infinity });
      return false;
    }
    if (d.n == null || dropped < d.n) {
      // Known only from an event so far, or counting again after a restart.
      if (d.n != null) d.at = -Infinity;
      d.n = dropped;
    } else if (dropped > d.n) {
      d.n = dropped;
      d.at = now;
    }
    return now - d.at < DROPPING_MS;
  }

  // noteDrop takes a drop event's time as when the sink last dropped, so a
  // page opened mid-burst marks it at once.
  function noteDrop(ev) {
    const at = Date.parse(ev.time);
    if (!ev.module || !isFinite(at)) return;
    const d = drops.get(ev.module);
    if (!d) drops.set(ev.module, { n: null, at });
    else d.at = Math.max(d.at, at);
  }

  // renderBuffer fills a sink's buffer block and reports whether it is
  // dropping now.
  function renderBuffer(f, m, now) {
    const b = m.buffer;
    setText(f.bufferRecords, fmtInt(b.records));
    f.meter.max = Math.max(1, b.max_bytes);
    f.meter.high = 0.8 * f.meter.max;
    f.meter.low = 0.5 * f.meter.max;
    f.meter.value = Math.min(b.bytes, f.meter.max);
    const pct = b.max_bytes > 0 ? Math.round((100 * b.bytes) / b.max_bytes) : 0;
    setText(f.fillText, fmtBytes(b.bytes) + " of " + fmtBytes(b.max_bytes) + " (" + pct + "%)");
    f.meter.title = pct + "% full";
    const dropped = sumValues(b.dropped);
    const why = [];
    for (const k in b.dropped || {}) why.push(k + ": " + fmtInt(b.dropped[k]));
    const parts = [fmtInt(b.batches) + " batches"];
    if (b.in_flight) parts.push(fmtInt(b.in_flight) + " in flight");
    parts.push("when full: " + (b.on_full || "drop-oldest"));
    parts.push("dropped " + fmtInt(dropped));
    setText(f.bufferMeta, parts.join(" · "));
    f.bufferMeta.title =
      (why.length ? "dropped by reason: " + why.join(", ") : "nothing dropped") +
      (b.on_full === "block" ? "; when full, the routes feeding it wait" : "; when full, the oldest batch waiting is dropped");
    const dropNow = droppingNow(m.name, dropped, now);
    if (dropNow) {
      const r = rate((s) => {
        const x = s.mods.get(m.name);
        return x && x.buffer ? sumValues(x.buffer.dropped) : null;
      });
      setText(f.dropFlag, "dropping records" + (r > 0 ? " · " + fmtRate(r) : "") + " · buffer full");
    }
    f.dropFlag.title = why.length ? "dropped by reason: " + why.join(", ") : "";
    f.dropFlag.hidden = !dropNow;
    f.buffer.classList.toggle("filling", b.records > 0);
    f.buffer.classList.toggle("dropping", dropped > 0);
    f.buffer.classList.toggle("dropping-now", dropNow);
    return dropNow;
  }

  function renderRoute(f, r) {
    if (!r) return;
    setText(f.prio, "priority " + r.priority);
    setText(f.rate, "forwards " + fmtRate(routeRate(r.name)));
    setText(f.total, fmtInt(r.forwarded) + " forwarded");
    const parts = [];
    if (r.filtered) parts.push(fmtInt(r.filtered) + " left out by its filter");
    if (r.dropped) parts.push(fmtInt(r.dropped) + " held back by transforms");
    if (r.expired) parts.push(fmtInt(r.expired) + " expired");
    setText(f.extra, parts.join(" · "));
    f.extra.hidden = parts.length === 0;
  }

  function renderSummary(st, now) {
    const mods = st.modules || [];
    const bad = mods.filter((m) => m.state === "down" || m.state === "retrying" || m.state === "failed");
    const pending = mods.filter((m) => m.state === "connecting" || m.state === "starting");
    let inSpools = 0;
    let inBuffers = 0;
    let dropped = 0;
    let dropping = false;
    const droppedBy = [];
    for (const m of mods) {
      let d = 0;
      if (m.spool) {
        inSpools += m.spool.records;
        d += sumValues(m.spool.dropped);
      }
      if (m.buffer) {
        inBuffers += m.buffer.records;
        d += sumValues(m.buffer.dropped);
        const t = drops.get(m.name);
        if (t && now - t.at < DROPPING_MS) dropping = true;
      }
      if (d > 0) droppedBy.push(m.name + ": " + fmtInt(d));
      dropped += d;
    }
    const s = $("summary");
    const parts = [];
    let cls = "ok";
    if (bad.length) {
      cls = "bad";
      parts.push(bad.map((m) => m.name + " is " + m.state + (m.state === "retrying" ? " (attempt " + (m.attempt || 1) + ")" : "")).join(", "));
    } else if (pending.length) {
      cls = "warn";
      parts.push(pending.map((m) => m.name + " is " + m.state).join(", "));
    } else {
      parts.push("All " + mods.length + " modules up");
    }
    if (inSpools > 0 && inBuffers > 0) {
      parts.push(fmtInt(inSpools + inBuffers) + " records waiting (" + fmtInt(inSpools) + " in spools, " + fmtInt(inBuffers) + " in memory buffers)");
    } else if (inSpools > 0) {
      parts.push(fmtInt(inSpools) + " records waiting in spools");
    } else if (inBuffers > 0) {
      parts.push(fmtInt(inBuffers) + " records waiting in memory buffers");
    }
    if (dropped > 0) parts.push(fmtInt(dropped) + " records dropped" + (dropping ? ", still dropping" : ""));
    if (dropping && cls === "ok") cls = "warn";
    setText(s, parts.join(" · "));
    s.title = droppedBy.length ? "dropped by sink: " + droppedBy.join(", ") : "";
    s.className = "summary " + cls;
    setText($("site"), "site " + st.site);
    setText($("uptime"), "running " + fmtAge(st.uptime_seconds));
    setText($("updated"), "updated " + fmtClock(now));
  }

  // The last config reload, when there was one: what changed, or why the
  // new file was refused.
  function renderReload(r) {
    const e = $("reload");
    if (!r) {
      e.hidden = true;
      return;
    }
    const at = fmtClock(Date.parse(r.at));
    let text;
    if (r.ok) {
      const res = r.result || {};
      const parts = [];
      if (res.restarted && res.restarted.length) parts.push("restarted " + res.restarted.join(", "));
      if (res.added && res.added.length) parts.push("added " + res.added.join(", "));
      if (res.removed && res.removed.length) parts.push("removed " + res.removed.join(", "));
      text = "Config reloaded at " + at + (parts.length ? ": " + parts.join("; ") : ": nothing changed");
    } else {
      text = "Config reload at " + at + " refused; the previous config keeps running:\n" + (r.errors || []).join("\n");
    }
    setText(e, text);
    e.className = "reload" + (r.ok ? "" : " bad");
    e.hidden = false;
  }

  function render(st) {
    const s = recent[recent.length - 1];
    const now = s.t;
    for (const [key, f] of cards) {
      const [kind, name] = [key.slice(0, key.indexOf(":")), key.slice(key.indexOf(":") + 1)];
      if (kind === "route") renderRoute(f, s.routes.get(name));
      else renderModule(f, s.mods.get(name), kind, now);
    }
    renderSummary(st, now);
    renderReload(st.last_reload);
    drawEdges();
    drawCharts();
  }

  // ---------- events ----------

  const EVENT_KINDS = {
    state: "state",
    error: "error",
    drop: "drop",
    reload: "reload",
    write: "write",
  };

  function eventItem(ev) {
    const li = el("li", "ev k-" + (EVENT_KINDS[ev.kind] || "other"));
    li.dataset.eventId = ev.id;
    li.dataset.kind = ev.kind;
    const at = Date.parse(ev.time);
    const time = el("time", "ev-time", isFinite(at) ? fmtClock(at) : "–");
    if (isFinite(at)) {
      time.dateTime = ev.time;
      time.title = new Date(at).toLocaleString();
    }
    const kind = el("span", "ev-kind", ev.kind);
    const mod = el("span", "ev-module", ev.module || "ferry");
    mod.dataset.evModule = ev.module || "";
    const what = el("span", "ev-what");
    if (ev.kind === "state" && ev.to) {
      const change = el("span", "ev-change");
      change.dataset.field = "change";
      change.append(
        el("span", "ev-phase " + stateClass(ev.from), ev.from || "–"),
        el("span", "ev-arrow", " → "),
        el("span", "ev-phase " + stateClass(ev.to), ev.to)
      );
      what.append(change);
      if (ev.message && ev.message !== ev.to) what.append(el("span", "ev-msg", ev.message));
      if (ev.count) what.append(el("span", "ev-count", fmtInt(ev.count) + " errors kept quiet meanwhile"));
    } else {
      // An error's message is the word "error": its text says it all.
      if (ev.message && ev.message !== ev.kind) what.append(el("span", "ev-msg", ev.message));
      if (ev.count && ev.kind === "drop") what.append(el("span", "ev-count", fmtInt(ev.count) + " records"));
      else if (ev.count) what.append(el("span", "ev-count", fmtInt(ev.count) + " repeats not logged before this"));
    }
    li.append(time, kind, mod, what);
    // The full error text: one line until opened, the whole of it on hover.
    // With nothing else to say, it takes the message's place.
    if (ev.error && !(ev.message || "").endsWith(ev.error)) {
      const d = el("details", "ev-error");
      const sum = el("summary");
      sum.title = ev.error;
      sum.append(el("span", "ev-errtext", ev.error));
      d.append(sum);
      if (what.childNodes.length === 0) {
        d.classList.add("inline");
        what.append(d);
      } else {
        li.append(d);
      }
    }
    if (ev.kind === "drop") noteDrop(ev);
    return li;
  }

  // pollEvents fetches the events newer than the last one shown and puts
  // them on top. Ids start again at 1 when ferry restarts: a new start time
  // starts the list over.
  async function pollEvents(st) {
    const list = $("events");
    if (st.started !== eventsOf) {
      eventsOf = st.started;
      lastEventId = 0;
      list.replaceChildren();
    }
    const evs = await getJSON("api/events?after=" + lastEventId);
    if (!Array.isArray(evs) || evs.length === 0) {
      $("events-empty").hidden = list.children.length > 0;
      return;
    }
    const frag = document.createDocumentFragment();
    for (let i = evs.length - 1; i >= 0 && frag.childNodes.length < MAX_EVENTS; i--) frag.append(eventItem(evs[i]));
    list.prepend(frag);
    lastEventId = evs[evs.length - 1].id;
    while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
    $("events-empty").hidden = true;
  }

  // ---------- edges ----------

  function drawEdges() {
    const svg = $("edges");
    const box = $("graph").getBoundingClientRect();
    while (svg.firstChild) svg.firstChild.remove();
    if (!graph || getComputedStyle(svg).display === "none") return;
    svg.setAttribute("viewBox", "0 0 " + box.width + " " + box.height);
    svg.setAttribute("width", box.width);
    svg.setAttribute("height", box.height);
    const defs = svgEl("defs", {});
    for (const kind of ["", "edge-queued", "edge-bad"]) {
      const marker = svgEl("marker", {
        id: "arrow" + kind, viewBox: "0 0 10 10", refX: "9", refY: "5",
        markerWidth: "8", markerHeight: "8", markerUnits: "userSpaceOnUse", orient: "auto",
      });
      marker.append(svgEl("path", { d: "M0 0L10 5L0 10z", class: "arrowhead " + kind }));
      defs.append(marker);
    }
    svg.append(defs);

    // A fan is one stream leaving a card: a source's records, or what a
    // route forwards. It is drawn as one labelled stem that branches to
    // each target, so each rate is written once.
    const s = recent[recent.length - 1];
    const fans = [];
    const sinkClass = (name) => {
      const m = s && s.mods.get(name);
      if (!m || m.state === "up") return "";
      return m.spool ? "edge-queued" : "edge-bad";
    };
    for (const src of graph.sources) {
      const to = graph.routes.filter((r) => r.from.includes(src));
      fans.push({
        from: cards.get("source:" + src), id: src, rate: modRate(src, "records_out"),
        to: to.map((r) => ({ card: cards.get("route:" + r.name), id: src + ">" + r.name, cls: "" })),
        cls: sinkClass(src) === "" ? "" : "edge-bad",
      });
    }
    for (const r of graph.routes) {
      fans.push({
        from: cards.get("route:" + r.name), id: r.name, rate: routeRate(r.name),
        to: r.to.map((n) => ({ card: cards.get("sink:" + n), id: r.name + ">" + n, cls: sinkClass(n) })),
        cls: "",
      });
    }

    // Spread the arrow heads over each target's side, ordered by where
    // they come from, so that they cross as little as they can.
    const rect = (f) => f.el.getBoundingClientRect();
    const ins = new Map();
    for (const f of fans) {
      if (!f.from) continue;
      f.a = rect(f.from);
      for (const b of f.to) {
        if (!b.card) continue;
        b.r = rect(b.card);
        b.fromY = f.a.top + f.a.height / 2;
        if (!ins.has(b.card)) ins.set(b.card, []);
        ins.get(b.card).push(b);
      }
    }
    for (const list of ins.values()) {
      list.sort((x, y) => x.fromY - y.fromY);
      list.forEach((b, i) => {
        const pad = Math.min(16, b.r.height / 4);
        b.y = b.r.top + pad + ((b.r.height - 2 * pad) * (i + 1)) / (list.length + 1) - box.top;
      });
    }

    const paths = svgEl("g", {});
    const labels = svgEl("g", { class: "labels" });
    svg.append(paths, labels);
    const placed = [];
    const label = (text, cx, cy, id, cls) => {
      const w = text.length * 6.6 + 10;
      const h = 16;
      const r = { x: cx - w / 2, y: cy - h / 2, w, h };
      placed.push(r);
      const g = svgEl("g", { class: "label " + cls });
      g.append(svgEl("rect", { x: r.x, y: r.y, width: w, height: h, rx: 8 }));
      const tx = svgEl("text", { x: cx, y: cy + 0.5 });
      tx.textContent = text;
      tx.dataset.edge = id;
      g.append(tx);
      labels.append(g);
    };
    const width = (rate) => (1.2 + Math.min(3.5, Math.log10(1 + (rate || 0)) * 1.3)).toFixed(2);
    const idle = (rate) => (rate === 0 ? " edge-idle" : "");

    for (const f of fans) {
      const targets = f.to.filter((b) => b.r);
      if (!f.a || targets.length === 0) continue;
      const x1 = f.a.right - box.left;
      const y1 = f.a.top + f.a.height / 2 - box.top;
      const x2 = targets[0].r.left - box.left - 1;
      const text = fmtRate(f.rate);
      const sw = width(f.rate);
      if (targets.length === 1) {
        // One target: one curve, labelled where it crosses the gap's middle
        // unless another label is there.
        const b = targets[0];
        const dx = Math.max(16, (x2 - x1) / 2);
        const d = `M${x1} ${y1}C${x1 + dx} ${y1},${x2 - dx} ${b.y},${x2} ${b.y}`;
        const cls = (b.cls || f.cls) + idle(f.rate);
        const path = svgEl("path", { d, class: "edge " + cls, "marker-end": "url(#arrow" + (b.cls || f.cls) + ")" });
        path.setAttribute("stroke-width", sw);
        paths.append(path);
        const at = (t) => {
          const u = 1 - t;
          return {
            x: u * u * u * x1 + 3 * u * u * t * (x1 + dx) + 3 * u * t * t * (x2 - dx) + t * t * t * x2,
            y: u * u * u * y1 + 3 * u * u * t * y1 + 3 * u * t * t * b.y + t * t * t * b.y,
          };
        };
        const w = text.length * 6.6 + 10;
        let best = null;
        for (const t of [0.5, 0.35, 0.65, 0.25, 0.75]) {
          const p = at(t);
          const hits = placed.filter((q) => Math.abs(q.x + q.w / 2 - p.x) < (q.w + w) / 2 && Math.abs(q.y + 8 - p.y) < 17).length;
          if (!best || hits < best.hits) best = { p, hits };
          if (hits === 0) break;
        }
        label(text, best.p.x, best.p.y, b.id, b.cls || f.cls);
        continue;
      }
      // Several targets: a stem with the label, then one branch each.
      const jx = x1 + Math.min(56, (x2 - x1) * 0.45);
      const stem = svgEl("path", { d: `M${x1} ${y1}H${jx}`, class: "edge " + f.cls + idle(f.rate) });
      stem.setAttribute("stroke-width", sw);
      paths.append(stem);
      for (const b of targets) {
        const dx = Math.max(10, (x2 - jx) / 2);
        const cls = (b.cls || f.cls) + idle(f.rate);
        const path = svgEl("path", {
          d: `M${jx} ${y1}C${jx + dx} ${y1},${x2 - dx} ${b.y},${x2} ${b.y}`,
          class: "edge branch " + cls, "marker-end": "url(#arrow" + (b.cls || f.cls) + ")",
        });
        path.setAttribute("stroke-width", sw);
        path.dataset.branch = b.id;
        paths.append(path);
      }
      label(text, (x1 + jx) / 2 + 2, y1, f.id, f.cls);
    }
  }

  // ---------- charts ----------

  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  // rateSeries turns cumulative totals into rates over a few seconds.
  function rateSeries(key) {
    const out = [];
    const k = 5;
    for (let i = 1; i < totals.length; i++) {
      const a = totals[Math.max(0, i - k)];
      const b = totals[i];
      const dt = (b.t - a.t) / 1000;
      if (dt > 0) out.push({ t: b.t, v: Math.max(0, b[key] - a[key]) / dt });
    }
    return out;
  }

  function drawChart(svg, series, fmt, floor) {
    const w = Math.max(200, svg.clientWidth || 300);
    const h = Math.max(100, svg.clientHeight || 140);
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    while (svg.firstChild) svg.firstChild.remove();
    const left = 48;
    const right = 8;
    const top = 8;
    const bottom = 20;
    const pw = w - left - right;
    const ph = h - top - bottom;
    const end = totals.length ? totals[totals.length - 1].t : Date.now();
    const start = end - CHART_SPAN_MS;
    let max = 0;
    for (const s of series) for (const p of s.points) if (p.t >= start) max = Math.max(max, p.v);
    max = niceMax(Math.max(max * 1.1, floor));
    const x = (t) => left + ((t - start) / CHART_SPAN_MS) * pw;
    const y = (v) => top + ph - (v / max) * ph;

    for (const f of [0, 0.5, 1]) {
      const yy = y(max * f);
      svg.append(svgEl("line", { x1: left, x2: w - right, y1: yy, y2: yy, class: "grid" }));
      const t = svgEl("text", { x: left - 6, y: yy + 4, class: "ytick" });
      t.textContent = fmt(max * f);
      svg.append(t);
    }
    for (const [f, label] of [[0, "10 min ago"], [0.5, "5 min ago"], [1, "now"]]) {
      const t = svgEl("text", { x: left + f * pw, y: h - 4, class: "xtick x" + f * 2 });
      t.textContent = label;
      svg.append(t);
    }
    for (const s of series) {
      const pts = s.points.filter((p) => p.t >= start);
      if (pts.length < 2) continue;
      const line = pts.map((p) => x(p.t).toFixed(1) + "," + y(p.v).toFixed(1)).join(" ");
      if (s.area) {
        const area = `${x(pts[0].t).toFixed(1)},${y(0)} ${line} ${x(pts[pts.length - 1].t).toFixed(1)},${y(0)}`;
        svg.append(svgEl("polygon", { points: area, class: "area " + s.cls }));
      }
      svg.append(svgEl("polyline", { points: line, class: "line " + s.cls }));
    }
  }

  function drawCharts() {
    const read = rateSeries("read");
    const sent = rateSeries("sent");
    const spool = totals.map((p) => ({ t: p.t, v: p.spool }));
    drawChart(
      $("chart-rate"),
      [
        { points: sent, cls: "s-sent" },
        { points: read, cls: "s-read" },
      ],
      (v) => fmtRate(v).replace("/s", ""),
      1
    );
    drawChart(
      $("chart-spool"),
      [{ points: spool, cls: "s-spool", area: true }],
      (v) => (v >= 1e4 ? (v / 1e3).toFixed(0) + "k" : fmtInt(v)),
      10
    );
    const last = (s) => (s.length ? s[s.length - 1].v : null);
    setText($("now-read"), fmtRate(last(read)));
    setText($("now-sent"), fmtRate(last(sent)));
    setText($("now-spool"), spool.length ? fmtInt(last(spool)) : "–");
  }

  // ---------- data ----------

  async function getJSON(path) {
    const res = await fetch(path, { cache: "no-store" });
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  async function loadGraph() {
    build(await getJSON("api/graph"));
  }

  async function loadHistory() {
    const h = await getJSON("api/history");
    const idx = new Map(h.modules.map((n, i) => [n, i]));
    const sidx = new Map(h.spools.map((n, i) => [n, i]));
    totals = [];
    for (const s of h.samples) {
      pushTotal(
        totalsOf(s.t, (name, what) => {
          if (what === "spool") return sidx.has(name) ? s.spool[sidx.get(name)] : 0;
          return idx.has(name) ? s[what][idx.get(name)] : 0;
        })
      );
    }
  }

  function sameShape(st) {
    if (!graph) return false;
    const names = new Set((st.modules || []).map((m) => m.name));
    const known = new Set([...graph.sources, ...graph.sinks, ...graph.services]);
    if (names.size !== known.size || [...names].some((n) => !known.has(n))) return false;
    const routes = (st.routes || []).map((r) => r.name).join("\n");
    return routes === graph.routes.map((r) => r.name).join("\n");
  }

  async function tick() {
    try {
      const st = await getJSON("api/status");
      const reloaded = st.last_reload && st.last_reload.ok ? st.last_reload.at : "";
      if (!sameShape(st) || reloaded !== lastReload) {
        lastReload = reloaded;
        await loadGraph();
        recent = [];
      }
      const s = sampleOf(st);
      recent.push(s);
      while (recent.length > 2 && recent[0].t < s.t - 2 * RATE_SPAN_MS) recent.shift();
      pushTotal(
        totalsOf(s.t, (name, what) => {
          const m = s.mods.get(name);
          if (!m) return 0;
          if (what === "spool") return m.spool ? m.spool.records : 0;
          return what === "out" ? m.records_out : m.records_in;
        })
      );
      // Events first, so a drop they report marks its sink in this frame.
      await pollEvents(st);
      lastStatus = st;
      render(st);
      if (failing) {
        failing = false;
        $("banner").hidden = true;
      }
    } catch (err) {
      failing = true;
      const b = $("banner");
      setText(b, "Cannot reach ferry's admin endpoint (" + err.message + "); retrying every second. The figures below are from " + (recent.length ? fmtClock(recent[recent.length - 1].t) : "before") + ".");
      b.hidden = false;
    }
    setTimeout(tick, POLL_MS);
  }

  async function start() {
    try {
      await loadGraph();
      await loadHistory();
    } catch (err) {
      // tick reports an unreachable endpoint and keeps trying.
    }
    let pending = 0;
    new ResizeObserver(() => {
      if (pending || !lastStatus) return;
      pending = requestAnimationFrame(() => {
        pending = 0;
        drawEdges();
        drawCharts();
      });
    }).observe($("graph"));
    tick();
  }

  start();
})();
