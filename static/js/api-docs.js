// Swagger UI titles the page with an h1 and its operation groups with h3s;
// a screen reader's outline (and axe's heading-order) expects no level
// skipped, so every heading under #swagger-ui below the title moves up one
// level, as Swagger UI draws and redraws them.
(function () {
  const root = document.getElementById("swagger-ui");
  if (!root) return;
  const relevel = () => {
    root.querySelectorAll("h3, h4, h5, h6").forEach((h) => {
      const level = String(Number(h.tagName[1]) - 1);
      if (h.getAttribute("aria-level") !== level) h.setAttribute("aria-level", level);
    });
  };
  new MutationObserver(relevel).observe(root, { childList: true, subtree: true });
  relevel();
})();
