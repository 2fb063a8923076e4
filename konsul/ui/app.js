// Konsul web UI: three pages (Cluster, Keys, Services) over the node's own HTTP API.
//
// Safety rules this file keeps everywhere:
// - Nothing from the API is ever parsed as HTML: every element is made by h() below, every
//   string becomes a text node or an attribute set with setAttribute (never innerHTML).
//   The page's Content-Security-Policy forbids inline script anyway.
// - Requests go to this same origin only; the ACL token lives in sessionStorage (this tab, this
//   session) and travels in the X-Konsul-Token header, never in a URL.
// - Writes carry a JSON body and X-Konsul-Forward-Writes (a follower hands them to the leader;
//   a browser could not follow its redirect to another origin). Key edits are compare-and-set.
"use strict";

const WAIT = "30s"; // blocking reads: the node answers at once on a change, else after this
const CLUSTER_POLL_MS = 1000;
const TOKEN_KEY = "konsul.token";
const HEX_LIMIT = 4096; // bytes of a binary value shown as hex

// ---------------------------------------------------------------------------------- DOM

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child)); // strings become text nodes
  }
  return el;
}

function replace(el, ...children) {
  el.replaceChildren();
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) el.append(child);
  }
}

const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function badge(text, kind) {
  return h("span", { class: `badge ${kind || text}` }, text);
}

function named(text, tag = "span") {
  return h(tag, { class: "name" }, text);
}

// ---------------------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body, message, index = null) {
    super(message);
    this.status = status;
    this.body = body || {};
    this.index = index;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function explain(status, body) {
  const said = body && typeof body.message === "string" ? body.message : "";
  if (status === 401 || status === 403) {
    if (body && body.error === "cross-site request") return `Refused (403): ${said}`;
    const who = token()
      ? "The ACL token in use does not allow this"
      : "No ACL token is set and anonymous access does not allow this";
    return `Access denied (${status}): ${said || "permission denied"}. ${who}: enter a token ` +
      "with the needed policy in the ACL token field at the top right.";
  }
  if (status === 503) return `The cluster cannot answer right now (503): ${said}`;
  const code = body && typeof body.error === "string" ? body.error : "error";
  return `${status} ${code}: ${said || "the node gave no explanation"}`;
}

async function api(method, path, { body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers["X-Konsul-Token"] = t;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-Konsul-Forward-Writes"] = "true";
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
      credentials: "omit",
      redirect: "manual",
    });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, null, `The node did not answer (${err.message}).`);
  }
  if (resp.type === "opaqueredirect") {
    throw new ApiError(307, null,
      "This node redirected the request to the leader, which this page cannot follow; " +
      "open the UI on the leader's address.");
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  const raw = resp.headers.get("X-Konsul-Index");
  const index = raw === null ? null : Number(raw);
  if (!resp.ok) throw new ApiError(resp.status, data, explain(resp.status, data), index);
  return { data, index };
}

function kvPath(key) {
  return key.split("/").map(encodeURIComponent).join("/");
}

// Long-polls `path` with ?index=&wait= and calls onData(data, index) on every answer (404s
// too when allow404: onData(null, index)). Returns a function that stops it.
function watch(path, onData, onError, { allow404 = false } = {}) {
  const control = new AbortController();
  let stopped = false;
  (async () => {
    let index = null;
    while (!stopped) {
      const sep = path.includes("?") ? "&" : "?";
      const url = index === null ? path : `${path}${sep}index=${index}&wait=${WAIT}`;
      const started = Date.now();
      try {
        const { data, index: next } = await api("GET", url, { signal: control.signal });
        if (stopped) return;
        index = next === null || (index !== null && next < index) ? null : next;
        onData(data, next);
      } catch (err) {
        if (stopped || err.name === "AbortError") return;
        if (allow404 && err.status === 404) {
          index = err.index;
          onData(null, err.index);
        } else {
          index = null;
          onError(err);
          await sleep(1000);
          continue;
        }
      }
      // An index that did not move means the wait ran out (or the node restarted): fine, but
      // never spin if a node answers at once every time.
      if (Date.now() - started < 50) await sleep(100);
    }
  })();
  return () => {
    stopped = true;
    control.abort();
  };
}

