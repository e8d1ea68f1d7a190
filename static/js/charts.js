// Keep every Plotly chart as wide as its card.
//
// Plotly's "responsive" option follows window resizes only. A chart's inline
// script runs while the page is still being parsed, before the cards after it
// exist, so its first width can be wrong; and an htmx swap can change a
// card's width with no window resize. Watching each chart's own box covers both.
(function () {
  if (!window.ResizeObserver) return;
  const observer = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const plot = entry.target.querySelector(".js-plotly-plot");
      if (plot && window.Plotly) window.Plotly.Plots.resize(plot);
    }
  });
  function watch(root) {
    root.querySelectorAll(".chart").forEach((chart) => observer.observe(chart));
  }
  document.addEventListener("DOMContentLoaded", () => watch(document));
  document.addEventListener("htmx:afterSettle", (event) => watch(event.target));
})();
