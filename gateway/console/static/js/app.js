// The console's router: hash routes (#/overview, #/imports/7, ...) so the page never reloads
// and the secret kept in api.js survives navigation but nothing else. Signed out, every route
// shows the sign-in page.
import { signedIn, signOut, tenantName } from "./api.js";
import { h } from "./dom.js";
import * as signin from "./pages/signin.js";
import * as overview from "./pages/overview.js";
import * as sources from "./pages/sources.js";
import * as newImport from "./pages/new_import.js";
import * as start from "./pages/start.js";
import * as imports from "./pages/imports.js";

const routes = [
  [/^\/overview$/, overview],
  [/^\/sources$/, sources],
  [/^\/new-import$/, newImport],
  [/^\/start\/(\d+)$/, start],
  [/^\/imports$/, imports],
  [/^\/imports\/(\d+)$/, imports],
];

let cleanup = null;

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  const main = document.getElementById("main");
  const nav = document.getElementById("nav");
  const path = location.hash.replace(/^#/, "") || "/overview";
  main.replaceChildren();
  if (!signedIn()) {
    nav.hidden = true;
    cleanup = await signin.render(main, [], path === "/signin" ? "/overview" : path);
    return;
  }
  nav.hidden = false;
  document.getElementById("who").textContent = `tenant ${tenantName()}`;
  for (const link of nav.querySelectorAll("a")) {
    const here = path.startsWith(link.getAttribute("href").slice(1));
    if (here) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  const found = routes.find(([pattern]) => pattern.test(path));
  if (!found) {
    main.append(h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "#/overview" }, "Go to the overview")));
    return;
  }
  const [pattern, page] = found;
  cleanup = (await page.render(main, path.match(pattern).slice(1))) || null;
  main.focus();
}

document.getElementById("signout").addEventListener("click", () => {
  signOut();
  location.hash = "#/signin";
  route();
});
window.addEventListener("hashchange", route);
route();
