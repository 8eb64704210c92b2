// Overview: the part of the federation this tenant may see - the backends it may use with
// health, RTT and the bytes of its own replicas there; its replicas by state; the healing
// work queued for its objects; and the policy in force.
import { call } from "../api.js";
import { alertBox, bytes, errorText, h, num, table } from "../dom.js";

function stat(value, key) {
  return h("div", { class: "stat" }, h("div", { class: "v" }, String(value)), h("div", { class: "k" }, key));
}

export async function render(main) {
  document.title = "Overview - Bulletproof console";
  main.append(h("h1", {}, "Overview"));
  const box = h("div", {}, h("p", {}, "Loading..."));
  main.append(box);
  async function refresh() {
    try {
      const o = await call("GET", "/ui/api/overview");
      box.replaceChildren(
        h("section", { class: "card", "aria-labelledby": "rep-title" }, h("h2", { id: "rep-title" }, "Your replicas"),
          h("div", { class: "stats" }, stat(o.replicas.ok, "ok"), stat(o.replicas.pending, "pending"),
            stat(o.replicas.corrupt, "corrupt"), stat(o.repair_queue.total, "repair queue (jobs)"))),
        h("section", { class: "card", "aria-labelledby": "be-title" }, h("h2", { id: "be-title" }, "Backends"),
          table([["Backend"], ["Region"], ["Jurisdiction"], ["Health"], ["RTT", "num"], ["Your data", "num"]],
            o.backends.map((b) => [b.name, b.region, b.jurisdiction,
              h("span", { class: `health ${b.healthy ? "up" : "down"}` }, b.healthy ? "healthy" : "unhealthy"),
              num(`${b.rtt_ms} ms`), num(bytes(b.tenant_bytes))]),
            "No backend is open to you.")),
        h("section", { class: "card", "aria-labelledby": "pol-title" }, h("h2", { id: "pol-title" }, "Policy in force"),
          h("p", {}, `Policy version ${o.policy.version}; default class ${o.policy.default_class}; your rules: ${o.policy.tenant_rules}.`)));
    } catch (error) {
      box.replaceChildren(alertBox("error", `Could not load the overview: ${errorText(error)}`));
    }
  }
  await refresh();
  const timer = setInterval(refresh, 5000);
  return () => clearInterval(timer);
}