// Polls `fn` every `ms` (after each answer), until the returned function is called.
function poll(fn, ms) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    await fn();
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// ------------------------------------------------------------------------------- banner

function showBanner(message, kind = "error") {
  const el = $("banner");
  if (!message) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  el.className = `banner ${kind}`;
  replace(el, message);
  el.hidden = false;
}

// -------------------------------------------------------------------------------- token

function setupToken() {
  const input = $("token");
  const state = $("token-state");
  const show = () => {
    state.textContent = token() ? "token set for this session" : "";
  };
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    input.value = "";
    show();
    route(); // reload the page's data with the new token
  });
  $("token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    input.value = "";
    show();
    route();
  });
  show();
}

// ------------------------------------------------------------------------------ cluster

function memberHealth(m) {
  if (!m.reachable) return badge("unreachable");
  if (m.error) return badge(m.status_code ? `error ${m.status_code}` : "error", "error");
  if (m.catching_up) return badge("catching up", "catching-up");
  return m.ready ? badge("healthy") : badge("not ready", "not-ready");
}

function lastContact(m) {
  if (!m.reachable || m.last_contact_ms === undefined || m.last_contact_ms === null) return "—";
  if (m.state === "Leader") return "leader";
  return `${m.last_contact_ms} ms ago`;
}

function clusterPage(main) {
  const summary = h("div", { class: "summary" });
  const body = h("tbody");
  const problems = h("div");
  replace(main,
    h("h1", {}, "Cluster"),
    summary,
    problems,
    h("table", { id: "members" },
      h("thead", {}, h("tr", {},
        h("th", {}, "Member"), h("th", {}, "Role"), h("th", {}, "Voter"),
        h("th", {}, "Raft address"), h("th", {}, "HTTP address"), h("th", {}, "Last contact"),
        h("th", { class: "num" }, "Term"), h("th", { class: "num" }, "Commit"),
        h("th", { class: "num" }, "Applied"), h("th", {}, "Health"))),
      body));

  const render = (c) => {
    const healthy = c.members.filter((m) => m.reachable && !m.error && m.ready).length;
    const voters = c.members.filter((m) => m.voter && m.member).length;
    replace(summary,
      h("div", { id: "leader" }, h("span", { class: "muted" }, "Leader"),
        h("strong", { class: "name" }, c.leader_id || "none known")),
      h("div", {}, h("span", { class: "muted" }, "Term"), h("strong", {}, c.term)),
      h("div", {}, h("span", { class: "muted" }, "Members"),
        h("strong", {}, `${c.members.length} (${voters} ${voters === 1 ? "voter" : "voters"})`)),
      h("div", {}, h("span", { class: "muted" }, "Healthy"),
        h("strong", {}, `${healthy} / ${c.members.length}`)),
      h("div", {}, h("span", { class: "muted" }, "This page is served by"),
        h("strong", { class: "name" }, c.node_id)));
    replace(problems, c.members.filter((m) => m.error).map((m) =>
      h("div", { class: "notice error" }, named(m.id), `: ${m.error}`)));
    replace(body, c.members.map((m) => {
      const leads = m.id === c.leader_id;
      return h("tr", { class: leads ? "leader" : "", "data-member": m.id },
        h("td", {}, named(m.id, "strong"), m.id === c.node_id ? h("span", { class: "muted" }, " (this node)") : "",
          m.member ? "" : h("span", { class: "muted" }, " (not in the configuration)")),
        h("td", {}, leads ? badge("leader") : (m.state || "—")),
        h("td", {}, m.voter ? "voter" : "non-voter"),
        h("td", { class: "mono" }, m.address || (c.clustered ? "—" : "standalone")),
        h("td", { class: "mono" }, m.http_address || "—"),
        h("td", {}, lastContact(m)),
        h("td", { class: "num" }, m.term ?? "—"),
        h("td", { class: "num" }, m.commit_index ?? "—"),
        h("td", { class: "num" }, m.applied_index ?? "—"),
        h("td", {}, memberHealth(m)));
    }));
    $("served-by").textContent = `node ${c.node_id}`;
  };

  return poll(async () => {
    try {
      const { data } = await api("GET", "/ui/api/cluster");
      render(data);
      showBanner(null);
    } catch (err) {
      showBanner(err.message);
    }
  }, CLUSTER_POLL_MS);
}

