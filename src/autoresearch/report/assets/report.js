(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("ar-data").textContent);
  var M = D.meta, ROWS = D.rows, REFS = D.refs || [], SVGNS = "http://www.w3.org/2000/svg";
  var BY = {}; ROWS.forEach(function (r) { BY[r.s] = r; });
  var STATUSES = ["keep", "discard", "crash", "rejected", "running"];

  function esc(s) {
    return String(s == null ? "" : s).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c];
    });
  }
  // fixed point as the seed prints, exponent form beyond 1e15 (fixed would print up to 21 digits)
  function fixed(v, d) { v = Number(v); d = d == null ? 6 : d; return Math.abs(v) < 1e15 ? v.toFixed(d) : v.toExponential(d); }
  function num(v, d) { return v == null ? "" : fixed(v, d); }
  function signed(v, d) { return v == null ? "" : (v >= 0 ? "+" : "") + fixed(v, d); }
  function short(s, n) { s = String(s || ""); return s.length > n ? s.slice(0, n - 1) + "…" : s; }
  function when(t) {
    if (!t) return "";
    var d = new Date(t * 1000), p = function (x) { return (x < 10 ? "0" : "") + x; };
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes());
  }

  // ---- chart ------------------------------------------------------------------------------
  function el(name, attrs, parent) {
    var e = document.createElementNS(SVGNS, name);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function ticks(lo, hi, n) {
    var span = hi - lo; if (!(span > 0)) return [lo];
    var step = Math.pow(10, Math.floor(Math.log10(span / n))), err = span / n / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var out = []; for (var v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }
  function drawChart() {
    var box = document.getElementById("chart");
    var done = ROWS.filter(function (r) { return r.st !== "running"; });
    if (!done.length) { box.insertAdjacentHTML("beforeend", '<p class="muted">No experiments yet.</p>'); return; }
    var W = 1000, H = 380, L = 78, R = 16, T = 14, B = 34;
    var svg = el("svg", {viewBox: "0 0 " + W + " " + H, id: "chart-svg", role: "img"}, box);
    var seqs = done.map(function (r) { return r.s; });
    var x0 = Math.min.apply(null, seqs) - 1, x1 = Math.max.apply(null, seqs) + 1;
    var f = M.focus || [0, 1], y0 = f[0], y1 = f[1];
    var maximize = M.goal === "maximize";
    function X(s) { return L + (s - x0) / (x1 - x0) * (W - L - R); }
    function Y(v) { return T + (1 - (v - y0) / (y1 - y0)) * (H - T - B); }
    var grid = el("g", {"class": "grid"}, svg), axis = el("g", {"class": "axis"}, svg);
    ticks(y0, y1, 6).forEach(function (v) {
      el("line", {x1: L, x2: W - R, y1: Y(v), y2: Y(v)}, grid);
      var t = el("text", {x: L - 6, y: Y(v) + 4, "text-anchor": "end"}, axis); t.textContent = +v.toPrecision(6);
    });
    ticks(x0, x1, 10).forEach(function (s) {
      if (s !== Math.round(s)) return;
      var t = el("text", {x: X(s), y: H - B + 16, "text-anchor": "middle"}, axis); t.textContent = s;
    });
    el("line", {x1: L, x2: W - R, y1: H - B, y2: H - B}, axis);
    el("line", {x1: L, x2: L, y1: T, y2: H - B}, axis);
    var lab = el("text", {x: W - R, y: H - 4, "text-anchor": "end"}, axis); lab.textContent = "experiment (seq)";
    var ym = (T + H - B) / 2;
    var ylab = el("text", {x: 14, y: ym, "text-anchor": "middle", transform: "rotate(-90 14 " + ym + ")"}, axis);
    ylab.textContent = M.metric + (maximize ? " (higher is better)" : " (lower is better)");
    var keeps = done.filter(function (r) { return r.st === "keep" && r.m != null; });
    if (keeps.length) {
      var d = "M" + X(keeps[0].s) + "," + Y(keeps[0].m);
      for (var i = 1; i < keeps.length; i++) d += " H" + X(keeps[i].s) + " V" + Y(keeps[i].m);
      d += " H" + X(x1 - 1);
      el("path", {d: d, "class": "best"}, svg);
    }
    var pts = el("g", {"class": "points"}, svg);
    function tip(node, r) {
      var t = el("title", {}, node);
      t.textContent = "seq " + r.s + " · " + r.st + (r.r ? " (" + r.r + ")" : "") +
        (r.m != null ? " · " + num(r.m) : "") + (r.d != null ? " (" + signed(r.d) + ")" : "") + "\n" + r.ds;
    }
    function open(r) { return function () { location.hash = "open=" + r.s; }; }
    done.forEach(function (r) {
      var node;
      if ((r.st === "discard" || r.st === "keep") && r.m != null) {
        // Points outside the focused range are pinned to its edge as small triangles.
        if (r.m >= y0 && r.m <= y1) node = el("circle", {cx: X(r.s), cy: Y(r.m), r: r.st === "keep" ? 5 : 3.2, "class": "pt " + r.st, "data-seq": r.s}, pts);
        else if (r.m > y1) node = el("path", {d: "M" + X(r.s) + "," + T + " l-4,7 h8 z", "class": "pt pinned " + r.st, "data-seq": r.s}, pts);
        else node = el("path", {d: "M" + X(r.s) + "," + (H - B) + " l-4,-7 h8 z", "class": "pt pinned " + r.st, "data-seq": r.s}, pts);
      } else if (r.st === "crash") {
        var cx = X(r.s), cy = H - B - 7;
        node = el("path", {d: "M" + (cx - 4) + "," + (cy - 4) + " l8,8 m0,-8 l-8,8", "class": "pt crash", "data-seq": r.s}, pts);
      } else if (r.st === "rejected") {
        var rx = X(r.s), ry = H - B - 20;
        node = el("path", {d: "M" + (rx - 4.5) + "," + ry + " h9 l-4.5,8 z", "class": "pt rejected", "data-seq": r.s}, pts);
      }
      if (node) { tip(node, r); node.addEventListener("click", open(r)); }
    });
    if (REFS.length) drawRefs(svg, keeps, x0, x1, X, Y, y0, y1);
    if (keeps.length <= 40) {
      keeps.forEach(function (r, i) {
        if (r.m < y0 || r.m > y1) return;
        var t = el("text", {x: X(r.s) + 6, y: Y(r.m) - 6, "class": "klabel",
                            transform: "rotate(-20 " + (X(r.s) + 6) + " " + (Y(r.m) - 6) + ")"}, svg);
        t.textContent = short(r.ds, 38);
      });
    }
  }

  // The best's reference re-measurements (not experiments): each sits half way after the
  // experiment it followed, as a diamond at its median with its runs as rings, and a dashed
  // step shows the bar it set until the next keep or re-measurement.
  function drawRefs(svg, keeps, x0, x1, X, Y, y0, y1) {
    var g = el("g", {"class": "refs"}, svg);
    function clampY(v) { return Y(Math.min(Math.max(v, y0), y1)); }
    function xOf(ev) { return (ev.a == null ? x0 : ev.a) + 0.5; }
    REFS.forEach(function (ev, i) {
      if (ev.v == null) return;
      var x = xOf(ev), end = x1 - 1;
      keeps.forEach(function (k) { if (k.s > x && k.s < end) end = k.s; });
      if (i + 1 < REFS.length && xOf(REFS[i + 1]) < end) end = xOf(REFS[i + 1]);
      if (end < x) end = x;
      var d = "M" + X(x) + "," + (ev.o != null ? clampY(ev.o) + " V" + clampY(ev.v) : clampY(ev.v)) + " H" + X(end);
      el("path", {d: d, "class": "refline"}, g);
      (ev.rn || []).forEach(function (v) {
        if (v != null) el("circle", {cx: X(x), cy: clampY(v), r: 3.2, "class": "ref-run"}, g);
      });
      var cx = X(x), cy = clampY(ev.v);
      var node = el("path", {d: "M" + cx + "," + (cy - 6) + " l6,6 l-6,6 l-6,-6 z", "class": "pt ref",
                             "data-after": ev.a == null ? "" : ev.a, "data-value": ev.v}, g);
      var t = el("title", {}, node);
      t.textContent = "reference re-measured" + (ev.a == null ? "" : " after seq " + ev.a) + " (" + ev.w + ")" +
        " · " + (ev.o != null ? num(ev.o) + " → " : "") + num(ev.v) + "\nruns: " +
        (ev.rn || []).map(function (v) { return v == null ? "crash" : num(v); }).join(", ");
      node.addEventListener("click", function () { location.hash = "references"; });
    });
    // A legend for the two marks only this layer draws.
    var lg = el("g", {"class": "legend"}, svg), lx = X(x1) - 190, ly = 24;
    el("path", {d: "M" + (lx + 6) + "," + (ly - 6) + " l6,6 l-6,6 l-6,-6 z", "class": "pt ref"}, lg);
    var a = el("text", {x: lx + 18, y: ly + 4}, lg); a.textContent = "reference re-measured";
    el("path", {d: "M" + lx + "," + (ly + 18) + " h14", "class": "refline"}, lg);
    var b = el("text", {x: lx + 18, y: ly + 22}, lg); b.textContent = "the best's reference";
  }

  // ---- table ------------------------------------------------------------------------------
  var COLS = [
    {k: "s", t: "seq", num: true},
    {k: "st", t: "status"},
    {k: "m", t: M.metric, num: true, f: function (r) { return num(r.m); }},
    {k: "d", t: "Δ vs best", num: true, f: function (r) { return signed(r.d); }},
  ];
  if (M.holdout) COLS.push({k: "h", t: M.holdout, num: true, f: function (r) { return num(r.h); }});
  COLS.push({k: "r", t: "reason"}, {k: "ds", t: "description", cls: "desc"}, {k: "p", t: "proposer"});
  if (M.slots > 1) COLS.push({k: "sl", t: "slot", num: true});
  COLS.push({k: "rs", t: "run s", num: true, f: function (r) { return num(r.rs, 1); }},
            {k: "c", t: "commit", f: function (r) { return (r.c || "").slice(0, 7); }},
            {k: "t0", t: "started", num: true, f: function (r) { return when(r.t0); }});

  var state = {sort: "s", dir: 1, q: "", show: {}, open: {}};
  STATUSES.forEach(function (s) { state.show[s] = true; });
  var table = document.getElementById("exps"), tbody = table.tBodies[0];

  function header() {
    table.tHead.innerHTML = "<tr>" + COLS.map(function (c) {
      var cls = (c.num ? "num " : "") + (state.sort === c.k ? (state.dir > 0 ? "sorted-asc" : "sorted-desc") : "");
      return '<th data-k="' + c.k + '" class="' + cls + '">' + esc(c.t) + "</th>";
    }).join("") + "</tr>";
  }
  function cell(c, r) {
    var v = c.f ? c.f(r) : r[c.k];
    var cls = (c.num ? "num " : "") + (c.cls || "") + (c.k === "st" ? " st st-" + r.st : "");
    return '<td class="' + cls + '">' + esc(v) + "</td>";
  }
  function visible(r) {
    if (!state.show[r.st]) return false;
    if (!state.q) return true;
    var q = state.q.toLowerCase();
    if (/^\d+$/.test(q)) return String(r.s) === q || (r.ds || "").toLowerCase().indexOf(q) >= 0;
    return ((r.ds || "") + " " + r.r + " " + r.p + " " + r.st + " " + (r.c || "")).toLowerCase().indexOf(q) >= 0;
  }
  function sorted() {
    var k = state.sort, dir = state.dir;
    return ROWS.filter(visible).sort(function (a, b) {
      var x = a[k], y = b[k];
      if (x == null && y == null) return a.s - b.s;
      if (x == null) return 1;
      if (y == null) return -1;
      if (typeof x === "string") return dir * x.localeCompare(y) || a.s - b.s;
      return dir * (x - y) || a.s - b.s;
    });
  }
  function render() {
    header();
    var rows = sorted(), html = [];
    for (var i = 0; i < rows.length; i++) {
      var r = rows[i];
      html.push('<tr class="row' + (state.open[r.s] ? " open" : "") + '" data-seq="' + r.s + '">' +
                COLS.map(function (c) { return cell(c, r); }).join("") + "</tr>");
    }
    tbody.innerHTML = html.join("");
    rows.forEach(function (r) { if (state.open[r.s]) expand(r.s); });
    document.getElementById("shown").textContent = "showing " + rows.length + " of " + ROWS.length;
  }
  function diffHtml(text) {
    return text.split("\n").map(function (line) {
      var cls = "";
      if (/^(diff --git|index |--- |\+\+\+ )/.test(line)) cls = "file";
      else if (line.charAt(0) === "+") cls = "add";
      else if (line.charAt(0) === "-") cls = "del";
      else if (line.indexOf("@@") === 0) cls = "hunk";
      return cls ? '<span class="' + cls + '">' + esc(line) + "</span>" : esc(line) + "\n";
    }).join("");
  }
  function detailHtml(r) {
    var parts = [];
    var meta = ["seq " + r.s, r.st + (r.r ? " (" + r.r + ")" : "")];
    if (r.c) meta.push("commit " + r.c.slice(0, 12) + " on parent " + (r.pa || "").slice(0, 12));
    meta.push("ref refs/autoresearch/" + M.tag + "/" + r.s);
    if (r.p) meta.push("proposer " + r.p);
    if (r.ps != null) meta.push("proposed in " + num(r.ps, 1) + " s");
    if (r.rs != null) meta.push("ran " + num(r.rs, 1) + " s");
    if (r.ti != null || r.to != null) meta.push("tokens " + (r.ti || 0) + " in / " + (r.to || 0) + " out");
    if (r["$"] != null) meta.push("$" + num(r["$"], 4));
    if (r.ld != null) meta.push("lines " + (r.ld >= 0 ? "+" : "") + r.ld);
    parts.push('<div class="meta">' + esc(meta.join(" · ")) + "</div>");
    parts.push('<div class="descfull"><b>' + esc(r.ds) + "</b></div>");
    var keys = Object.keys(r.mx || {});
    if (keys.length) parts.push("<h4>metrics</h4><div class=\"kv\">" + keys.map(function (k) {
      return "<span>" + esc(k) + ": <b>" + esc(r.mx[k]) + "</b></span>"; }).join("") + "</div>");
    var diff = D.diffs[String(r.s)];
    parts.push("<h4>diff against its parent</h4>");
    if (diff) parts.push('<pre class="diff">' + diffHtml(diff) + "</pre>");
    else parts.push('<div class="muted nodiff">' + (r.c ? "no change against its parent" :
                    "never committed: the change was refused before it ran") + "</div>");
    var log = D.logs[String(r.s)];
    if (log) parts.push("<h4>log tail" + (r.lp ? " (" + esc(r.lp) + ")" : "") + '</h4><pre class="log">' + esc(log) + "</pre>");
    if (r.dt && r.dt !== "{}") parts.push('<h4>verdict details</h4><pre class="details">' + esc(r.dt) + "</pre>");
    return parts.join("");
  }
  function rowEl(seq) { return tbody.querySelector('tr.row[data-seq="' + seq + '"]'); }
  function expand(seq) {
    var tr = rowEl(seq);
    if (!tr || (tr.nextSibling && tr.nextSibling.className === "detail")) return tr;
    var d = document.createElement("tr");
    d.className = "detail"; d.setAttribute("data-seq", seq);
    d.innerHTML = '<td colspan="' + COLS.length + '">' + detailHtml(BY[seq]) + "</td>";
    tr.parentNode.insertBefore(d, tr.nextSibling);
    tr.classList.add("open");
    state.open[seq] = true;
    return tr;
  }
  function collapse(seq) {
    var tr = rowEl(seq);
    delete state.open[seq];
    if (!tr) return;
    tr.classList.remove("open");
    if (tr.nextSibling && tr.nextSibling.className === "detail") tr.parentNode.removeChild(tr.nextSibling);
  }
  tbody.addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.row"); if (!tr) return;
    var seq = +tr.getAttribute("data-seq");
    if (state.open[seq]) collapse(seq); else expand(seq);
  });
  table.tHead.addEventListener("click", function (ev) {
    var th = ev.target.closest("th"); if (!th) return;
    var k = th.getAttribute("data-k");
    if (state.sort === k) state.dir = -state.dir; else { state.sort = k; state.dir = 1; }
    render();
  });
  var q = document.getElementById("q"), timer = null;
  q.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.q = q.value.trim(); render(); }, 120);
  });
  var boxes = document.getElementById("statuses");
  boxes.innerHTML = STATUSES.map(function (s) {
    var n = ROWS.filter(function (r) { return r.st === s; }).length;
    return n ? '<label class="st-' + s + '"><input type="checkbox" data-st="' + s + '" checked> ' + s + " (" + n + ")</label>" : "";
  }).join(" ");
  boxes.addEventListener("change", function (ev) {
    var s = ev.target.getAttribute("data-st"); if (!s) return;
    state.show[s] = ev.target.checked; render();
  });

  function fromHash() {
    var m = /open=([\d,]+)/.exec(location.hash || "");
    if (!m) return;
    var first = null;
    m[1].split(",").forEach(function (x) {
      var seq = +x; if (!BY[seq]) return;
      if (!visible(BY[seq])) {
        state.q = ""; q.value = ""; state.show[BY[seq].st] = true;
        var cb = boxes.querySelector('input[data-st="' + BY[seq].st + '"]'); if (cb) cb.checked = true;
        render();
      }
      var tr = expand(seq); if (tr && first === null) first = tr;
    });
    if (first) first.scrollIntoView({block: "center"});
  }
  window.addEventListener("hashchange", fromHash);

  drawChart();
  render();
  fromHash();
  document.body.setAttribute("data-ready", "1");
  document.body.setAttribute("data-render-ms", String(Math.round(performance.now())));
})();
