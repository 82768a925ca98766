// Ranking mode (issue #9): order K responses, best first, by keyboard or by dragging.
// Loaded after app.js and uses its helpers ($, state, status, save, renderPrompt).
// Model text only ever goes in with textContent.
"use strict";

// rows: [{n, text, tie, bad}] in the current order. `n` is the response's number as first shown
// (its key), `tie` means "same rank as the row above", `bad` is the unacceptable flag.
const Ranking = (() => {
  const r = { rows: [], sel: null, touched: false, drag: null };

  // Consecutive rows with `tie` form one tier; a tier never mixes acceptable and unacceptable.
  function tiers() {
    const out = [];
    r.rows.forEach((row, i) => {
      if (i > 0 && row.tie && row.bad === r.rows[i - 1].bad) out[out.length - 1].push(row);
      else out.push([row]);
    });
    return out;
  }

  function render(ranking) {
    r.rows = ranking.responses.map((text, i) => ({ n: i + 1, text, tie: false, bad: false }));
    r.sel = null;
    r.touched = false;
    renderPrompt(ranking.prompt, $("rank-prompt"));
    draw();
  }

  function small(text, title, onClick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    b.title = title;
    b.addEventListener("click", (ev) => { ev.stopPropagation(); onClick(); });
    return b;
  }

  function card(row, rank, tied) {
    const li = document.createElement("li");
    li.className = "rank-card" + (row.n === r.sel ? " selected" : "") + (row.bad ? " bad" : "");
    li.dataset.n = String(row.n);
    li.dataset.rank = String(rank);
    li.draggable = true;
    const head = document.createElement("div");
    head.className = "rank-head";
    const label = document.createElement("strong");
    label.textContent = (tied ? "= " : "") + "Rank " + rank + (row.bad ? " (unacceptable)" : "");
    const key = document.createElement("kbd");
    key.textContent = String(row.n);
    head.append(key, label,
      small("\u2191", "Move up (\u2191)", () => act(row.n, () => move(-1))),
      small("\u2193", "Move down (\u2193)", () => act(row.n, () => move(1))),
      small("= above", "Tie with the one above (T)", () => act(row.n, toggleTie)),
      small(row.bad ? "Acceptable" : "Unacceptable", "Flag (X)", () => act(row.n, toggleBad)));
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = row.text;
    li.append(head, text);
    li.addEventListener("click", () => { r.sel = row.n; draw(); });
    li.addEventListener("dragstart", (ev) => { r.drag = row.n; ev.dataTransfer.setData("text/plain", String(row.n)); });
    li.addEventListener("dragover", (ev) => ev.preventDefault());
    li.addEventListener("drop", (ev) => { ev.preventDefault(); dropOn(row.n); });
    return li;
  }

  function draw() {
    const list = $("rank-list");
    list.replaceChildren();
    tiers().forEach((tier, t) => tier.forEach((row, j) => list.appendChild(card(row, t + 1, j > 0))));
    const sel = list.querySelector(".rank-card.selected");
    if (sel && sel.scrollIntoView) sel.scrollIntoView({ block: "nearest" });
  }

  function act(n, f) { r.sel = n; f(); }
  const index = () => r.rows.findIndex((row) => row.n === r.sel);

  // Rows whose "tied with the row above" would now point at a different row lose the tie.
  function untieAround(i) {
    for (const j of [i, i + 1, i + 2]) if (r.rows[j]) r.rows[j].tie = false;
  }

  function move(dir) {
    const i = index();
    const j = i + dir;
    if (i < 0 || j < 0 || j >= r.rows.length) return;
    if (r.rows[i].bad !== r.rows[j].bad) return status("Unacceptable responses stay below the acceptable ones");
    untieAround(Math.min(i, j));
    [r.rows[i], r.rows[j]] = [r.rows[j], r.rows[i]];
    changed();
  }

  function toggleTie() {
    const i = index();
    if (i <= 0) return status("The top response has nothing above it to tie with");
    if (r.rows[i].bad !== r.rows[i - 1].bad) return status("Can't tie an acceptable with an unacceptable response");
    r.rows[i].tie = !r.rows[i].tie;
    changed();
  }

  // Flagged responses go below every acceptable one; unflagged ones come back just above them.
  function toggleBad() {
    const i = index();
    if (i < 0) return;
    const [row] = r.rows.splice(i, 1);
    if (r.rows[i]) r.rows[i].tie = false;
    row.bad = !row.bad;
    row.tie = false;
    const firstBad = r.rows.findIndex((x) => x.bad);
    const at = row.bad ? r.rows.length : (firstBad < 0 ? r.rows.length : firstBad);
    r.rows.splice(at, 0, row);
    if (r.rows[at + 1]) r.rows[at + 1].tie = false;
    changed();
  }

  function dropOn(target) {
    const from = r.rows.findIndex((row) => row.n === r.drag);
    const to = r.rows.findIndex((row) => row.n === target);
    r.drag = null;
    if (from < 0 || to < 0 || from === to) return;
    if (r.rows[from].bad !== r.rows[to].bad) return status("Unacceptable responses stay below the acceptable ones");
    const [row] = r.rows.splice(from, 1);
    if (r.rows[from]) r.rows[from].tie = false;
    row.tie = false;
    r.rows.splice(to, 0, row);
    if (r.rows[to + 1]) r.rows[to + 1].tie = false;
    r.sel = row.n;
    changed();
  }

  function changed() { r.touched = true; status(""); draw(); }

  function submit() {
    if (!state.current) return;
    if (!r.touched) {
      // Guards against submitting the random initial order by accident.
      r.touched = true;
      return status("Nothing moved yet: press Enter again to submit the order as shown");
    }
    const ranking = tiers().map((tier) => tier.map((row) => row.n - 1));
    const unacceptable = r.rows.filter((row) => row.bad).map((row) => row.n - 1);
    save("/api/rankings", {
      assignment_id: state.current.assignment_id, ranking, unacceptable,
      client_id: state.clientId, project: state.project,
    });
  }

  function key(ev) {
    const n = Number(ev.key);
    const handlers = {
      ArrowUp: () => move(-1), ArrowDown: () => move(1),
      t: toggleTie, T: toggleTie, x: toggleBad, X: toggleBad, Enter: submit,
    };
    if (Number.isInteger(n) && n >= 1 && n <= r.rows.length) { r.sel = n; draw(); }
    else if (handlers[ev.key]) {
      if (ev.key !== "Enter" && r.sel === null) return status("Select a response first (its number)");
      handlers[ev.key]();
    } else return;
    ev.preventDefault();
  }

  $("rank-submit").addEventListener("click", submit);
  return { render, key, tiers };
})();
