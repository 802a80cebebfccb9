// ferry commissioning: the devices & tags view (api/devices, api/tags one
// page at a time, so 10,000 tags cost what 100 do), a tag's recent values
// and a write field, discovery (OPC UA browse tree, Modbus scan table) with
// a YAML snippet checked by the server's config loader, and a filter over
// the events list. No library, no build step; nothing inline (CSP).
"use strict";

(() => {
  const POLL_MS = 1000;
  const PAGE = 100;
  const CHART_POINTS = 120;
  const $ = (id) => document.getElementById(id);

  let commissioning = false;
  let offset = 0;
  let selected = null; // {source, device, tag}
  let series = []; // the selected tag's values on the chart
  let lastSeq = null;
  let typing = 0;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text != null) e.textContent = text;
    return e;
  }

  async function getJSON(path) {
    const res = await fetch(path, { cache: "no-store" });
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  async function postJSON(path, body) {
    const res = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(text.trim() || "HTTP " + res.status);
    return JSON.parse(text);
  }

  function fmtValue(v) {
    if (v === null || v === undefined) return "null";
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Math.round(v * 1e6) / 1e6);
    return String(v);
  }

  function fmtAge(s) {
    if (s < 1) return "now";
    if (s < 60) return Math.floor(s) + "s";
    if (s < 3600) return Math.floor(s / 60) + "m";
    return Math.floor(s / 3600) + "h";
  }

  const qualityClass = (q) => "q-" + String(q || "").toLowerCase();

  // ---------- devices ----------

  function diagFor(diags, source, device) {
    const d = diags && diags[source];
    if (!d || typeof d !== "object") return null;
    if (d[device] && typeof d[device] === "object") return d[device];
    return d;
  }

  function diagText(d) {
    const parts = [];
    for (const [k, v] of Object.entries(d)) {
      if (v === null || v === undefined || v === "" || k === "poll_groups") continue;
      if (Array.isArray(v)) {
        if (v.length) parts.push(k + " " + v.join("; "));
      } else if (typeof v === "object") {
        const inner = Object.entries(v).map(([a, b]) => a + " " + b).join(", ");
        if (inner) parts.push(k + " " + inner);
      } else {
        parts.push(k.replace(/_/g, " ") + " " + v);
      }
    }
    return parts.join(" · ");
  }

  function renderDevices(r) {
    commissioning = r.commissioning;
    $("commission-off").hidden = commissioning;
    $("discovery").classList.toggle("off", !commissioning);
    const list = $("devices");
    const sel = $("tag-device");
    const have = new Set([...sel.options].map((o) => o.value));
    const frag = document.createDocumentFragment();
    for (const d of r.devices) {
      const li = el("li", "device" + (d.stale ? " stale" : "") + (d.bad ? " has-bad" : ""));
      li.dataset.device = d.device;
      li.dataset.source = d.source;
      const head = el("div", "dev-head");
      head.append(
        el("b", "dev-name", d.device),
        el("span", "dev-src", d.source + " · " + (d.type || "?")),
        el("span", "dev-state st-" + (d.phase || "unknown"), d.phase || "?")
      );
      const meta = el("div", "dev-meta");
      meta.textContent = d.tags + " tags · " + d.bad + " BAD · every " + (d.interval_seconds || 0) + " s · last " + fmtAge(d.age_seconds) + " ago" + (d.stale ? " · STALE" : "");
      li.append(head, meta);
      const dg = diagFor(r.diagnostics, d.source, d.device);
      if (dg) li.append(el("div", "dev-diag", diagText(dg)));
      if (d.last_error) {
        const e = el("div", "dev-error", d.last_error);
        e.dataset.field = "last-error";
        li.append(e);
      }
      frag.append(li);
      if (!have.has(d.device)) {
        sel.append(new Option(d.source + " / " + d.device, d.device));
        have.add(d.device);
      }
    }
    list.replaceChildren(frag);
    $("devices-empty").hidden = r.devices.length > 0;
  }

  // ---------- tags ----------

  function query() {
    const p = new URLSearchParams();
    const q = $("tag-search").value.trim();
    if (q) p.set("q", q);
    if ($("tag-device").value) p.set("device", $("tag-device").value);
    if ($("tag-quality").value) p.set("quality", $("tag-quality").value);
    if ($("tag-stale").checked) p.set("stale", "true");
    p.set("offset", offset);
    p.set("limit", PAGE);
    return "api/tags?" + p.toString();
  }

  function renderTags(page) {
    const body = $("tags-body");
    const frag = document.createDocumentFragment();
    for (const t of page.tags) {
      const tr = el("tr", qualityClass(t.quality) + (t.stale ? " stale" : ""));
      tr.dataset.source = t.source;
      tr.dataset.device = t.device;
      tr.dataset.tag = t.tag;
      tr.tabIndex = 0;
      if (selected && selected.source === t.source && selected.device === t.device && selected.tag === t.tag) tr.classList.add("sel");
      const name = el("td", "t-name");
      name.append(el("span", "t-dev", t.device + "/"), el("span", "t-tag", t.tag));
      const val = el("td", "t-val", fmtValue(t.value) + (t.unit ? " " + t.unit : ""));
      val.dataset.field = "value";
      const q = el("td", "t-q");
      q.append(el("span", "qual " + qualityClass(t.quality), t.quality));
      if (t.stale) {
        const s = el("span", "stale-mark", "stale");
        s.dataset.field = "stale";
        s.title = "its device has sent nothing for several of its intervals";
        q.append(s);
      }
      tr.append(name, val, q, el("td", "t-age", fmtAge(t.age_seconds)), el("td", "t-rate", t.rate ? t.rate + "/s" : "–"));
      frag.append(tr);
    }
    body.replaceChildren(frag);
    const last = Math.min(page.offset + page.tags.length, page.matched);
    $("tags-count").textContent = page.matched === 0 ? "no tags match" : page.offset + 1 + "–" + last + " of " + page.matched + (page.matched !== page.total ? " (of " + page.total + ")" : "");
    $("tags-prev").disabled = page.offset === 0;
    $("tags-next").disabled = last >= page.matched;
    $("tags-empty").hidden = page.total > 0;
  }

  // ---------- one tag ----------

  function select(t) {
    selected = t;
    series = [];
    lastSeq = null;
    $("tag-detail").hidden = false;
    $("detail-name").textContent = t.device + "/" + t.tag;
    $("write-result").textContent = "";
    $("write-result").className = "write-result";
    for (const tr of $("tags-body").children) tr.classList.toggle("sel", tr.dataset.tag === t.tag && tr.dataset.device === t.device && tr.dataset.source === t.source);
    pollDetail(true);
  }

  async function pollDetail(first) {
    if (!selected) return;
    const s = selected;
    const p = new URLSearchParams(s);
    let d;
    try {
      d = await getJSON("api/tag?" + p.toString());
    } catch (err) {
      return;
    }
    if (s !== selected) return;
    if (first) series = (d.history || []).slice();
    else if (d.seq !== lastSeq && typeof d.value === "number") series.push(d.value);
    lastSeq = d.seq;
    while (series.length > CHART_POINTS) series.shift();
    $("detail-meta").textContent =
      fmtValue(d.value) + (d.unit ? " " + d.unit : "") + " · " + d.type + " · " + d.quality + (d.status ? " (status 0x" + d.status.toString(16) + ")" : "") +
      " · seq " + d.seq + " · " + d.updates + " updates" + (d.ts ? " · ts " + d.ts : "");
    drawChart();
    const canWrite = commissioning && d.writable !== "no";
    $("write-form").hidden = !canWrite;
    $("write-note").textContent = d.writable === "maybe" ? "the device decides whether this tag takes writes" : "";
  }

  function drawChart() {
    const svg = $("detail-chart");
    const NS = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    const w = 300,
      h = 80;
    svg.setAttribute("viewBox", "0 0 " + w + " " + h);
    if (series.length < 2) {
      const t = document.createElementNS(NS, "text");
      t.setAttribute("x", 8);
      t.setAttribute("y", 44);
      t.setAttribute("class", "chart-note");
      t.textContent = series.length ? "one value so far" : "no numeric values";
      svg.append(t);
      return;
    }
    let lo = Math.min(...series),
      hi = Math.max(...series);
    if (hi === lo) {
      hi += 1;
      lo -= 1;
    }
    const pts = series.map((v, i) => (i * w) / (series.length - 1) + "," + (h - 4 - ((v - lo) / (hi - lo)) * (h - 8))).join(" ");
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts);
    line.setAttribute("class", "tag-line");
    svg.append(line);
    $("detail-range").textContent = "min " + fmtValue(Math.min(...series)) + " · max " + fmtValue(Math.max(...series)) + " · " + series.length + " values";
  }

  function parseInput(s) {
    s = s.trim();
    if (s === "true" || s === "false") return s === "true";
    if (s !== "" && isFinite(Number(s))) return Number(s);
    return s;
  }

  async function write(ev) {
    ev.preventDefault();
    if (!selected) return;
    const out = $("write-result");
    out.className = "write-result";
    out.textContent = "writing…";
    try {
      const r = await postJSON("api/write", { source: selected.source, device: selected.device, tag: selected.tag, value: parseInput($("write-value").value) });
      out.textContent = r.status + (r.error ? ": " + r.error : "");
      out.classList.add("w-" + r.status);
    } catch (err) {
      out.textContent = "failed: " + err.message;
      out.classList.add("w-failed");
    }
  }

  // ---------- discovery ----------

  const picked = new Map(); // key → {kind, ...}

  function nodeItem(n, endpoint, security) {
    const li = el("li", "node n-" + String(n.NodeClass || "").toLowerCase());
    li.dataset.nodeId = n.NodeID;
    const row = el("div", "node-row");
    if (n.NodeClass === "Variable") {
      const cb = el("input");
      cb.type = "checkbox";
      cb.setAttribute("aria-label", "pick " + n.BrowseName);
      cb.addEventListener("change", () => {
        const key = "opcua " + n.NodeID;
        if (cb.checked) picked.set(key, { kind: "opcua", endpoint, security, id: n.NodeID, name: n.BrowseName.replace(/^\d+:/, "") });
        else picked.delete(key);
        updatePicked();
      });
      row.append(cb);
    } else {
      const b = el("button", "expand", "▸");
      b.type = "button";
      b.setAttribute("aria-expanded", "false");
      b.setAttribute("aria-label", "expand " + n.BrowseName);
      b.addEventListener("click", () => expand(li, b, n.NodeID, endpoint, security));
      row.append(b);
    }
    row.append(el("span", "node-name", n.BrowseName), el("span", "node-class", n.NodeClass));
    if (n.NodeClass === "Variable") {
      row.append(el("span", "node-type", n.DataType || "?"), el("span", "node-access", n.Access || "?"));
      const v = el("span", "node-value", n.Value || "");
      v.dataset.field = "node-value";
      row.append(v);
    }
    li.append(row);
    return li;
  }

  async function expand(li, btn, node, endpoint, security) {
    const open = btn.getAttribute("aria-expanded") === "true";
    const sub = li.querySelector(":scope > ul");
    if (open) {
      btn.setAttribute("aria-expanded", "false");
      btn.textContent = "▸";
      if (sub) sub.hidden = true;
      return;
    }
    btn.setAttribute("aria-expanded", "true");
    btn.textContent = "▾";
    if (sub) {
      sub.hidden = false;
      return;
    }
    const ul = el("ul", "tree");
    ul.append(el("li", "loading", "browsing…"));
    li.append(ul);
    try {
      const r = await postJSON("api/discover/opcua", { endpoint, security, node });
      ul.replaceChildren(...r.nodes.map((n) => nodeItem(n, endpoint, security)));
      if (!r.nodes.length) ul.append(el("li", "empty", "no children"));
    } catch (err) {
      ul.replaceChildren(el("li", "disc-error", err.message));
    }
  }

  async function browse(ev) {
    ev.preventDefault();
    const endpoint = $("ua-endpoint").value.trim();
    const security = $("ua-security").value.trim();
    const tree = $("ua-tree");
    tree.replaceChildren(el("li", "loading", "browsing…"));
    try {
      const r = await postJSON("api/discover/opcua", { endpoint, security });
      tree.replaceChildren(...r.nodes.map((n) => nodeItem(n, endpoint, security)));
    } catch (err) {
      tree.replaceChildren(el("li", "disc-error", err.message));
    }
  }

  const SCAN_TYPES = ["uint16", "int16"].concat(...["int32", "uint32", "float32"].map((t) => ["ABCD", "CDAB", "BADC", "DCBA"].map((o) => t + " " + o)));

  async function scan(ev) {
    ev.preventDefault();
    const req = {
      endpoint: $("mb-endpoint").value.trim(),
      unit: Number($("mb-unit").value),
      area: $("mb-area").value,
      first: Number($("mb-first").value),
      count: Number($("mb-count").value),
    };
    const out = $("mb-result");
    out.replaceChildren(el("p", "loading", "scanning…"));
    let r;
    try {
      r = await postJSON("api/discover/modbus", req);
    } catch (err) {
      out.replaceChildren(el("p", "disc-error", err.message));
      return;
    }
    const bits = req.area === "coil" || req.area === "discrete";
    const table = el("table", "scan");
    const head = el("tr");
    const cols = bits ? ["", "address", "value"] : ["", "address", "hex", "uint16", "int16", "chars"].concat(SCAN_TYPES.slice(2));
    for (const c of cols) head.append(el("th", null, c));
    const thead = el("thead");
    thead.append(head);
    const tbody = el("tbody");
    for (const g of r.registers) {
      const tr = el("tr");
      const cb = el("input");
      cb.type = "checkbox";
      cb.setAttribute("aria-label", "pick " + g.modicon);
      const td0 = el("td");
      td0.append(cb);
      tr.append(td0, el("td", null, g.modicon));
      if (bits) tr.append(el("td", null, String(g.bit)));
      else {
        tr.append(el("td", null, g.hex), el("td", null, String(g.uint16)), el("td", null, String(g.int16)), el("td", null, g.chars));
        for (const t of SCAN_TYPES.slice(2)) tr.append(el("td", null, g.pairs ? g.pairs[t] : ""));
      }
      cb.addEventListener("change", () => {
        const key = "modbus " + req.area + " " + g.address;
        if (!cb.checked) {
          picked.delete(key);
          const s = td0.querySelector("select");
          if (s) s.remove();
          updatePicked();
          return;
        }
        const p = { kind: "modbus", endpoint: req.endpoint, unit: req.unit, area: req.area, address: g.address, type: bits ? "" : "uint16", name: req.area + "_" + g.address };
        if (!bits) {
          const s = el("select", "as-type");
          s.setAttribute("aria-label", "read " + g.modicon + " as");
          for (const t of SCAN_TYPES) s.append(new Option(t, t));
          s.addEventListener("change", () => {
            p.type = s.value;
            updatePicked();
          });
          td0.append(s);
        }
        picked.set(key, p);
        updatePicked();
      });
      tbody.append(tr);
    }
    table.append(thead, tbody);
    const wrap = el("div", "scan-wrap");
    wrap.append(table);
    const note = el("p", "scan-note", r.registers.length + " read in " + r.requests + " request(s)" + (r.error ? " · stopped: " + r.error : ""));
    out.replaceChildren(note, wrap);
  }

  function updatePicked() {
    $("picked").textContent = picked.size ? picked.size + " picked" : "nothing picked";
    $("make-yaml").disabled = picked.size === 0;
  }

  async function makeYAML() {
    const items = [...picked.values()];
    const kinds = new Set(items.map((i) => i.kind));
    const out = $("yaml-result");
    const status = $("yaml-status");
    if (kinds.size !== 1) {
      status.textContent = "pick from one kind of device at a time (OPC UA or Modbus)";
      return;
    }
    const kind = items[0].kind;
    const body = { kind, name: $("yaml-name").value.trim() || kind, endpoint: items[0].endpoint };
    if (kind === "opcua") {
      body.security = items[0].security;
      body.nodes = items.map((i) => ({ id: i.id, name: i.name }));
    } else {
      body.unit = items[0].unit;
      body.registers = items.map((i) => {
        const [type, order] = i.type.split(" ");
        return { name: i.name, area: i.area, address: i.address, type, byte_order: order || "" };
      });
    }
    try {
      const r = await postJSON("api/discover/snippet", body);
      out.textContent = r.yaml;
      out.hidden = false;
      status.textContent = r.valid ? "valid: ferry's config loader accepts it; paste it into your config" : "not valid: " + r.error;
      status.className = r.valid ? "yaml-ok" : "yaml-bad";
    } catch (err) {
      status.textContent = err.message;
      status.className = "yaml-bad";
    }
  }

  // ---------- events filter ----------

  function filterEvents() {
    const kind = $("ev-kind").value;
    const text = $("ev-search").value.trim().toLowerCase();
    for (const li of $("events").children) applyFilter(li, kind, text);
  }

  function applyFilter(li, kind, text) {
    li.hidden = (kind && li.dataset.kind !== kind) || (text && !li.textContent.toLowerCase().includes(text));
  }

  // ---------- polling ----------

  async function tick() {
    try {
      renderDevices(await getJSON("api/devices"));
      renderTags(await getJSON(query()));
      if (selected) await pollDetail(false);
    } catch (err) {
      // The status page's banner says when the endpoint is away.
    }
    setTimeout(tick, POLL_MS);
  }

  function start() {
    $("tags-body").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr");
      if (tr) select({ source: tr.dataset.source, device: tr.dataset.device, tag: tr.dataset.tag });
    });
    $("tags-body").addEventListener("keydown", (ev) => {
      const tr = ev.target.closest("tr");
      if (tr && (ev.key === "Enter" || ev.key === " ")) {
        ev.preventDefault();
        select({ source: tr.dataset.source, device: tr.dataset.device, tag: tr.dataset.tag });
      }
    });
    const refilter = () => {
      offset = 0;
      clearTimeout(typing);
      typing = setTimeout(async () => renderTags(await getJSON(query())), 200);
    };
    for (const id of ["tag-search", "tag-device", "tag-quality", "tag-stale"]) $(id).addEventListener("input", refilter);
    $("tags-prev").addEventListener("click", async () => {
      offset = Math.max(0, offset - PAGE);
      renderTags(await getJSON(query()));
    });
    $("tags-next").addEventListener("click", async () => {
      offset += PAGE;
      renderTags(await getJSON(query()));
    });
    $("detail-close").addEventListener("click", () => {
      selected = null;
      $("tag-detail").hidden = true;
    });
    $("write-form").addEventListener("submit", write);
    $("ua-form").addEventListener("submit", browse);
    $("mb-form").addEventListener("submit", scan);
    $("make-yaml").addEventListener("click", makeYAML);
    $("ev-kind").addEventListener("input", filterEvents);
    $("ev-search").addEventListener("input", filterEvents);
    // Rows the status page adds later are filtered as they come.
    new MutationObserver((muts) => {
      const kind = $("ev-kind").value;
      const text = $("ev-search").value.trim().toLowerCase();
      if (!kind && !text) return;
      for (const m of muts) for (const n of m.addedNodes) if (n.nodeType === 1) applyFilter(n, kind, text);
    }).observe($("events"), { childList: true });
    updatePicked();
    tick();
  }

  start();
})();
