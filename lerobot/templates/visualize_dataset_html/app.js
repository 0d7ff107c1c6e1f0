/* LeRobot static episode browser: synchronised videos, uPlot time series with a moving time cursor, and the
 * evaluation-run page. Data comes from a <script type="application/json"> block written by
 * visualize_dataset_html.py; text from the data is only ever inserted with textContent. */
(function () {
  "use strict";

  var PALETTE = [
    "#1c7ed6", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#e67700", "#5c940d",
    "#a61e4d", "#364fc7", "#087f5b", "#d9480f", "#862e9c", "#495057",
  ];

  function readData(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function clamp(x, lo, hi) {
    return Math.min(hi, Math.max(lo, x));
  }

  // ------------------------------------------------------------------ playback clock
  // Time `t` is the episode's own timestamp (seconds); video i shows it at currentTime = t + offset_i.
  function Player(videos, t0, t1, fps) {
    this.videos = videos;
    this.t0 = t0;
    this.t1 = t1;
    this.fps = fps;
    this.playing = false;
    this.rate = 1;
    this.loop = true;
    this.clockT = t0;
    this.clockStart = 0;
    this.status = function () {};
  }

  Player.prototype.time = function () {
    if (this.videos.length) {
      var m = this.videos[0];
      return m.el.currentTime - m.offset;
    }
    if (!this.playing) return this.clockT;
    return this.clockT + ((performance.now() - this.clockStart) / 1000) * this.rate;
  };

  Player.prototype.seek = function (t) {
    t = clamp(t, this.t0, this.t1 - 0.5 / this.fps);
    this.videos.forEach(function (v) {
      v.el.currentTime = t + v.offset;
    });
    this.clockT = t;
    this.clockStart = performance.now();
  };

  Player.prototype.play = function () {
    var self = this;
    if (this.time() >= this.t1 - 0.75 / this.fps) this.seek(this.t0);
    this.clockT = this.time();
    this.clockStart = performance.now();
    this.playing = true;
    this.videos.forEach(function (v) {
      var p = v.el.play();
      if (p && p.catch) {
        p.catch(function (err) {
          self.playing = false;
          self.status("Press play to start the videos (" + err.name + ").");
        });
      }
    });
  };

  Player.prototype.pause = function () {
    this.clockT = this.time();
    this.playing = false;
    this.videos.forEach(function (v) {
      v.el.pause();
    });
  };

  Player.prototype.setRate = function (rate) {
    this.clockT = this.time();
    this.clockStart = performance.now();
    this.rate = rate;
    this.videos.forEach(function (v) {
      v.el.playbackRate = rate;
    });
  };

  // Called every animation frame: wraps or stops at the episode's end and keeps the other videos in step.
  Player.prototype.tick = function () {
    var t = this.time();
    if (this.playing && t >= this.t1 - 0.5 / this.fps) {
      if (this.loop) {
        this.seek(this.t0);
        t = this.t0;
      } else {
        this.pause();
        t = clamp(t, this.t0, this.t1);
      }
    }
    if (this.playing) {
      for (var i = 1; i < this.videos.length; i++) {
        var v = this.videos[i];
        if (Math.abs(v.el.currentTime - (t + v.offset)) > 0.1) v.el.currentTime = t + v.offset;
      }
    }
    return t;
  };

  // ------------------------------------------------------------------ charts
  function makeChart(container, plot, xs, onSeek) {
    var series = [{ label: "t (s)", value: function (u, v) { return v == null ? "-" : v.toFixed(2); } }];
    plot.names.forEach(function (name, i) {
      series.push({ label: name, stroke: PALETTE[i % PALETTE.length], width: 1.5 });
    });
    var opts = {
      title: plot.key,
      width: Math.max(300, container.clientWidth - 12),
      height: 220,
      scales: { x: { time: false } },
      axes: [{ label: "time (s)" }, { size: 56 }],
      series: series,
      cursor: { drag: { x: false, y: false } },
    };
    var chart = { u: null, line: document.createElement("div"), hovering: false };
    chart.u = new uPlot(opts, [xs].concat(plot.values), container);
    chart.line.className = "time-cursor";
    chart.u.over.appendChild(chart.line);
    chart.u.over.addEventListener("mouseenter", function () { chart.hovering = true; });
    chart.u.over.addEventListener("mouseleave", function () { chart.hovering = false; });
    chart.u.over.addEventListener("click", function () {
      if (chart.u.cursor.left != null && chart.u.cursor.left >= 0) onSeek(chart.u.posToVal(chart.u.cursor.left, "x"));
    });
    return chart;
  }

  function moveCursor(chart, t) {
    var x = chart.u.valToPos(t, "x");
    if (!isFinite(x)) return;
    chart.line.style.left = x.toFixed(1) + "px";
    chart.line.dataset.time = t.toFixed(3);
    // While the mouse is elsewhere, the legend shows the values at the current frame.
    if (!chart.hovering) chart.u.setCursor({ left: x, top: -10 });
  }

  // ------------------------------------------------------------------ episode page
  function episodePage(data) {
    var ts = data.timestamps;
    var fps = data.fps;
    var t0 = ts.length ? ts[0] : 0;
    var t1 = ts.length ? ts[ts.length - 1] + 1 / fps : 0;
    var videos = data.videos.map(function (v) {
      var el = document.getElementById(v.id);
      el.loop = false;
      el.muted = true;
      return { el: el, offset: v.offset };
    });
    var player = new Player(videos, t0, t1, fps);
    var statusEl = document.getElementById("status");
    player.status = function (msg) { statusEl.textContent = msg; };

    var playBtn = document.getElementById("play");
    var scrubber = document.getElementById("scrubber");
    var clock = document.getElementById("clock");
    var speed = document.getElementById("speed");
    var loop = document.getElementById("loop");
    scrubber.min = String(t0);
    scrubber.max = String(t1 - 1 / fps);
    scrubber.step = String(1 / fps);

    function seek(t) {
      player.seek(t);
    }
    var plotsEl = document.getElementById("plots");
    var charts = data.plots.map(function (plot) {
      var box = document.createElement("div");
      box.className = "plot";
      plotsEl.appendChild(box);
      return makeChart(box, plot, ts, seek);
    });
    window.addEventListener("resize", function () {
      charts.forEach(function (c) {
        c.u.setSize({ width: Math.max(300, c.u.root.parentNode.clientWidth - 12), height: 220 });
      });
    });

    playBtn.addEventListener("click", function () {
      if (player.playing) player.pause();
      else player.play();
    });
    scrubber.addEventListener("input", function () {
      seek(parseFloat(scrubber.value));
    });
    speed.addEventListener("change", function () {
      player.setRate(parseFloat(speed.value));
    });
    loop.addEventListener("change", function () {
      player.loop = loop.checked;
    });
    document.addEventListener("keydown", function (e) {
      if (e.target && (e.target.tagName === "INPUT" || e.target.tagName === "SELECT")) return;
      if (e.key === " ") {
        e.preventDefault();
        playBtn.click();
      } else if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        e.preventDefault();
        player.pause();
        seek(player.time() + (e.key === "ArrowRight" ? 1 : -1) / fps);
      }
    });

    var lastT = null;
    function frame() {
      var t = player.tick();
      playBtn.textContent = player.playing ? "Pause" : "Play";
      if (t !== lastT) {
        var i = clamp(Math.round((t - t0) * fps), 0, Math.max(0, ts.length - 1));
        clock.textContent = "t = " + t.toFixed(2) + " s \u00b7 frame " + i + " / " + (ts.length - 1);
        scrubber.value = String(t);
        charts.forEach(function (c) { moveCursor(c, t); });
        document.body.dataset.time = t.toFixed(3);
        lastT = t;
      }
      window.requestAnimationFrame(frame);
    }

    // Linked (shared) video files start elsewhere: put every video on the episode's first frame, then play.
    var pending = videos.length;
    function ready() {
      player.seek(t0);
      if (data.autoplay) player.play();
      window.requestAnimationFrame(frame);
    }
    if (!pending) ready();
    videos.forEach(function (v) {
      var counted = false;
      function loaded() {
        if (counted) return;
        counted = true;
        pending -= 1;
        if (pending === 0) ready();
      }
      if (v.el.readyState >= 1) loaded();
      else v.el.addEventListener("loadedmetadata", loaded, { once: true });
      v.el.addEventListener("error", function () {
        player.status("Cannot play " + v.el.getAttribute("src") + " in this browser.");
        loaded();
      });
    });
  }

  // ------------------------------------------------------------------ evaluation page
  function noLine() {
    return null; // episodes are independent: points, no line between them
  }

  function evalPage(data) {
    var eps = data.episodes;
    var plotsEl = document.getElementById("plots");
    if (eps.length && plotsEl) {
      var box = document.createElement("div");
      box.className = "plot";
      plotsEl.appendChild(box);
      var xs = eps.map(function (e) { return e.episode_ix; });
      var opts = {
        title: "reward per episode",
        width: Math.max(300, box.clientWidth - 12),
        height: 220,
        scales: { x: { time: false } },
        axes: [{ label: "episode", incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] }, { size: 56 }],
        series: [
          { label: "episode" },
          { label: "sum_reward", stroke: PALETTE[0], fill: PALETTE[0], paths: noLine, points: { show: true, size: 8 } },
          { label: "max_reward", stroke: PALETTE[1], fill: PALETTE[1], paths: noLine, points: { show: true, size: 8 } },
        ],
      };
      var u = new uPlot(opts, [xs, eps.map(function (e) { return e.sum_reward; }), eps.map(function (e) { return e.max_reward; })], box);
      u.over.addEventListener("click", function () {
        var idx = u.cursor.idx;
        if (idx == null) return;
        var card = document.getElementById("card-" + xs[idx]);
        if (card) {
          card.scrollIntoView({ behavior: "smooth", block: "center" });
          card.classList.add("flash");
          setTimeout(function () { card.classList.remove("flash"); }, 1200);
        }
      });
    }
    var filter = document.getElementById("filter");
    if (filter) {
      filter.addEventListener("change", function () {
        var want = filter.value;
        document.querySelectorAll(".card").forEach(function (card) {
          var ok = card.dataset.success === "true";
          card.classList.toggle("hidden", (want === "success" && !ok) || (want === "failure" && ok));
        });
      });
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    var episode = readData("episode-data");
    if (episode) episodePage(episode);
    var evalRun = readData("eval-data");
    if (evalRun) evalPage(evalRun);
  });
})();