// --------------------------------------------------------------------------------- keys

const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f]/; // C0 controls except tab and newline

function classify(value) {
  if (value === null || CONTROL.test(value)) return "binary";
  const trimmed = value.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      JSON.parse(trimmed);
      return "json";
    } catch {
      return "text";
    }
  }
  return "text";
}

// A value that is not UTF-8 text comes as "value": null with value_base64 (docs/api.md).
function valueBytes(entry) {
  if (entry.value !== null) return new TextEncoder().encode(entry.value);
  return Uint8Array.from(atob(entry.value_base64), (c) => c.charCodeAt(0));
}

function hexDump(bytes) {
  const lines = [];
  for (let at = 0; at < Math.min(bytes.length, HEX_LIMIT); at += 16) {
    const row = Array.from(bytes.slice(at, at + 16));
    const hex = row.map((b) => b.toString(16).padStart(2, "0")).join(" ").padEnd(47, " ");
    const ascii = row.map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${at.toString(16).padStart(8, "0")}  ${hex}  ${ascii}`);
  }
  if (bytes.length > HEX_LIMIT) lines.push(`… ${bytes.length - HEX_LIMIT} more bytes`);
  return lines.join("\n");
}

function parentOf(key) {
  if (key.endsWith("/")) return key; // a key named like a folder is listed inside it
  return key.slice(0, key.lastIndexOf("/") + 1);
}

function crumbs(prefix) {
  const parts = prefix.split("/").filter((p, i, all) => i < all.length - 1);
  const links = [h("a", { href: "#/keys/" }, "(root)")];
  let so_far = "";
  for (const part of parts) {
    so_far += `${part}/`;
    links.push(h("span", { class: "muted" }, " / "),
      h("a", { href: `#/keys/${kvPath(so_far)}` }, named(part)));
  }
  return h("div", { class: "crumbs" }, links);
}

