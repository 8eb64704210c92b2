// AWS Signature Version 4 in the browser, with WebCrypto's HMAC-SHA256 and SHA-256.
// Every request signs host, x-amz-date and x-amz-content-sha256 = the SHA-256 of the exact
// body bytes sent (never UNSIGNED-PAYLOAD), so the gateway checks every byte, passphrases too.
// The secret is only ever an HMAC key here; it is not logged, stored or put in a URL.

const encoder = new TextEncoder();

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

export async function sha256Hex(bytes) {
  return hex(await crypto.subtle.digest("SHA-256", bytes));
}

async function hmac(key, text) {
  const cryptoKey = await crypto.subtle.importKey(
    "raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", cryptoKey, encoder.encode(text)));
}

// S3's UriEncode: unreserved characters kept, every other UTF-8 byte %XX in upper case;
// "/" kept in paths.
export function uriEncode(text, keepSlash) {
  let out = "";
  for (const byte of encoder.encode(text)) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-._~]/.test(c) || (keepSlash && c === "/")) out += c;
    else out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function amzDate(now) {
  return now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

// The headers to send with a request: path is the decoded path ("/import/runs/1"), query a
// plain object, body a Uint8Array (empty for GET).
export async function signRequest({ method, path, query, body, host, region, accessKey, secretKey, now }) {
  const date = amzDate(now || new Date());
  const day = date.slice(0, 8);
  const payloadHash = await sha256Hex(body);
  const canonicalQuery = Object.entries(query || {})
    .map(([k, v]) => [uriEncode(k, false), uriEncode(String(v), false)])
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
  const headers = { host, "x-amz-content-sha256": payloadHash, "x-amz-date": date };
  const signedHeaders = Object.keys(headers).sort().join(";");
  const canonicalHeaders = Object.keys(headers).sort().map((k) => `${k}:${headers[k]}\n`).join("");
  const canonicalRequest = [
    method, uriEncode(path, true), canonicalQuery, canonicalHeaders, signedHeaders, payloadHash,
  ].join("\n");
  const scope = `${day}/${region}/s3/aws4_request`;
  const stringToSign = [
    "AWS4-HMAC-SHA256", date, scope, await sha256Hex(encoder.encode(canonicalRequest)),
  ].join("\n");
  let key = await hmac(encoder.encode("AWS4" + secretKey), day);
  key = await hmac(key, region);
  key = await hmac(key, "s3");
  key = await hmac(key, "aws4_request");
  const signature = hex(await hmac(key, stringToSign));
  return {
    "x-amz-content-sha256": payloadHash,
    "x-amz-date": date,
    authorization:
      `AWS4-HMAC-SHA256 Credential=${accessKey}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`,
  };
}
