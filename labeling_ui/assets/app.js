// Rudder labeling page. Plain JS, no build step, no network beyond this origin.
// Model text is only ever put in the DOM with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { me: null, project: null, mode: "pairwise", current: null, choice: null, clientId: null, busy: false };

function newClientId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function status(text, ok) {
  $("status").textContent = text || "";
  $("status").className = ok ? "ok" : "";
}

class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

async function api(method, path, body, contentType) {
  const headers = {};
  if (state.me) headers["X-CSRF-Token"] = state.me.csrf_token;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType || "application/json";
    payload = contentType ? body : JSON.stringify(body);
  }
  const res = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, data.error || res.statusText, data);
  return data;
}

function show(view) {
  for (const id of ["login-view", "projects-view", "label-view", "dashboard-view"]) $(id).hidden = id !== view;
  document.body.dataset.view = view;
}

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "n/a" : String(text);
  tr.appendChild(td);
  return td;
}

function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

// ---- session ----

async function boot() {
  try {
    state.me = await api("GET", "/api/me");
    signedIn();
  } catch (e) {
    show("login-view");
  }
}

function signedIn() {
  $("whoami").textContent = state.me.name + " (" + state.me.role + ")";
  $("logout").hidden = false;
  $("admin-tools").hidden = state.me.role !== "admin";
  $("labeled-head").textContent = state.me.role === "admin" ? "Labels (all)" : "Labeled by you";
  loadProjects();
}

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    state.me = await api("POST", "/api/login", { name: $("login-name").value, password: $("login-password").value });
    $("login-password").value = "";
    status("");
    signedIn();
  } catch (e) { status(e.message); }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/logout", {}); } catch (e) { /* the cookie is cleared either way */ }
  state.me = null;
  $("whoami").textContent = "";
  $("logout").hidden = true;
  show("login-view");
});

// ---- projects ----

async function loadProjects() {
  show("projects-view");
  let data;
  try { data = await api("GET", "/api/projects"); } catch (e) { return status(e.message); }
  const body = $("project-table").querySelector("tbody");
  body.replaceChildren();
  $("import-project").replaceChildren();
  for (const p of data.projects) {
    const tr = document.createElement("tr");
    tr.dataset.project = p.name;
    cell(tr, p.name); cell(tr, p.mode === "ranking" ? "ranking, K=" + p.k : p.mode);
    cell(tr, p.overlap); cell(tr, p.comparisons); cell(tr, p.labeled);
    const td = cell(tr, "");
    td.appendChild(button("Label", () => startLabeling(p.name)));
    if (state.me.role === "admin") td.appendChild(button("Dashboard", () => openDashboard(p.name)));
    body.appendChild(tr);
    const opt = document.createElement("option");
    opt.value = p.name; opt.textContent = p.name;
    $("import-project").appendChild(opt);
  }
}

$("project-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const body = { name: $("project-name").value, overlap: Number($("project-overlap").value), mode: $("project-mode").value };
    if (body.mode === "ranking") body.k = Number($("project-k").value);
    await api("POST", "/api/projects", body);
    status("Project created", true);
    loadProjects();
  } catch (e) { status(e.message); }
});

$("import-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const file = $("import-file").files[0];
  const project = $("import-project").value;
  if (!file || !project) return status("Choose a project and a file");
  $("import-errors").hidden = true;
  try {
    const r = await api("POST", "/api/projects/" + encodeURIComponent(project) + "/import", await file.text(), "application/x-ndjson");
    status("Imported " + r.items + " items (" + (r.rankings ? r.rankings + " to rank" : r.comparisons + " comparisons") + ")", true);
    loadProjects();
  } catch (e) {
    status(e.message);
    if (e.body && e.body.lines) {
      $("import-errors").textContent = e.body.lines.map((l) => "line " + l.line + ": " + l.message).join("\n");
      $("import-errors").hidden = false;
    }
  }
});

// ---- labeling ----

function projectPath(suffix) {
  return "/api/projects/" + encodeURIComponent(state.project) + suffix;
}

async function startLabeling(name) {
  state.project = name;
  $("label-project").textContent = name;
  show("label-view");
  await loadNext();
}

function renderPrompt(prompt, box) {
  box = box || $("prompt");
  box.replaceChildren();
  const messages = typeof prompt === "string" ? [{ role: "user", content: prompt }] : prompt;
  for (const m of messages) {
    const div = document.createElement("div");
    div.className = "message";
    const role = document.createElement("div");
    role.className = "role";
    role.textContent = m.role;
    const text = document.createElement("div");
    text.className = "message-body";
    text.textContent = m.content;
    div.append(role, text);
    box.appendChild(div);
  }
}

function renderProgress(p) {
  const what = state.mode === "ranking" ? " items" : " comparisons";
  $("progress").textContent = "You have labeled " + p.labeled + " of " + p.comparisons + what;
}

async function loadNext() {
  let data;
  try { data = await api("POST", projectPath("/next"), {}); } catch (e) { return status(e.message); }
  render(data);
}

// Shows a `next` answer: a comparison, or the done message.
function render(data) {
  state.mode = data.mode || "pairwise";
  renderProgress(data.progress);
  select(null);
  $("rationale").value = "";
  $("ranking").hidden = true;
  if (data.done) {
    state.current = null;
    $("comparison").hidden = true;
    $("done-msg").hidden = false;
    $("label-view").dataset.assignment = "done";
    return;
  }
  if (state.mode === "ranking") {
    state.current = data.ranking;
    state.clientId = newClientId();
    $("comparison").hidden = true;
    $("done-msg").hidden = true;
    Ranking.render(data.ranking);
    $("ranking").hidden = false;
    $("label-view").dataset.assignment = String(data.ranking.assignment_id);
    return;
  }
  const c = data.comparison;
  state.current = c;
  state.clientId = newClientId();
  renderPrompt(c.prompt);
  $("resp-a").textContent = c.a;
  $("resp-b").textContent = c.b;
  $("resp-a").scrollTop = 0;
  $("resp-b").scrollTop = 0;
  $("comparison").hidden = false;
  $("done-msg").hidden = true;
  $("label-view").dataset.assignment = String(c.assignment_id);
}

