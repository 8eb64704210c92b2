// Sign in with the tenant's access key and secret. The keys are checked with one signed call
// (/ui/api/whoami) and then kept in memory only; the form is emptied at once.
import { signIn } from "../api.js";
import { alertBox, errorText, field, h, takeSecrets } from "../dom.js";

export async function render(main, _params, next) {
  document.title = "Sign in - Bulletproof console";
  const status = h("div", { "aria-live": "polite" });
  const form = h("form", { class: "card signin", "aria-labelledby": "signin-title", novalidate: true },
    h("h1", { id: "signin-title" }, "Sign in"),
    h("p", {}, "Use your tenant's access key. The secret never leaves this tab: every request is signed here with SigV4, and closing the tab forgets it."),
    field("Access key ID", { name: "access_key", autocomplete: "username", required: true, spellcheck: "false" }),
    field("Secret access key", { name: "secret_key", type: "password", autocomplete: "current-password", required: true }),
    status,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    const { access_key: accessKey, secret_key: secretKey } = takeSecrets(form, ["access_key", "secret_key"]);
    form.elements.access_key.value = accessKey;
    status.replaceChildren();
    if (!accessKey || !secretKey) {
      status.append(alertBox("error", "Enter both the access key ID and the secret access key."));
      return;
    }
    button.disabled = true;
    try {
      await signIn(accessKey.trim(), secretKey);
      if (location.hash === `#${next}`) window.dispatchEvent(new HashChangeEvent("hashchange"));
      else location.hash = `#${next}`;
    } catch (error) {
      const text = error.status === 403 || error.code === "InvalidAccessKeyId" || error.code === "SignatureDoesNotMatch"
        ? "Sign-in failed: the access key or the secret is not right."
        : `Sign-in failed: ${errorText(error)}`;
      status.append(alertBox("error", text));
    } finally {
      button.disabled = false;
    }
  });
  main.append(form);
  form.elements.access_key.focus();
}