function keysPage(main, prefix, selected) {
  const stops = [];
  const list = h("ul", { class: "tree", id: "tree" });
  const pane = h("div", { id: "key-pane" });
  const notices = h("div");
  const newButton = h("button", { id: "new-key", onclick: () => openCreate() }, "New key");
  const deleteFolder = h("button", { id: "delete-prefix", class: "danger", onclick: () => askDeletePrefix() },
    prefix ? "Delete folder…" : "Delete all keys…");
  replace(main,
    h("h1", {}, "Keys"),
    crumbs(prefix),
    h("div", { class: "toolbar" }, newButton, deleteFolder),
    notices,
    h("div", { class: "keys" },
      h("div", { class: "panel" }, list),
      pane));

  const renderList = (names) => {
    const items = names.map((full) => {
      const rest = full.slice(prefix.length);
      if (full === prefix) { // a key named exactly like this folder
        return h("li", {}, h("a", { href: `#/key/${kvPath(full)}`, class: full === selected ? "selected" : "" },
          named(full), h("span", { class: "muted" }, " (key)")));
      }
      if (rest.endsWith("/")) {
        return h("li", {}, h("a", { class: "folder", href: `#/keys/${kvPath(full)}` }, named(rest)));
      }
      return h("li", {}, h("a", { href: `#/key/${kvPath(full)}`, class: full === selected ? "selected" : "" },
        named(rest)));
    });
    replace(list, items.length ? items : h("li", { class: "muted" }, h("a", {}, "(no keys here)")));
  };
  stops.push(watch(`/kv/?prefix=${encodeURIComponent(prefix)}&keys&separator=/`, renderList,
    (err) => replace(list, h("li", {}, h("div", { class: "notice error" }, err.message)))));

  if (selected !== null) stops.push(keyPane(pane, selected));
  else replace(pane, h("p", { class: "muted" }, "Choose a key, or create one."));

  function openCreate() {
    const keyInput = h("input", { id: "new-key-name", class: "wide", value: prefix, spellcheck: "false" });
    const valueInput = h("textarea", { id: "new-key-value", spellcheck: "false" });
    const result = h("div");
    const create = async () => {
      const key = keyInput.value;
      try {
        await api("PUT", `/kv/${kvPath(key)}`, { body: { value: valueInput.value, cas: 0 } });
        go(`#/key/${kvPath(key)}`);
      } catch (err) {
        const text = err.status === 409
          ? `A key named "${key}" already exists; nothing was overwritten. Open it to edit it.`
          : err.message;
        replace(result, h("div", { class: "notice error", id: "create-error" }, text));
      }
    };
    replace(pane, h("div", { class: "panel" },
      h("h2", {}, "New key"),
      h("label", { class: "field", for: "new-key-name" }, "Key"), keyInput,
      h("label", { class: "field", for: "new-key-value" }, "Value"), valueInput,
      result,
      h("div", { class: "toolbar" },
        h("button", { class: "primary", id: "create-key", onclick: create }, "Create"),
        h("button", { onclick: () => route() }, "Cancel"))));
    keyInput.focus();
  }

  async function askDeletePrefix() {
    let count;
    try {
      const { data } = await api("GET", `/kv/?prefix=${encodeURIComponent(prefix)}&keys`);
      count = data.length;
    } catch (err) {
      replace(notices, h("div", { class: "notice error" }, err.message));
      return;
    }
    const where = prefix ? ["under ", named(prefix, "code")] : ["in the whole store"];
    if (count === 0) {
      replace(notices, h("div", { class: "notice warn" }, "There are no keys ", where, " to delete."));
      return;
    }
    const plural = count === 1 ? "key" : "keys";
    const confirm = async () => {
      try {
        const path = prefix ? `/kv/${kvPath(prefix)}?recurse` : "/kv/?recurse";
        const { data } = await api("DELETE", path);
        const extra = data.deleted === count ? "" : ` (${count} were counted a moment before)`;
        flash = `Deleted ${data.deleted} ${data.deleted === 1 ? "key" : "keys"}${extra}.`;
        go(`#/keys/${kvPath(parentOf(prefix.slice(0, -1)))}`);
      } catch (err) {
        replace(notices, h("div", { class: "notice error" }, err.message));
      }
    };
    replace(notices, h("div", { class: "dialog", id: "confirm-delete-prefix" },
      h("p", {}, h("strong", {}, `Delete ${count} ${plural} `), where, "? This cannot be undone."),
      h("div", { class: "toolbar" },
        h("button", { class: "danger confirm", id: "confirm-delete", onclick: confirm },
          `Delete ${count} ${plural}`),
        h("button", { onclick: () => replace(notices) }, "Cancel"))));
  }

  return () => stops.forEach((stop) => stop());
}

