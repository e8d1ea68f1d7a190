// Swagger UI titles the page with an h1 and its operation groups with h3s;
// a screen reader's outline (and axe's heading-order) expects no level
// skipped, so every heading under #swagger-ui below the title moves up one
// level, as Swagger UI draws and redraws them.
//
// Swagger UI itself (its bundle, then ninja's init script, which reads the
// settings and draws) is fetched once the page has loaded: the page's load
// event does not wait for its 1.4 MB.
(function () {
  const root = document.getElementById("swagger-ui");
  if (!root) return;
  const tag = document.currentScript;
  const load = (src) =>
    new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = reject;
      document.body.appendChild(script);
    });
  const start = () => load(tag.dataset.bundle).then(() => load(tag.dataset.init));
  if (document.readyState === "complete") start();
  else window.addEventListener("load", () => setTimeout(start, 0), { once: true });
  const relevel = () => {
    root.querySelectorAll("h3, h4, h5, h6").forEach((h) => {
      const level = String(Number(h.tagName[1]) - 1);
      if (h.getAttribute("aria-level") !== level) h.setAttribute("aria-level", level);
    });
  };
  new MutationObserver(relevel).observe(root, { childList: true, subtree: true });
  relevel();
})();
