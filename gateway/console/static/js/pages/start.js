// Start an import: the passphrase is typed again and sent once, in the signed body of the
// start call; the server checks it opens the sealed credentials before anything starts.
import { call } from "../api.js";
import { alertBox, errorText, field, h, takeSecrets } from "../dom.js";

export async function render(main, [id]) {
  document.title = `Start import ${id} - Bulletproof console`;
  main.append(h("h1", {}, `Start import ${id}`));
  let run;
  try {
    run = await call("GET", `/import/runs/${id}`);
  } catch (error) {
    main.append(alertBox("error", `Could not load import ${id}: ${errorText(error)}`));
    return;
  }
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "start-title", novalidate: true },
    h("h2", { id: "start-title" }, "Unlock and start"),
    h("p", {}, `From ${run.source.endpoint} bucket ${run.source.bucket}${run.source.prefix ? "/" + run.source.prefix : ""} to ${run.destination.bucket}${run.destination.prefix ? "/" + run.destination.prefix : ""}` +
      `${run.class ? `, class ${run.class}` : ""}${run.region_lock && run.region_lock.length ? `, region lock ${run.region_lock.join(",")}` : ""}.`),
    field("Passphrase", { name: "passphrase", type: "password", autocomplete: "off", required: true },
      "The source's passphrase. It reaches the import job in memory only; it is never stored or logged."),
    status,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Start import"), h("a", { href: `#/imports/${id}` }, "Dashboard")));
  if (run.run_state !== "pending") {
    status.append(alertBox("info", `This import is ${run.run_state}: it has been started already.`));
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { passphrase } = takeSecrets(form, ["passphrase"]);
    const button = form.querySelector("button");
    if (!passphrase) { status.replaceChildren(alertBox("error", "Type the passphrase.")); return; }
    button.disabled = true;
    status.replaceChildren(alertBox("info", "Checking the passphrase..."));
    try {
      await call("POST", `/import/runs/${id}/start`, { body: { passphrase } });
      location.hash = `#/imports/${id}`;
    } catch (error) {
      status.replaceChildren(alertBox("error", error.code === "WrongPassphrase"
        ? "Wrong passphrase: the sealed credentials did not open, and nothing was started. Try again."
        : `The import did not start: ${errorText(error)}`));
      button.disabled = false;
      form.elements.passphrase.focus();
    }
  });
  main.append(form);
  form.elements.passphrase.focus();
}