function select(choice) {
  state.choice = choice;
  for (const b of document.querySelectorAll(".choices button")) b.classList.toggle("selected", b.dataset.choice === choice);
  $("card-a").classList.toggle("selected", choice === "A");
  $("card-b").classList.toggle("selected", choice === "B");
}

for (const b of document.querySelectorAll(".choices button")) b.addEventListener("click", () => select(b.dataset.choice));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Retries reuse the same client id, so the server counts the click exactly once.
async function submit() {
  if (state.busy || !state.current) return;
  if (!state.choice) return status("Choose A, B, tie or both bad first (1-4)");
  await save("/api/labels", {
    assignment_id: state.current.assignment_id, choice: state.choice, client_id: state.clientId,
    rationale: $("rationale").value, project: state.project,
  });
}

// Posts a label or ranking (the body carries `project`, so the answer brings the next one) and
// shows what comes next.
async function save(path, body) {
  if (state.busy) return;
  state.busy = true;
  try {
    let answer;
    for (let attempt = 0; ; attempt++) {
      try {
        answer = await api("POST", path, body);
        break;
      } catch (e) {
        const retriable = !(e instanceof ApiError) || e.status >= 500;
        if (!retriable || attempt >= 5) throw e;
        status("Saving failed, retrying...");
        await sleep(300 * (attempt + 1));
      }
    }
    status(answer.duplicate ? "Already saved" : "Saved", true);
    render(answer.next);
  } catch (e) {
    status(e.message);
  } finally {
    state.busy = false;
  }
}

async function undo() {
  if (state.busy) return;
  state.busy = true;
  try {
    await api("POST", projectPath("/undo"), {});
    status("Undid your last label", true);
    await loadNext();
  } catch (e) {
    status(e.message);
  } finally {
    state.busy = false;
  }
}

$("submit").addEventListener("click", submit);
$("undo").addEventListener("click", undo);
$("undo-done").addEventListener("click", undo);
$("rank-undo").addEventListener("click", undo);
$("back").addEventListener("click", loadProjects);

document.addEventListener("keydown", (ev) => {
  if ($("label-view").hidden || ev.altKey || ev.metaKey) return;
  const inText = ev.target instanceof HTMLTextAreaElement || ev.target instanceof HTMLInputElement;
  if (inText) {
    if (ev.key === "Enter" && ev.ctrlKey) { ev.preventDefault(); submit(); }
    if (ev.key === "Escape") ev.target.blur();
    return;
  }
  if (ev.ctrlKey) return;
  if (state.mode === "ranking") {
    if (ev.key === "u" || ev.key === "U") { ev.preventDefault(); undo(); }
    else if (state.current) Ranking.key(ev);
    return;
  }
  const keys = { "1": "A", "2": "B", "3": "tie", "4": "both_bad" };
  if (keys[ev.key] && state.current) { ev.preventDefault(); select(keys[ev.key]); }
  else if (ev.key === "Enter") { ev.preventDefault(); submit(); }
  else if (ev.key === "u" || ev.key === "U") { ev.preventDefault(); undo(); }
});

// ---- admin dashboard ----

function fmt(x) { return x === null || x === undefined ? "n/a" : x.toFixed(3); }

async function openDashboard(name) {
  show("dashboard-view");
  $("dash-project").textContent = name;
  const base = "/api/projects/" + encodeURIComponent(name) + "/export";
  $("dash-export").href = base + "?ties=drop";
  $("dash-export-margin").href = base + "?ties=margin";
  $("dash-export-raw").href = base + "?raw=true";
  $("dash-export-raw").textContent = "raw labels / rankings";
  let s;
  try { s = await api("GET", "/api/projects/" + encodeURIComponent(name) + "/stats"); } catch (e) { return status(e.message); }
  $("dash-summary").textContent = s.mode === "ranking"
    ? s.labels + " rankings; " + s.complete + " of " + s.comparisons + " items have " + s.overlap +
      " or more rankings; Krippendorff's alpha (ordinal, rank positions) " + fmt(s.alpha_ordinal) +
      " over " + s.alpha_ordinal_units + " responses ranked by two or more labelers"
    : s.labels + " labels; " + s.complete + " of " + s.comparisons +
      " comparisons have " + s.overlap + " or more labels; Krippendorff's alpha " + fmt(s.alpha) +
      " over " + s.alpha_units + " overlapping comparisons";
  const lb = $("dash-labelers").querySelector("tbody");
  lb.replaceChildren();
  for (const l of s.labelers) { const tr = document.createElement("tr"); cell(tr, l.name); cell(tr, l.labeled); cell(tr, l.assigned); lb.appendChild(tr); }
  const kb = $("dash-kappa").querySelector("tbody");
  kb.replaceChildren();
  for (const k of s.kappa) { const tr = document.createElement("tr"); cell(tr, k.a); cell(tr, k.b); cell(tr, k.n); cell(tr, fmt(k.kappa)); kb.appendChild(tr); }
  const tb = $("dash-kendall").querySelector("tbody");
  tb.replaceChildren();
  for (const k of s.kendall) { const tr = document.createElement("tr"); cell(tr, k.a); cell(tr, k.b); cell(tr, k.n); cell(tr, fmt(k.tau)); tb.appendChild(tr); }
}

$("dash-back").addEventListener("click", loadProjects);

boot();
