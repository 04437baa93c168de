/* pistachio-infra dashboard: draws the charts (uPlot) from the page's embedded JSON and, on a live page, polls
   the server's JSON endpoint and swaps the page body in place. Plain script, no build step. */
(function () {
  "use strict";
  var charts = {};
  window.dashboard = { charts: charts, polls: 0, errors: 0 };

  function pageData() {
    var el = document.getElementById("page-data");
    return el ? JSON.parse(el.textContent) : {};
  }

  function width(el) { return Math.max(320, (el.clientWidth || el.parentNode.clientWidth || 900)); }

  function union(lists) {
    var seen = {}, xs = [];
    lists.forEach(function (pts) { (pts || []).forEach(function (p) { if (!seen[p[0]]) { seen[p[0]] = 1; xs.push(p[0]); } }); });
    return xs.sort(function (a, b) { return a - b; });
  }

  function align(xs, pts) {
    var m = {};
    (pts || []).forEach(function (p) { m[p[0]] = p[1]; });
    return xs.map(function (x) { return (x in m) ? m[x] : null; });
  }

  function make(id, opts, data) {
    var el = document.getElementById(id);
    if (!el) return null;
    if (charts[id]) { charts[id].destroy(); }
    el.innerHTML = "";
    opts.width = width(el);
    opts.height = opts.height || 320;
    charts[id] = new uPlot(opts, data, el);
    return charts[id];
  }

  function lossChart(d) {
    var c = d.curve;
    if (!c || !(c.eval.length || c.train.length)) return;
    var xs = union([c.train, c.eval]);
    var chosen = d.selection ? d.selection.step : null;
    var chosenPts = [];
    (c.checkpoints || []).forEach(function (p) { if (p[0] === chosen) chosenPts.push([p[0], p[1]]); });
    if (chosen !== null && !chosenPts.length) {
      c.eval.forEach(function (p) { if (p[0] === chosen) chosenPts.push(p); });
    }
    var data = [xs, align(xs, c.train), align(xs, c.eval), align(xs, c.smoothed), align(xs, c.checkpoints),
                align(xs, chosenPts)];
    var opts = {
      title: "Train and eval loss", scales: { x: { time: false } },
      axes: [{ label: "step", incrs: STEP_INCRS }, { label: "loss", size: 60 }],
      series: [
        { label: "step" },
        { label: "train loss", stroke: "#9aa7b1", width: 1, spanGaps: true, points: { show: false } },
        { label: "eval loss", stroke: "#1f6fd1", width: 2, spanGaps: true, points: { show: true, size: 6 } },
        { label: "smoothed eval", stroke: "#e07b00", width: 1.5, dash: [6, 4], spanGaps: true, points: { show: false } },
        { label: "saved checkpoint", stroke: "#2f7d32", width: 0, paths: function () { return null; },
          points: { show: true, size: 9, fill: "#2f7d32" } },
        { label: "chosen", stroke: "#d3245c", width: 0, paths: function () { return null; },
          points: { show: true, size: 13, fill: "#d3245c" } }
      ],
      hooks: { draw: [function (u) { markChosen(u, chosenPts[0]); }] }
    };
    make("loss-chart", opts, data);
  }

  /* A DOM marker over the chosen checkpoint (data-step says which), so it can be read, styled and tested. */
  function markChosen(u, pt) {
    var old = u.over.querySelector(".chosen-marker");
    if (old) old.remove();
    if (!pt) return;
    var m = document.createElement("div");
    m.className = "chosen-marker";
    m.setAttribute("data-step", pt[0]);
    m.title = "chosen checkpoint: step " + pt[0];
    m.style.left = u.valToPos(pt[0], "x") + "px";
    m.style.top = u.valToPos(pt[1], "y") + "px";
    var label = document.createElement("span");
    label.textContent = "chosen: step " + pt[0];
    m.appendChild(label);
    u.over.appendChild(m);
  }

  var STEP_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 50000];

  var PALETTE = ["#1f6fd1", "#d3245c", "#2f7d32", "#e07b00", "#7a3fb8", "#0f8f8f", "#8a6d00", "#555"];

  function characterChart(d) {
    var runs = (d.runs || []).filter(function (r) { return r.eval && r.eval.length; });
    if (!runs.length) return;
    var xs = union(runs.map(function (r) { return r.eval; }));
    var series = [{ label: "step" }], data = [xs];
    runs.forEach(function (r, i) {
      series.push({ label: r.label + (r.step !== null ? " → step " + r.step : ""), stroke: PALETTE[i % PALETTE.length],
                    width: 2, spanGaps: true, points: { show: true, size: 5 } });
      data.push(align(xs, r.eval));
    });
    make("character-chart", { title: "Eval loss of every run", scales: { x: { time: false } },
                              axes: [{ label: "step", incrs: STEP_INCRS }, { label: "eval loss", size: 60 }], series: series }, data);
  }

  function moneyChart(d) {
    var s = d.series || [];
    if (!s.length) return;
    var xs = union(s.map(function (x) { return x.points; }));
    var series = [{ label: "time" }], data = [xs];
    s.forEach(function (x, i) {
      var colour = PALETTE[i % PALETTE.length];
      series.push({ label: x.name + " spent", stroke: colour, width: 2, spanGaps: true,
                    value: function (u, v) { return v == null ? "—" : "$" + v.toFixed(4); } });
      data.push(align(xs, x.points));
      if (x.budget_usd) {
        series.push({ label: x.name + " budget", stroke: colour, width: 1, dash: [8, 5], points: { show: false } });
        data.push(xs.map(function () { return x.budget_usd; }));
      }
    });
    make("money-chart", { title: "Spend over time", axes: [{}, { label: "USD", size: 80, values: function (u, vals) {
      var top = Math.max.apply(null, vals.map(Math.abs));
      return vals.map(function (v) { return "$" + v.toFixed(top >= 1 ? 2 : 4); });
    } }], series: series }, data);
  }

  function draw() {
    var d = pageData(), page = document.body.getAttribute("data-page");
    if (typeof uPlot === "undefined") return;
    if (page === "job") lossChart(d);
    else if (page === "character") characterChart(d);
    else if (page === "money") moneyChart(d);
  }

  function poll() {
    var url = document.body.getAttribute("data-poll");
    if (!url) return;
    var every = parseInt(document.body.getAttribute("data-poll-ms"), 10) || 2000;
    function tick() {
      fetch(url, { cache: "no-store" }).then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      }).then(function (msg) {
        document.getElementById("live").innerHTML = msg.html;
        document.getElementById("page-data").textContent = JSON.stringify(msg.data);
        window.dashboard.polls += 1;
        draw();
        if (msg.live) setTimeout(tick, every);
      }).catch(function () { window.dashboard.errors += 1; setTimeout(tick, every * 2); });
    }
    setTimeout(tick, every);
  }

  window.addEventListener("resize", function () { draw(); });
  document.addEventListener("DOMContentLoaded", function () { draw(); poll(); });
})();
