// The Plotly charts of the stats pages: their size, their clicks and their colours.
//
// - Drawing: each chart's figure comes as JSON in a <script type="application/json">
//   beside an empty .plot box (dashboards/views.py chart_json). Once the page
//   has loaded, the charts in view are drawn first, the others one at a time
//   when the browser is idle: the page's content is painted without waiting
//   on Plotly, and the page needs no inline script.
// - Size: Plotly's "responsive" option follows window resizes only; an htmx
//   swap can change a card's width with no window resize. Watching each
//   chart's own box covers both.
// - Clicks: a bar, point or heatmap cell whose customdata is an explorer URL
//   (dashboards/charts.py puts exactly its bucket's filters there, server side)
//   opens it; the pointer shows a hand over such points.
// - Narrow cards: a figure's layout.meta may hold a "narrow" relayout (one
//   column of small charts, the legend on top) that a phone-wide card gets.
// - Dark mode: the figures have transparent backgrounds; their text and grid
//   take the page's colours (the CSS variables, else fixed ones) when the
//   browser prefers a dark scheme, and again whenever that preference changes.
(function () {
  if (window.sphereCharts) return;
  window.sphereCharts = true;

  const dark = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const FALLBACK = {
    light: { text: "#1d2733", muted: "#667085", grid: "#e3e8ef", empty: "#ebedf0" },
    dark: { text: "#e5e7eb", muted: "#9ca3af", grid: "#374151", empty: "#1f2937" },
  };

  function cssVar(names) {
    const style = getComputedStyle(document.documentElement);
    for (const name of names) {
      const value = style.getPropertyValue(name).trim();
      if (value) return value;
    }
    return "";
  }

  // True for a light colour ("#e5e7eb", "rgb(229, 231, 235)"): light text
  // means the page is drawn dark.
  function isLight(colour) {
    let rgb = null;
    const hex = /^#([0-9a-f]{6})$/i.exec(colour);
    if (hex) rgb = [0, 2, 4].map((i) => parseInt(hex[1].slice(i, i + 2), 16));
    const fn = /^rgba?\(([^)]+)\)$/.exec(colour);
    if (fn) rgb = fn[1].split(",").slice(0, 3).map((v) => parseFloat(v));
    if (!rgb) return false;
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2] > 150;
  }

  // The page's own colours (its CSS variables follow its scheme); fixed ones
  // for the browser's preference where the stylesheet defines none.
  function palette() {
    const base = dark && dark.matches ? FALLBACK.dark : FALLBACK.light;
    const text = cssVar(["--text", "--ink"]) || base.text;
    return {
      text,
      grid: cssVar(["--grid", "--line"]) || base.grid,
      empty: isLight(text) ? FALLBACK.dark.empty : FALLBACK.light.empty,
    };
  }

  function plots(root) {
    const found = [...root.querySelectorAll(".js-plotly-plot")];
    if (root.classList && root.classList.contains("js-plotly-plot")) found.push(root);
    return found;
  }

  function current(layout, path) {
    return path.split(".").reduce((node, key) => (node == null ? node : node[key]), layout);
  }

  function theme(plot) {
    if (!window.Plotly || !plot.layout || !plot.data) return;
    const colours = palette();
    const wanted = { "font.color": colours.text };
    for (const key of Object.keys(plot.layout)) {
      if (/^[xy]axis\d*$/.test(key)) {
        wanted[`${key}.gridcolor`] = colours.grid;
        wanted[`${key}.zerolinecolor`] = colours.grid;
      }
    }
    (plot.layout.annotations || []).forEach((_, i) => {
      wanted[`annotations[${i}].font.color`] = colours.text;
    });
    // Only what differs: in the light scheme the server's colours are the
    // page's, and a relayout would redraw every chart for nothing.
    const update = {};
    for (const [path, value] of Object.entries(wanted)) {
      const now = current(plot.layout, path.replace(/\[(\d+)\]/g, ".$1"));
      if (now !== value) update[path] = value;
    }
    if (Object.keys(update).length) window.Plotly.relayout(plot, update);
    // A heatmap's empty day would glow light grey on a dark card.
    plot.data.forEach((trace, i) => {
      if (trace.type !== "heatmap" || !Array.isArray(trace.colorscale)) return;
      if (trace.colorscale[0][1] === colours.empty) return;
      const scale = trace.colorscale.map((stop) => [...stop]);
      scale[0][1] = colours.empty;
      window.Plotly.restyle(plot, { colorscale: [scale] }, [i]);
    });
  }

  function explorerUrl(point) {
    const url = point && point.customdata;
    return typeof url === "string" && url.startsWith("/events/") ? url : null;
  }

  function bind(plot) {
    if (plot.dataset.sphereBound || typeof plot.on !== "function") return;
    plot.dataset.sphereBound = "1";
    const drag = () => plot.querySelector(".nsewdrag");
    plot.on("plotly_click", (event) => {
      const url = event && event.points && event.points.map(explorerUrl).find(Boolean);
      if (url) window.location.assign(url);
    });
    plot.on("plotly_hover", (event) => {
      const layer = drag();
      if (layer && event.points.some(explorerUrl)) layer.style.cursor = "pointer";
    });
    plot.on("plotly_unhover", () => {
      const layer = drag();
      if (layer) layer.style.cursor = "";
    });
  }

  // A figure may carry two relayouts in layout.meta (dashboards/stats/):
  // "narrow" for a card under NARROW pixels (a phone) and "wide" to undo it.
  // It is drawn wide; a height in the relayout also sizes its box.
  const NARROW = 520;

  function fit(plot) {
    const meta = plot.layout && plot.layout.meta;
    if (!window.Plotly || !meta || !meta.narrow || !meta.wide) return null;
    const want = plot.getBoundingClientRect().width < NARROW ? "narrow" : "wide";
    if ((plot.dataset.fit || "wide") === want) return null;
    plot.dataset.fit = want;
    // The height goes to the box, not the layout: the resize after this
    // sizes the figure to its box, width and height (a height in the
    // relayout kept the old width as well).
    const { height, ...update } = meta[want];
    if (height) plot.style.height = `${height}px`;
    return window.Plotly.relayout(plot, update);
  }

  const observer = window.ResizeObserver
    ? new ResizeObserver((entries) => {
        for (const entry of entries) {
          const plot = entry.target.querySelector(".js-plotly-plot");
          if (!plot || !window.Plotly) continue;
          // Resized once the relayout is drawn: during it, a resize is dropped.
          Promise.resolve(fit(plot)).then(() => window.Plotly.Plots.resize(plot));
        }
      })
    : null;

  // Draws one chart from its JSON. Also after htmx restores a page from its
  // history cache, whose copy holds Plotly's SVG but not its state.
  function draw(chart) {
    const source = chart.querySelector("script.chart-figure");
    const box = chart.querySelector(".plot");
    if (!source || !box || !window.Plotly) return Promise.resolve();
    const figure = JSON.parse(source.textContent);
    if (box.classList.contains("js-plotly-plot")) window.Plotly.purge(box);
    box.replaceChildren();
    chart.dataset.drawn = "drawing";
    return window.Plotly.newPlot(box, figure.data, figure.layout, figure.config)
      .then((plot) => {
        bind(plot);
        theme(plot);
        return Promise.resolve(fit(plot)).then(() => window.Plotly.Plots.resize(plot));
      })
      .then(() => {
        chart.dataset.drawn = "done";
        allDrawn();
      });
  }

  // Every chart on the page drawn: data-charts="drawn" on <html> for the
  // browser tests, and a performance mark for bench/pages_browser.py.
  function allDrawn() {
    const charts = [...document.querySelectorAll(".chart")].filter((c) =>
      c.querySelector(".chart-figure"),
    );
    if (charts.some((chart) => chart.dataset.drawn !== "done")) return;
    document.documentElement.dataset.charts = "drawn";
    if (window.performance && performance.mark && !performance.getEntriesByName("charts-drawn").length) {
      performance.mark("charts-drawn");
    }
  }

  const idle = window.requestIdleCallback || ((callback) => setTimeout(callback, 1));

  // The charts in view now, the rest one per idle moment (they are drawn
  // without scrolling, so a reader who scrolls finds them ready).
  // plotly.js (1.5 MB) is fetched only once the page has loaded, from the
  // URL the page gives this script's tag (data-plotly): the page's content
  // does not wait for it, and a page without charts never loads it.
  const PLOTLY_URL = document.currentScript && document.currentScript.dataset.plotly;
  let plotlyReady = null;
  function withPlotly() {
    if (window.Plotly) return Promise.resolve();
    if (!plotlyReady) {
      plotlyReady = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = PLOTLY_URL;
        script.onload = resolve;
        script.onerror = reject;
        document.head.appendChild(script);
      });
    }
    return plotlyReady;
  }

  function drawAll(root) {
    const charts = [...root.querySelectorAll(".chart")].filter((c) => c.querySelector(".chart-figure"));
    if (root.classList && root.classList.contains("chart")) charts.push(root);
    if (!charts.length) return allDrawn();
    delete document.documentElement.dataset.charts;
    withPlotly().then(() => drawCharts(charts));
  }

  function drawCharts(charts) {
    const inView = (chart) => {
      const box = chart.getBoundingClientRect();
      return box.bottom > 0 && box.top < window.innerHeight;
    };
    const later = [];
    for (const chart of charts) {
      delete chart.dataset.drawn;
      if (observer) observer.observe(chart);
      if (inView(chart)) draw(chart);
      else later.push(chart);
    }
    const next = () => {
      const chart = later.shift();
      if (!chart) return;
      const go = chart.isConnected && !chart.dataset.drawn ? draw(chart) : Promise.resolve();
      go.then(() => idle(next));
    };
    idle(next);
  }

  // After the load event: the page's own content (cards, tables, controls)
  // is painted first, and the charts follow.
  if (document.readyState === "complete") drawAll(document);
  else window.addEventListener("load", () => setTimeout(() => drawAll(document), 0), { once: true });
  document.addEventListener("htmx:afterSettle", (event) => drawAll(event.target));
  document.addEventListener("htmx:historyRestore", () => drawAll(document));
  if (dark) {
    dark.addEventListener("change", () => plots(document).forEach(theme));
  }
})();
