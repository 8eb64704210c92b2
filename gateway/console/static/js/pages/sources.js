// Sources: the tenant's import sources, and adding one. The source's keys are sealed HERE
// (seal.js, WebCrypto) under a passphrase typed twice; only the sealed blob is sent. Then
// "Test connection" unlocks it on the server side with the passphrase (sent in a signed body,
// never stored) and lists one page of the source.
import { call } from "../api.js";
import { alertBox, errorText, field, h, table, takeSecrets } from "../dom.js";
import { MIN_PASSPHRASE_CHARS, sealCredentials } from "../seal.js";

const TEST_ERRORS = {
  WrongPassphrase: "Wrong passphrase: the sealed credentials did not open. Nothing was contacted.",
  SourceAccessDenied: "The source refused these credentials (bad access key or secret key, or no permission to list the bucket).",
  SourceUnreachable: "The source endpoint cannot be reached: check the URL, the port and the network.",
  SourceBucketMissing: "The source has no such bucket.",
};

function testPanel(source) {
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-label": `Test connection to ${source.name}` },
    h("h2", {}, `Test connection: ${source.name}`),
    h("p", {}, `${source.endpoint} - bucket ${source.bucket}${source.prefix ? ` / ${source.prefix}` : ""}`),
    field("Passphrase", { name: "passphrase", type: "password", autocomplete: "off", required: true },
      "The passphrase you sealed the keys with. It unlocks them for this test only and is not stored."),
    status,
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Test connection"),
      h("a", { href: "#/new-import" }, "Next: choose the policy")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { passphrase } = takeSecrets(form, ["passphrase"]);
    const button = form.querySelector("button");
    button.disabled = true;
    status.replaceChildren(alertBox("info", "Unlocking the credentials and listing the source..."));
    try {
      const result = await call("POST", `/import/sources/${source.id}/test`, { body: { passphrase } });
      status.replaceChildren(alertBox("ok", `Connection OK: the source answered with ${result.sample.length} key(s) on its first page.`),
        table([["Key"], ["Size", "num"]], result.sample.map((s) => [s.key, h("td", { class: "num" }, String(s.size))]), "The source is empty."));
    } catch (error) {
      status.replaceChildren(alertBox("error", TEST_ERRORS[error.code] ? `${TEST_ERRORS[error.code]} (${error.message})` : `Test failed: ${errorText(error)}`));
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export async function render(main) {
  document.title = "Sources - Bulletproof console";
  main.append(h("h1", {}, "Import sources"));
  const listBox = h("div", { class: "card" }, h("h2", {}, "Your sources"), h("p", {}, "Loading..."));
  const testBox = h("div", {});
  main.append(listBox);

  async function refresh() {
    try {
      const list = await call("GET", "/import/sources");
      listBox.replaceChildren(h("h2", {}, "Your sources"),
        table([["Name"], ["Endpoint"], ["Bucket"], ["Prefix"], ["Region"], ["Test"]],
          list.map((s) => [s.name, h("span", { class: "mono" }, s.endpoint), s.bucket, s.prefix || "-", s.region,
            h("button", { type: "button", class: "secondary", onclick: () => { testBox.replaceChildren(testPanel(s)); testBox.querySelector("input").focus(); } }, `Test ${s.name}`)]),
          "No source yet: add one below."));
    } catch (error) {
      listBox.replaceChildren(h("h2", {}, "Your sources"), alertBox("error", `Could not list the sources: ${errorText(error)}`));
    }
  }

  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card", "aria-labelledby": "add-title", novalidate: true, autocomplete: "off" },
    h("h2", { id: "add-title" }, "Add a source"),
    h("p", {}, "The access key and secret key are sealed in this browser (PBKDF2-SHA256, 600,000 rounds, AES-256-GCM) under your passphrase; the gateway only ever receives the sealed blob."),
    h("div", { class: "row" },
      field("Name", { name: "name", required: true, pattern: "[A-Za-z0-9][A-Za-z0-9._-]{0,62}" }, "Letters, digits, '.', '_' or '-'."),
      field("Endpoint URL", { name: "endpoint", type: "url", required: true, placeholder: "https://s3.example.com" })),
    h("div", { class: "row" },
      field("Bucket", { name: "bucket", required: true }),
      field("Prefix", { name: "prefix" }, "Optional: import only keys under this prefix.")),
    h("div", { class: "row" },
      field("Region", { name: "region", value: "us-east-1" }),
      h("div", {})),
    h("div", { class: "row" },
      field("Access key", { name: "access_key", required: true, spellcheck: "false" }),
      field("Secret key", { name: "secret_key", type: "password", required: true })),
    h("div", { class: "row" },
      field("Passphrase", { name: "passphrase", type: "password", required: true, autocomplete: "new-password" }, `At least ${MIN_PASSPHRASE_CHARS} characters. Needed again to test and to start; it is never stored.`),
      field("Passphrase again", { name: "passphrase2", type: "password", required: true, autocomplete: "new-password" })),
    status,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Seal and add source")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const plain = Object.fromEntries(["name", "endpoint", "bucket", "prefix", "region"].map((n) => [n, form.elements[n].value.trim()]));
    const missing = ["name", "endpoint", "bucket"].filter((n) => !plain[n]);
    const pass1 = form.elements.passphrase.value;
    const pass2 = form.elements.passphrase2.value;
    status.replaceChildren();
    if (missing.length) { status.append(alertBox("error", `Fill in: ${missing.join(", ")}.`)); return; }
    if (!form.elements.access_key.value || !form.elements.secret_key.value) { status.append(alertBox("error", "Enter the source's access key and secret key.")); return; }
    if (pass1.length < MIN_PASSPHRASE_CHARS) { status.append(alertBox("error", `The passphrase needs at least ${MIN_PASSPHRASE_CHARS} characters.`)); return; }
    if (pass1 !== pass2) { status.append(alertBox("error", "The two passphrases differ: type the same passphrase twice.")); return; }
    const secrets = takeSecrets(form, ["access_key", "secret_key", "passphrase", "passphrase2"]);
    button.disabled = true;
    status.append(alertBox("info", "Sealing the credentials in your browser..."));
    try {
      const sealed = await sealCredentials({ access_key: secrets.access_key, secret_key: secrets.secret_key }, secrets.passphrase);
      const source = await call("POST", "/import/sources", { body: { ...plain, region: plain.region || "us-east-1", sealed } });
      status.replaceChildren(alertBox("ok", `Source ${source.name} added (sealed). Test the connection below.`));
      for (const n of ["name", "endpoint", "bucket", "prefix"]) form.elements[n].value = "";
      await refresh();
      testBox.replaceChildren(testPanel(source));
    } catch (error) {
      status.replaceChildren(alertBox("error", `The source was not added: ${errorText(error)}`));
    } finally {
      button.disabled = false;
    }
  });
  main.append(testBox, form);
  await refresh();
}
