// Keeps an open page current: every DASHBOARD_REFRESH_SECONDS the page is fetched again,
// and each part marked data-live that changed is swapped for its new version. No reload,
// no framework.
"use strict";

const REFRESH_MS = Number(document.body.dataset.refreshMs) || 2000;

async function refresh() {
  if (document.hidden) return;
  let response;
  try {
    response = await fetch(location.href, { headers: { Accept: "text/html" } });
  } catch {
    return; // the service is out of reach for a moment: try again at the next tick
  }
  if (response.redirected) {
    location.reload(); // signed out meanwhile: show the sign-in form
    return;
  }
  if (!response.ok) return;
  const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const part of document.querySelectorAll("[data-live]")) {
    const next = fresh.getElementById(part.id);
    if (next && next.innerHTML !== part.innerHTML) part.replaceWith(next);
  }
}

if (document.querySelector("[data-live]")) setInterval(refresh, REFRESH_MS);
