// The signed-in session and every call to the gateway. The tenant's secret key lives in this
// module's memory only, for the life of the tab: never in localStorage, sessionStorage,
// cookies, IndexedDB, a URL or a log. Signing out (or closing the tab) forgets it.
import { signRequest } from "./sigv4.js";

let session = null; // {accessKey, secretKey, region, tenant}
const encoder = new TextEncoder();

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function signedIn() { return session !== null; }
export function tenantName() { return session ? session.tenant : ""; }
export function signOut() { session = null; }

let regionPromise = null;
function region() {
  if (!regionPromise) {
    regionPromise = fetch("/ui/config.json", { cache: "no-store" }).then((r) => r.json()).then((c) => c.region);
  }
  return regionPromise;
}

async function send(creds, method, path, { body, query, raw } = {}) {
  const bytes = body === undefined ? new Uint8Array(0) : encoder.encode(JSON.stringify(body));
  const headers = await signRequest({
    method, path, query, body: bytes, host: location.host, region: creds.region,
    accessKey: creds.accessKey, secretKey: creds.secretKey,
  });
  if (body !== undefined) headers["content-type"] = "application/json";
  const qs = new URLSearchParams(query || {}).toString();
  let response;
  try {
    response = await fetch(path + (qs ? `?${qs}` : ""), {
      method, headers, body: body === undefined ? undefined : bytes,
      credentials: "omit", cache: "no-store", redirect: "error",
    });
  } catch {
    throw new ApiError(0, "NetworkError", "The gateway cannot be reached. Check your connection and try again.");
  }
  if (!response.ok) {
    let doc = null;
    try { doc = await response.json(); } catch { /* not JSON: an S3 XML error or a proxy page */ }
    if (doc && doc.error) throw new ApiError(response.status, doc.error, doc.message || doc.error);
    if (response.status === 403) throw new ApiError(403, "AccessDenied", "The gateway refused the signature: check the access key and secret.");
    throw new ApiError(response.status, "HttpError", `The gateway answered ${response.status}.`);
  }
  return raw ? response.blob() : response.json();
}

// Checks the keys with a signed call before keeping them.
export async function signIn(accessKey, secretKey) {
  const creds = { accessKey, secretKey, region: await region() };
  const me = await send(creds, "GET", "/ui/api/whoami");
  session = { ...creds, tenant: me.tenant };
  return me;
}

export function call(method, path, options) {
  if (!session) throw new ApiError(401, "SignedOut", "Sign in first.");
  return send(session, method, path, options);
}
