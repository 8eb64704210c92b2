// The dashboard: every import with its state badge and progress; one import in detail with
// objects and bytes done/total, rate, ETA, its errors (key and reason), a throughput chart,
// and after GREEN "mark source for deletion" and the deletion manifest. Refreshes every 2 s
// while shown.
import { call } from "../api.js";
import { alertBox, badge, bytes, duration, errorText, h, num, table } from "../dom.js";
import { drawThroughput } from "../chart.js";

const REFRESH_MS = 2000;

function progress(done, total, label) {
  return h("progress", { max: Math.max(total, 1), value: done, "aria-label": label }, `${done} of ${total}`);
}

function stat(value, key) {
  return h("div", { class: "stat" }, h("div", { class: "v" }, value), h("div", { class: "k" }, key));
}

async function listView(main) {
  const box = h("div", { class: "card" }, h("p", {}, "Loading..."));
  main.append(h("h1", {}, "Imports"), box);
  async function refresh() {
    try {
      const { imports } = await call("GET", "/import/runs");
      box.replaceChildren(table(
        [["Import"], ["State"], ["Run"], ["Destination"], ["Objects", "num"], ["Bytes", "num"], ["Errors", "num"], ["Progress"]],
        imports.map((r) => [h("a", { href: `#/imports/${r.id}` }, `Import ${r.id}`), badge(r.state), r.run_state,
          `${r.destination.bucket}${r.destination.prefix ? "/" + r.destination.prefix : ""}`,
          num(`${r.objects_done} / ${r.objects_total}`), num(`${bytes(r.bytes_done)} / ${bytes(r.bytes_total)}`), num(String(r.errors)),
          progress(r.bytes_done, r.bytes_total, `import ${r.id} bytes done`)]),
        "No import yet."), h("p", {}, h("a", { href: "#/new-import" }, "Start a new import")));
    } catch (error) {
      box.replaceChildren(alertBox("error", `Could not list the imports: ${errorText(error)}`));
    }
  }
  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

async function downloadManifest(id, status) {
  try {
    const blob = await call("GET", `/import/runs/${id}/deletion-manifest`, { raw: true });
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `deletion-manifest-${id}.json` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (error) {
    status.replaceChildren(alertBox("error", `Download failed: ${errorText(error)}`));
  }
}

async function detailView(main, id) {
  document.title = `Import ${id} - Bulletproof console`;
  const head = h("div", {});
  const body = h("div", { class: "card" }, h("p", {}, "Loading..."));
  const canvas = h("canvas", { class: "chart", role: "img", "aria-label": "Throughput chart" });
  const chartCard = h("section", { class: "card", "aria-labelledby": "chart-title" },
    h("h2", { id: "chart-title" }, "Throughput over time (bytes verified per second)"), canvas);
  const errorsCard = h("section", { class: "card", "aria-labelledby": "errors-title" }, h("h2", { id: "errors-title" }, "Errors"));
  const markStatus = h("div", { "aria-live": "polite" });
  const markCard = h("section", { class: "card", "aria-labelledby": "mark-title" },
    h("h2", { id: "mark-title" }, "Source deletion"), markStatus);
  main.append(h("h1", {}, `Import ${id}`), head, body, chartCard, errorsCard, markCard);
  let lastMarkKey = "";

  async function renderMark(run) {
    const key = `${run.state}|${run.source_marked_at}`;
    if (key === lastMarkKey) return;
    lastMarkKey = key;
    const actions = h("div", { class: "actions" });
    if (run.source_marked_at) {
      actions.append(h("p", {}, `Source marked for deletion at ${run.source_marked_at}. We never delete it ourselves: the manifest lists every key, ETag and size you may delete at the source.`),
        h("button", { type: "button", onclick: () => downloadManifest(id, markStatus) }, "Download deletion manifest"));
    } else if (run.state === "GREEN") {
      actions.append(h("p", {}, "Every object is stored per its class and verified against the source."),
        h("button", { type: "button", onclick: async (event) => {
          event.target.disabled = true;
          try {
            const result = await call("POST", `/import/runs/${id}/mark-source`, { body: {} });
            markStatus.replaceChildren(alertBox("ok", `Source marked for deletion: ${result.marked} keys in the manifest.`));
            lastMarkKey = "";
            await refresh();
          } catch (error) {
            markStatus.replaceChildren(alertBox("error", `Mark failed: ${errorText(error)}`));
            event.target.disabled = false;
          }
        } }, "Mark source for deletion"));
    } else {
      actions.append(h("p", { class: "empty" }, "Available once the import is GREEN."));
    }
    markCard.replaceChildren(h("h2", { id: "mark-title" }, "Source deletion"), markStatus, actions);
  }

  async function refresh() {
    try {
      const [run, errs, tput] = await Promise.all([
        call("GET", `/import/runs/${id}`), call("GET", `/import/runs/${id}/errors`), call("GET", `/ui/api/runs/${id}/throughput`)]);
      head.replaceChildren(h("p", {}, badge(run.state), ` ${run.run_state}`, run.reason ? ` - ${run.reason}` : "",
        run.last_error ? h("span", {}, ` (${run.last_error})`) : ""));
      body.replaceChildren(
        h("div", { class: "stats" },
          stat(`${run.objects_done} / ${run.objects_total}`, "objects done / listed"),
          stat(`${bytes(run.bytes_done)} / ${bytes(run.bytes_total)}`, "bytes done / listed"),
          stat(`${bytes(run.bytes_per_s)}/s, ${run.objects_per_s} obj/s`, "rate"),
          stat(run.state === "GREEN" ? "done" : duration(run.eta_s), "ETA")),
        h("div", {}, h("span", { class: "k" }, "Objects"), progress(run.objects_done, run.objects_total, "objects done")),
        h("div", {}, h("span", { class: "k" }, "Bytes"), progress(run.bytes_done, run.bytes_total, "bytes done")),
        h("p", { class: "hint" }, `From ${run.source.endpoint} ${run.source.bucket}${run.source.prefix ? "/" + run.source.prefix : ""} to ${run.destination.bucket}${run.destination.prefix ? "/" + run.destination.prefix : ""}; ${run.errors} error(s); job ${run.submission_id || "not submitted"}${run.job ? ` (${run.job.status})` : ""}.`));
      errorsCard.replaceChildren(h("h2", { id: "errors-title" }, `Errors (${run.errors})`),
        table([["Key"], ["Reason"], ["Attempts", "num"]], errs.errors.map((e) => [h("span", { class: "mono" }, e.key), e.error || "-", num(String(e.attempts))]), "No errors."));
      drawThroughput(canvas, tput);
      await renderMark(run);
    } catch (error) {
      body.replaceChildren(alertBox("error", `Could not load import ${id}: ${errorText(error)}`));
    }
  }
  await refresh();
  const timer = setInterval(refresh, REFRESH_MS);
  return () => clearInterval(timer);
}

export async function render(main, params) {
  document.title = "Imports - Bulletproof console";
  return params.length ? detailView(main, params[0]) : listView(main);
}
