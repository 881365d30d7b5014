// fleetgate UI: keeps a run's live section current by polling its fragment once a
// second. A new plan id (the exclusions were applied) reloads the page so the plan
// shown is the one to approve. Nothing else runs in the page.
"use strict";
(function () {
  const region = document.querySelector("[data-live]");
  if (!region) return;
  const url = region.getAttribute("data-live");
  const first = region.querySelector("#live");
  const plan = first ? first.getAttribute("data-plan") : "";
  let shown = region.innerHTML;
  async function tick() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) {
        const html = await response.text();
        const probe = document.createElement("div");
        probe.innerHTML = html;
        const live = probe.querySelector("#live");
        if (live && live.getAttribute("data-plan") !== plan) {
          window.location.reload();
          return;
        }
        // Replaced only when it changed: a reason being typed is not wiped out.
        if (html !== shown && !region.contains(document.activeElement)) {
          region.innerHTML = html;
          shown = html;
        }
        if (live && live.hasAttribute("data-final")) return;
      }
    } catch (e) {
      // The server stopped or the network hiccuped: try again.
    }
    window.setTimeout(tick, 1000);
  }
  window.setTimeout(tick, 1000);
})();
