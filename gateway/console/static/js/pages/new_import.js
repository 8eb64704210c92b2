// New import, with its policy: source, destination bucket and prefix, redundancy class and
// region lock; the backends the tenant may use (region, jurisdiction, health); and a live
// explain of where an object would go - the same lines as `bulletproof policy explain`.
import { call } from "../api.js";
import { alertBox, errorText, field, h, table } from "../dom.js";

export async function render(main) {
  document.title = "New import - Bulletproof console";
  main.append(h("h1", {}, "New import: source, destination and policy"));
  let me;
  let policy;
  let sources;
  try {
    [me, policy, sources] = await Promise.all([
      call("GET", "/ui/api/whoami"), call("GET", "/ui/api/policy"), call("GET", "/import/sources")]);
  } catch (error) {
    main.append(alertBox("error", `Could not load the policy: ${errorText(error)}`));
    return;
  }
  if (!sources.length) {
    main.append(h("div", { class: "card" }, h("p", { class: "empty" }, "No source yet."), h("a", { href: "#/sources" }, "Add a source first")));
    return;
  }
  if (!me.buckets.length) {
    main.append(h("div", { class: "card" }, h("p", { class: "empty" }, "You have no bucket to import into: create one with your S3 client (bp mb) first.")));
    return;
  }
  if (!me.published_keys.length) {
    main.append(alertBox("error", "You have published no public key: imported objects are encrypted to your keys, so publish one first (bp key publish)."));
  }
  const status = h("div", { "aria-live": "polite" });
  const explainBox = h("pre", { class: "explain", id: "explain", "aria-live": "polite", tabindex: "0" }, "...");
  const verdict = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "policy-title", novalidate: true },
    h("h2", { id: "policy-title" }, "Import settings"),
    h("div", { class: "row" },
      field("Source", { tag: "select", name: "source", options: sources.map((s) => h("option", { value: s.id }, `${s.name} (${s.bucket}${s.prefix ? "/" + s.prefix : ""})`)) }),
      field("Destination bucket", { tag: "select", name: "bucket", options: me.buckets.map((b) => h("option", { value: b.name }, b.name)) })),
    h("div", { class: "row" },
      field("Destination prefix", { name: "prefix", placeholder: "imported/" }, "Optional: keys land under this prefix."),
      field("Redundancy class", { tag: "select", name: "class", options: [h("option", { value: "" }, `Default (${policy.default_class})`),
        ...Object.entries(policy.classes).map(([name, text]) => h("option", { value: name }, `${name} - ${text}`))] })),
    field("Region lock", { name: "region_lock", placeholder: "eu" }, "Optional, comma-separated regions or jurisdictions (e.g. eu). It narrows where the import may write, never widens."),
    status,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create import")));

  const values = () => ({
    source: Number(form.elements.source.value),
    destination: form.elements.bucket.value + (form.elements.prefix.value.trim() ? `/${form.elements.prefix.value.trim()}` : ""),
    class: form.elements.class.value || null,
    region_lock: form.elements.region_lock.value.split(",").map((s) => s.trim()).filter(Boolean),
  });

  let pending = 0;
  async function explain() {
    const ticket = ++pending;
    const v = values();
    try {
      const result = await call("POST", "/ui/api/explain", { body: { destination: v.destination, class: v.class, region_lock: v.region_lock } });
      if (ticket !== pending) return;
      explainBox.textContent = result.lines.join("\n");
      verdict.replaceChildren(result.placeable
        ? alertBox("ok", `Placeable: objects go to ${result.targets.join(", ")} (class ${result.class}).`)
        : alertBox("error", `Not placeable: ${result.error}. The import would end RED: change the class or the region lock.`));
    } catch (error) {
      if (ticket !== pending) return;
      explainBox.textContent = "";
      verdict.replaceChildren(alertBox("error", `Explain failed: ${errorText(error)}`));
    }
  }
  let timer = null;
  const soon = () => { clearTimeout(timer); timer = setTimeout(explain, 250); };
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    status.replaceChildren();
    try {
      const v = values();
      const body = { source: v.source, destination: v.destination };
      if (v.class) body.class = v.class;
      if (v.region_lock.length) body.region_lock = v.region_lock;
      const run = await call("POST", "/import/runs", { body });
      location.hash = `#/start/${run.id}`;
    } catch (error) {
      status.replaceChildren(alertBox("error", `The import was not created: ${errorText(error)}`));
      button.disabled = false;
    }
  });

  main.append(h("div", { class: "grid2" },
    form,
    h("section", { class: "card", "aria-labelledby": "explain-title" },
      h("h2", { id: "explain-title" }, "Where objects would go (live explain)"), verdict, explainBox)),
  h("section", { class: "card", "aria-labelledby": "backends-title" },
    h("h2", { id: "backends-title" }, `Backends you may use (policy version ${policy.version}; your rules: ${policy.tenant_rules})`),
    table([["Backend"], ["Region"], ["Country"], ["Jurisdiction"], ["Health"], ["RTT", "num"]],
      policy.backends.map((b) => [b.name, b.region, b.country, b.jurisdiction,
        h("span", { class: `health ${b.healthy ? "up" : "down"}` }, b.healthy ? "healthy" : "unhealthy"),
        h("td", { class: "num" }, `${b.rtt_ms} ms`)]),
      "No backend is open to you: ask the operator.")));
  await explain();
  return () => clearTimeout(timer);
}