// The right-hand pane of one key: its value (live), edit and delete with compare-and-set.
function keyPane(pane, key) {
  let entry = null; // the latest answer for this key (null: absent)
  let editing = null; // {base: modify_index the edit started from, textarea}
  let mode = null; // "json" | "text" | "raw" | "binary"
  const head = h("div");
  const view = h("div", { id: "key-view" });
  const notices = h("div", { id: "key-notices" });
  replace(pane, h("div", { class: "panel" }, head, notices, view));

  const note = (kind, ...text) => replace(notices, h("div", { class: `notice ${kind}` }, ...text));

  const renderHead = () => {
    replace(head,
      h("h2", { id: "key-name" }, named(key)),
      entry
        ? h("div", { class: "meta" },
          h("span", {}, "flags ", entry.flags), h("span", {}, "created at index ", entry.create_index),
          h("span", { id: "key-index" }, "modified at index ", entry.modify_index),
          h("span", {}, `${valueBytes(entry).length} bytes`))
        : h("div", { class: "meta" }, "This key does not exist (or was deleted)."));
  };

  const renderView = () => {
    if (editing) return;
    if (!entry) {
      replace(view);
      return;
    }
    const kind = classify(entry.value);
    if (mode === null || (kind !== "json" && mode === "json") || kind === "binary") mode = kind;
    const tabs = kind === "json"
      ? h("div", { class: "tabs" },
        h("button", { class: mode === "json" ? "active" : "", onclick: () => { mode = "json"; renderView(); } }, "JSON"),
        h("button", { class: mode === "text" ? "active" : "", onclick: () => { mode = "text"; renderView(); } }, "Raw"))
      : null;
    let shown;
    if (mode === "binary") shown = hexDump(valueBytes(entry));
    else if (mode === "json") shown = JSON.stringify(JSON.parse(entry.value.trim()), null, 2);
    else shown = entry.value;
    replace(view,
      kind === "binary"
        ? h("p", { class: "muted" }, "Binary value (it holds control characters), shown as hex. " +
          "Edit it through the API or konsulctl: a text box would alter it.")
        : tabs,
      h("pre", { class: "value", id: "key-value", "data-kind": mode }, shown),
      h("div", { class: "toolbar" },
        kind === "binary" ? null : h("button", { id: "edit-key", onclick: startEdit }, "Edit"),
        h("button", { id: "delete-key", class: "danger", onclick: askDelete }, "Delete")));
  };

  function startEdit() {
    const textarea = h("textarea", { id: "edit-value", spellcheck: "false" });
    textarea.value = entry.value;
    editing = { base: entry.modify_index, textarea };
    replace(notices);
    replace(view,
      textarea,
      h("div", { class: "toolbar" },
        h("button", { class: "primary", id: "save-key", onclick: save }, "Save"),
        h("button", { onclick: stopEdit }, "Cancel"),
        h("span", { class: "muted" }, `Saving needs the key still at index ${editing.base}: `,
          "a change by anyone else first is refused, not overwritten.")));
    textarea.focus();
  }

  function stopEdit() {
    editing = null;
    replace(notices);
    renderView();
  }

  async function save() {
    const base = editing.base;
    try {
      await api("PUT", `/kv/${kvPath(key)}`, { body: { value: editing.textarea.value, cas: base } });
      editing = null;
      note("ok", "Saved.");
      renderView();
    } catch (err) {
      if (err.status === 409) {
        const now = err.body.current_index;
        note("error", h("strong", {}, "Not saved: "),
          `someone else changed this key after you opened it (you edited the version at index ${base}; ` +
          (now ? `it is now at index ${now}).` : "it has since been deleted).") +
          " Your text is still in the box; copy what you need, then reload the current value.",
          " ", h("button", { id: "reload-key", onclick: stopEdit }, "Reload the current value"));
      } else {
        note("error", err.message);
      }
    }
  }

  function askDelete() {
    const index = entry.modify_index;
    const confirm = async () => {
      try {
        await api("DELETE", `/kv/${kvPath(key)}?cas=${index}`);
        flash = `Deleted the key "${key}".`;
        go(`#/keys/${kvPath(parentOf(key))}`);
      } catch (err) {
        note("error", err.status === 409
          ? `Not deleted: someone changed this key after you opened it (now at index ${err.body.current_index}). Look at the new value first.`
          : err.message);
      }
    };
    replace(notices, h("div", { class: "dialog", id: "confirm-delete-key" },
      h("p", {}, "Delete the key ", named(key, "code"), "?"),
      h("div", { class: "toolbar" },
        h("button", { class: "danger confirm", id: "confirm-delete", onclick: confirm }, "Delete"),
        h("button", { onclick: () => replace(notices) }, "Cancel"))));
  }

  return watch(`/kv/${kvPath(key)}`, (data) => {
    const before = entry;
    entry = data;
    if (editing && (!entry || entry.modify_index !== editing.base)) {
      note("warn", "This key changed ",
        entry ? `(now at index ${entry.modify_index}) ` : "(it was deleted) ",
        "while you were editing: saving will be refused. Cancel to see the new value.");
    } else if (!editing && before && !entry) {
      note("warn", "This key was deleted.");
    }
    renderHead();
    renderView();
  }, (err) => note("error", err.message), { allow404: true });
}

