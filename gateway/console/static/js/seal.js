// Source credentials sealed under a passphrase in EXACTLY the format of docs/import.md and
// core/credential_seal.py, with WebCrypto:
//   {"v":1,"kdf":"PBKDF2-SHA256","iter":600000,"salt":b64,"iv":b64,
//    "aad":"bulletproof-import-source:v1","ct":b64}
// key = PBKDF2-HMAC-SHA256(NFC(passphrase) as UTF-8, salt (16 random bytes), iter, 256 bits);
// ct = AES-256-GCM(key, iv (12 random bytes, fresh every seal), JSON credentials, aad), tag
// appended (WebCrypto does so, as Python's AESGCM does).

export const FORMAT_VERSION = 1;
export const KDF = "PBKDF2-SHA256";
export const SOURCE_AAD = "bulletproof-import-source:v1";
export const ITERATIONS = 600000;
export const MIN_PASSPHRASE_CHARS = 8;
const encoder = new TextEncoder();

function b64(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text);
}

function unb64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

async function deriveKey(passphrase, salt, iterations, usage) {
  const material = await crypto.subtle.importKey(
    "raw", encoder.encode(passphrase.normalize("NFC")), "PBKDF2", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt, iterations },
    material, { name: "AES-GCM", length: 256 }, false, [usage]);
}

// credentials: {access_key, secret_key[, session_token]}; returns the blob as JSON text.
export async function sealCredentials(credentials, passphrase, iterations = ITERATIONS) {
  if (passphrase.length < MIN_PASSPHRASE_CHARS) {
    throw new Error(`the passphrase must have at least ${MIN_PASSPHRASE_CHARS} characters`);
  }
  const plain = { access_key: credentials.access_key, secret_key: credentials.secret_key };
  if (credentials.session_token) plain.session_token = credentials.session_token;
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const key = await deriveKey(passphrase, salt, iterations, "encrypt");
  const ct = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData: encoder.encode(SOURCE_AAD), tagLength: 128 },
    key, encoder.encode(JSON.stringify(plain)));
  return JSON.stringify({
    v: FORMAT_VERSION, kdf: KDF, iter: iterations, salt: b64(salt), iv: b64(iv),
    aad: SOURCE_AAD, ct: b64(ct),
  });
}

// The credentials in a blob (the CLI's or this page's); throws on a wrong passphrase.
export async function openSealed(blob, passphrase) {
  const doc = JSON.parse(blob);
  if (doc.v !== FORMAT_VERSION || doc.kdf !== KDF || doc.aad !== SOURCE_AAD) {
    throw new Error("not sealed import-source credentials");
  }
  if (!Number.isInteger(doc.iter) || doc.iter < 600000 || doc.iter > 10000000) {
    throw new Error("iteration count out of bounds");
  }
  const key = await deriveKey(passphrase, unb64(doc.salt), doc.iter, "decrypt");
  let plain;
  try {
    plain = await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: unb64(doc.iv), additionalData: encoder.encode(doc.aad), tagLength: 128 },
      key, unb64(doc.ct));
  } catch {
    throw new Error("wrong passphrase, or the blob was altered");
  }
  return JSON.parse(new TextDecoder().decode(plain));
}
