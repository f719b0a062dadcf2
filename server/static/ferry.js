// ferry's dashboard script: live updates over server-sent events and small conveniences on top
// of pages that work without it. No library, no inline code (the pages' policy forbids it), and
// every value from the server goes into the page as text, never as markup.
(function () {
  "use strict";

  var ICONS = { succeeded: "✓", failed: "✗", running: "▶", queued: "…", skipped: "–" };
  var PHASES = ["fetch", "render", "apply", "prune", "health"];

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function badge(state) {
    var b = el("span", "state " + state);
    b.setAttribute("data-state", state);
    var i = el("span", null, ICONS[state] || "○");
    i.setAttribute("aria-hidden", "true");
    b.appendChild(i);
    b.appendChild(document.createTextNode(" " + state));
    return b;
  }

  function when(iso) {
    if (!iso) return "—";
    return new Date(iso).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
  }

  function age(iso) {
    if (!iso) return "—";
    var s = Math.floor((Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 0) return "just now";
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    if (s < 48 * 3600) return Math.floor(s / 3600) + "h ago";
    return Math.floor(s / 86400) + "d ago";
  }

  function took(ms) {
    if (ms < 1000) return ms + "ms";
    return (Math.round(ms / 10) / 100) + "s";
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function setText(id, text) {
    var n = document.getElementById(id);
    if (n) n.textContent = text;
  }

  // Forms: one press sends one request; the button says what is happening meanwhile.
  function guardForms() {
    var forms = document.querySelectorAll("form[data-busy]");
    Array.prototype.forEach.call(forms, function (f) {
      f.addEventListener("submit", function () {
        var b = f.querySelector("button[type=submit]");
        if (!b) return;
        if (b.getAttribute("aria-disabled") === "true") return;
        b.setAttribute("aria-disabled", "true");
        b.dataset.label = b.textContent;
        b.textContent = f.getAttribute("data-busy");
        setTimeout(function () { b.disabled = true; }, 0);
      });
    });
    // Coming back to the page from the browser's history brings its buttons back too.
    window.addEventListener("pageshow", function (ev) {
      if (!ev.persisted) return;
      Array.prototype.forEach.call(document.querySelectorAll("form[data-busy] button[type=submit]"), function (b) {
        b.disabled = false;
        b.removeAttribute("aria-disabled");
        if (b.dataset.label) b.textContent = b.dataset.label;
      });
    });
  }

  // The sync page: follow one sync until it ends.
  function followSync(root) {
    var id = root.getAttribute("data-id");
    var status = document.getElementById("live-status");
    if (!window.EventSource) return;
    status.textContent = "Following this sync live…";
    var es = new EventSource("/api/v1/syncs/" + encodeURIComponent(id) + "/events");
    es.addEventListener("record", function (ev) {
      var r;
      try { r = JSON.parse(ev.data); } catch (e) { return; }
      renderRecord(r);
      if (r.state === "queued" || r.state === "running") {
        status.textContent = "This sync is " + r.state + ". Following it live…";
      }
    });
    es.addEventListener("end", function (ev) {
      var e = {};
      try { e = JSON.parse(ev.data); } catch (err) { /* keep the last record's state */ }
      es.close();
      root.removeAttribute("data-live");
      status.textContent = "This sync ended: " + (e.state || "over") + ".";
    });
    es.addEventListener("error", function () {
      if (es.readyState === EventSource.CLOSED) {
        status.textContent = "Live updates stopped. Reload the page to see where this sync stands.";
      } else {
        status.textContent = "Live updates interrupted; reconnecting…";
      }
    });
  }

  function renderRecord(r) {
    var st = document.getElementById("sync-state");
    if (st) { clear(st); st.appendChild(badge(r.state)); }
    var msg = document.getElementById("sync-message");
    if (msg) {
      clear(msg);
      msg.appendChild(el("strong", null, r.message || ""));
      msg.hidden = !r.message;
      msg.className = "card" + (r.error ? " err" : "");
    }
    renderError(r.error);
    setText("sync-started", when(r.startedAt));
    setText("sync-finished", when(r.finishedAt));
    setText("sync-took", r.startedAt && r.finishedAt ? took(new Date(r.finishedAt) - new Date(r.startedAt)) : "—");
    setText("sync-attempts", r.attempts || 0);
    setText("sync-worker", r.worker || "—");
    renderPhases(r.phases || {});
    renderObjects(r);
    renderDiff(r);
  }

  function renderError(e) {
    var box = document.getElementById("sync-error");
    if (!box) return;
    box.hidden = !e;
    if (!e) return;
    var dl = box.querySelector("dl");
    clear(dl);
    function row(k, v, code) {
      if (!v) return;
      dl.appendChild(el("dt", null, k));
      var dd = el("dd");
      dd.appendChild(el(code ? "code" : "span", null, v));
      dl.appendChild(dd);
    }
    row("stage", e.stage);
    row("object", e.object, true);
    row("file", e.file, true);
    dl.appendChild(el("dt", null, "message"));
    var dd = el("dd");
    dd.appendChild(el("pre", null, e.message || ""));
    dl.appendChild(dd);
  }

  function renderPhases(phases) {
    var sec = document.getElementById("sync-phases");
    if (!sec) return;
    var names = Object.keys(phases).sort(function (a, b) {
      var ia = PHASES.indexOf(a), ib = PHASES.indexOf(b);
      ia = ia < 0 ? 99 : ia; ib = ib < 0 ? 99 : ib;
      return ia - ib || (a < b ? -1 : 1);
    });
    sec.hidden = names.length === 0;
    var body = sec.querySelector("tbody");
    clear(body);
    names.forEach(function (n) {
      var tr = el("tr");
      tr.appendChild(el("td", null, n));
      tr.appendChild(el("td", null, took(phases[n])));
      body.appendChild(tr);
    });
  }

  function renderObjects(r) {
    var sec = document.getElementById("sync-objects");
    if (!sec) return;
    var counts = r.counts || {}, objects = r.objects || [];
    sec.hidden = Object.keys(counts).length === 0 && objects.length === 0;
    var p = document.getElementById("sync-counts");
    clear(p);
    Object.keys(counts).sort().forEach(function (k) {
      p.appendChild(document.createTextNode(k + ": "));
      p.appendChild(el("strong", null, counts[k]));
      p.appendChild(document.createTextNode("   "));
    });
    var body = sec.querySelector("tbody");
    clear(body);
    objects.forEach(function (o) {
      var tr = el("tr");
      [["kind", o.kind], ["namespace", o.namespace], ["name", o.name], ["action", o.action]].forEach(function (c) {
        var td = el("td", null, c[1] || "");
        td.setAttribute("data-label", c[0]);
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    var cut = document.getElementById("sync-objects-cut");
    if (cut) {
      cut.hidden = !r.objectsCut;
      cut.querySelector("span").textContent = (r.objectsCut || 0) + " more objects";
    }
  }

  function renderDiff(r) {
    if (!r.diff || document.querySelector("pre.diff")) return;
    var sec = el("section");
    sec.appendChild(el("h2", null, "Diff against the cluster"));
    var pre = el("pre", "diff");
    r.diff.replace(/\n$/, "").split("\n").forEach(function (line) {
      var t = line.replace(/^ +/, ""), kind = "same";
      if (t.indexOf("+ ") === 0) kind = "add";
      else if (t.indexOf("- ") === 0) kind = "del";
      else if (t.indexOf("~ ") === 0) kind = "change";
      else if (t.indexOf("* ") === 0) kind = "hook";
      pre.appendChild(el("span", "d-" + kind, line));
      pre.appendChild(document.createTextNode("\n"));
    });
    sec.appendChild(pre);
    document.getElementById("sync").appendChild(sec);
  }

  // The app list: filter as one types (the form still works without script) and show syncs as
  // they happen.
  function enhanceList(table) {
    var form = document.getElementById("filters");
    var rows = Array.prototype.slice.call(table.querySelectorAll("tbody tr[data-app]"));
    var shown = document.getElementById("shown");
    var total = rows.length;
    function apply() {
      var state = form.elements.state.value, repo = form.elements.repo.value;
      var q = form.elements.q.value.trim().toLowerCase();
      var n = 0;
      rows.forEach(function (tr) {
        var ok = true;
        if (state === "suspended") ok = tr.getAttribute("data-suspended") === "yes";
        else if (state) ok = tr.getAttribute("data-state") === state;
        if (ok && repo) ok = tr.getAttribute("data-repo") === repo;
        if (ok && q) ok = tr.getAttribute("data-text").toLowerCase().indexOf(q) >= 0;
        tr.hidden = !ok;
        if (ok) n++;
      });
      if (shown) shown.textContent = "Showing " + n + " of " + total + " apps.";
      var params = new URLSearchParams();
      if (state) params.set("state", state);
      if (repo) params.set("repo", repo);
      if (q) params.set("q", form.elements.q.value.trim());
      var qs = params.toString();
      history.replaceState(null, "", qs ? "/?" + qs : "/");
    }
    // Only rows the server rendered can be shown: with a narrower server-side filter, the
    // form submits as usual to widen it.
    var narrowed = location.search.length > 1 || table.getAttribute("data-paged") === "yes";
    if (form && !narrowed) {
      form.addEventListener("input", apply);
      form.addEventListener("change", apply);
      form.addEventListener("submit", function (ev) { ev.preventDefault(); apply(); });
    }
    if (!window.EventSource) return;
    var es = new EventSource("/api/v1/events");
    var note = document.getElementById("live-note");
    es.addEventListener("open", function () { if (note) note.hidden = false; });
    es.addEventListener("sync", function (ev) {
      var s;
      try { s = JSON.parse(ev.data); } catch (e) { return; }
      if (s.kind !== "deploy") return;
      var tr = table.querySelector('tbody tr[data-app="' + CSS.escape(s.app) + '"]');
      if (!tr) return;
      tr.setAttribute("data-state", s.state);
      var cell = tr.querySelector(".cell-state");
      clear(cell);
      cell.appendChild(badge(s.state));
      var commit = tr.querySelector(".cell-commit");
      clear(commit);
      var a = el("a");
      a.href = "/syncs/" + encodeURIComponent(s.id);
      a.appendChild(el("code", null, (s.sha || "").slice(0, 7)));
      commit.appendChild(a);
      var at = s.finishedAt || s.startedAt || s.enqueuedAt;
      var ageCell = tr.querySelector(".cell-age");
      clear(ageCell);
      var t = el("time", null, age(at));
      t.setAttribute("datetime", at);
      ageCell.appendChild(t);
      var node = document.querySelector('svg a.node[data-app="' + CSS.escape(s.app) + '"]');
      if (node) node.setAttribute("class", "node " + s.state);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    guardForms();
    var sync = document.getElementById("sync");
    if (sync && sync.getAttribute("data-live") === "yes") followSync(sync);
    var table = document.getElementById("apps");
    if (table) enhanceList(table);
  });
})();