// ----------------------------------------------------------------------------- services

const STATUSES = ["passing", "warning", "critical"];
const servicesFilter = { status: "", tag: "" };

function matches(instance) {
  if (servicesFilter.status && instance.status !== servicesFilter.status) return false;
  if (servicesFilter.tag && !(instance.tags || []).includes(servicesFilter.tag)) return false;
  return true;
}

function counts(items) { // instances or checks, by status
  const out = { passing: 0, warning: 0, critical: 0 };
  for (const item of items) out[item.status] = (out[item.status] || 0) + 1;
  return out;
}

function countCell(n, status) {
  return h("td", { class: `num count ${n ? status : "zero"}`, "data-status": status }, n);
}

function checkTarget(check) {
  if (check.type === "http") return check.http;
  if (check.type === "tcp") return check.tcp;
  if (check.type === "ttl") return `TTL ${check.ttl}`;
  return "";
}

function servicesPage(main, selected) {
  const filters = h("div", { class: "filters" });
  const content = h("div", { id: "services-content" });
  let instances = [];
  replace(main, h("h1", {}, selected === null
    ? "Services"
    : [h("a", { href: "#/services" }, "Services"), " / ", named(selected)]), filters, content);

  const renderFilters = () => {
    const tags = [...new Set(instances.flatMap((i) => i.tags || []))].sort();
    if (servicesFilter.tag && !tags.includes(servicesFilter.tag)) tags.push(servicesFilter.tag);
    const status = h("select", { id: "filter-status", onchange: (e) => { servicesFilter.status = e.target.value; render(); } },
      h("option", { value: "" }, "any status"),
      STATUSES.map((s) => h("option", { value: s, selected: servicesFilter.status === s }, s)));
    const tag = h("select", { id: "filter-tag", onchange: (e) => { servicesFilter.tag = e.target.value; render(); } },
      h("option", { value: "" }, "any tag"),
      tags.map((t) => h("option", { value: t, selected: servicesFilter.tag === t }, t)));
    replace(filters, h("label", {}, "Status ", status), h("label", {}, "Tag ", tag),
      h("span", { class: "muted" }, "live: updates as checks change"));
  };

  const renderList = () => {
    const byName = new Map();
    for (const i of instances) {
      if (!byName.has(i.name)) byName.set(i.name, []);
      byName.get(i.name).push(i);
    }
    const rows = [];
    for (const [service, all] of [...byName.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      const shown = all.filter(matches);
      if (!shown.length) continue;
      const byStatus = counts(shown);
      const checks = counts(shown.flatMap((i) => i.checks || []));
      const tags = [...new Set(shown.flatMap((i) => i.tags || []))].sort();
      rows.push(h("tr", { "data-service": service },
        h("td", {}, h("a", { href: `#/services/${encodeURIComponent(service)}` }, named(service, "strong"))),
        h("td", { class: "num" }, shown.length),
        STATUSES.map((s) => countCell(byStatus[s], s)),
        h("td", { class: "mono" }, STATUSES.map((s) =>
          h("span", { class: `count ${checks[s] ? s : "zero"}`, title: `${s} checks` }, `${checks[s]} ${s} `))),
        h("td", {}, h("span", { class: "tags" }, tags.map((t) => h("span", { class: "tag name" }, t))))));
    }
    replace(content, rows.length
      ? h("table", { id: "services" },
        h("thead", {}, h("tr", {},
          h("th", {}, "Service"), h("th", { class: "num" }, "Instances"),
          STATUSES.map((s) => h("th", { class: "num" }, s)), h("th", {}, "Checks"), h("th", {}, "Tags"))),
        h("tbody", {}, rows))
      : h("p", { class: "muted" }, instances.length ? "No instance matches the filters." : "No services registered."));
  };

  const renderService = () => {
    const all = instances.filter((i) => i.name === selected);
    const shown = all.filter(matches);
    if (!all.length) {
      replace(content, h("p", { class: "muted" }, "No instances of this service (any more)."));
      return;
    }
    replace(content,
      h("p", { class: "muted" }, `${shown.length} of ${all.length} instances shown`),
      shown.map((i) => h("div", { class: "panel instance", "data-instance": i.id },
        h("h2", {}, named(i.id), badge(i.status),
          h("span", { class: "mono muted" }, `${i.address || "(no address)"}:${i.port}`)),
        (i.tags || []).length ? h("p", {}, h("span", { class: "tags" }, i.tags.map((t) => h("span", { class: "tag name" }, t)))) : null,
        Object.keys(i.meta || {}).length
          ? h("p", { class: "mono" }, Object.entries(i.meta).map(([k, v]) => h("span", { class: "tag name" }, `${k}=${v}`)))
          : null,
        (i.checks || []).length
          ? h("table", { class: "checks" },
            h("thead", {}, h("tr", {}, h("th", {}, "Check"), h("th", {}, "Type"), h("th", {}, "Target"),
              h("th", {}, "Interval"), h("th", {}, "Status"), h("th", {}, "Output"))),
            h("tbody", {}, i.checks.map((c) => h("tr", { "data-check": c.id },
              h("td", {}, named(c.name), h("div", { class: "muted mono name" }, c.id)),
              h("td", {}, c.type),
              h("td", { class: "mono name" }, checkTarget(c)),
              h("td", {}, c.type === "ttl" ? "—" : c.interval),
              h("td", {}, badge(c.status)),
              h("td", {}, h("pre", { class: "output" }, c.output))))))
          : h("p", { class: "muted" }, "No checks: the instance counts as passing."))));
  };

  const render = () => {
    renderFilters();
    if (selected === null) renderList();
    else renderService();
  };

  return watch("/services", (data) => {
    instances = data || [];
    showBanner(null);
    render();
  }, (err) => showBanner(err.message));
}

// ------------------------------------------------------------------------------- router

let stopPage = () => {};

function decodePath(rest) {
  return rest.split("/").map(decodeURIComponent).join("/");
}

// A message to show once the next page is up (a write that also navigates, e.g. a delete).
let flash = null;

// Navigate; re-render when the address does not change (no hashchange event then).
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function route() {
  stopPage();
  showBanner(flash, "info");
  flash = null;
  const hash = location.hash.replace(/^#/, "") || "/cluster";
  const main = $("main");
  let page;
  try {
    if (hash.startsWith("/keys/")) {
      page = "keys";
      stopPage = keysPage(main, decodePath(hash.slice("/keys/".length)), null);
    } else if (hash.startsWith("/key/")) {
      page = "keys";
      const key = decodePath(hash.slice("/key/".length));
      stopPage = keysPage(main, parentOf(key), key);
    } else if (hash === "/services") {
      page = "services";
      stopPage = servicesPage(main, null);
    } else if (hash.startsWith("/services/")) {
      page = "services";
      stopPage = servicesPage(main, decodeURIComponent(hash.slice("/services/".length)));
    } else {
      page = "cluster";
      stopPage = clusterPage(main);
    }
  } catch (err) { // a malformed address (bad percent-encoding): say so instead of a blank page
    stopPage = () => {};
    replace(main, h("div", { class: "notice error" }, `Cannot open this address: ${err.message}`));
  }
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
}

function start() {
  setupToken();
  window.addEventListener("hashchange", route);
  route();
  api("GET", "/ui/api/cluster").then(({ data }) => {
    $("served-by").textContent = `node ${data.node_id}`;
  }, () => {});
}

start();
