// Talking to the hub: the connection string (sessionStorage only), SAS tokens signed here with
// WebCrypto (HMAC-SHA256, as Azure IoT Hub's service SAS), and the REST calls the pages make.
const STORE = "methodhub.connectionString";
const TOKEN_TTL = 600; // seconds: short, since a token also travels in the event stream's URL
export const API = "api-version=2021-04-12";

export function parseConnectionString(text) {
  const fields = {};
  for (const part of text.trim().split(";")) {
    const at = part.indexOf("=");
    if (at > 0) fields[part.slice(0, at).trim()] = part.slice(at + 1).trim();
  }
  const missing = ["HostName", "SharedAccessKeyName", "SharedAccessKey"].filter((k) => !fields[k]);
  if (missing.length) throw new Error(`The connection string has no ${missing.join(", ")}.`);
  if (fields.DeviceId) throw new Error("That is a device connection string; sign in with a service policy's (iothubowner, service, registryRead).");
  return { host: fields.HostName, policy: fields.SharedAccessKeyName, key: fields.SharedAccessKey };
}

function base64ToBytes(text) {
  let raw;
  try { raw = atob(text); } catch { throw new Error("The connection string's SharedAccessKey is not base64."); }
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

export async function signSas(creds, ttl = TOKEN_TTL) {
  const resource = encodeURIComponent(creds.host);
  const expiry = Math.floor(Date.now() / 1000) + ttl;
  const key = await crypto.subtle.importKey("raw", base64ToBytes(creds.key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  const mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(`${resource}\n${expiry}`));
  const sig = btoa(String.fromCharCode(...new Uint8Array(mac)));
  return { token: `SharedAccessSignature sr=${resource}&sig=${encodeURIComponent(sig)}&se=${expiry}&skn=${encodeURIComponent(creds.policy)}`, expiry };
}

export class Hub {
  constructor(creds) { this.creds = creds; this.cached = null; this.rights = []; }

  static restore() {
    const text = sessionStorage.getItem(STORE);
    if (!text) return null;
    try { return new Hub(parseConnectionString(text)); } catch { return null; }
  }

  static async signIn(text) {
    if (!globalThis.crypto || !crypto.subtle) throw new Error("This page cannot sign tokens here: browsers offer WebCrypto only on HTTPS or on localhost. Open the console over HTTPS (port 8443) or from 127.0.0.1.");
    const hub = new Hub(parseConnectionString(text));
    await hub.loadSession();
    sessionStorage.setItem(STORE, text.trim());
    return hub;
  }

  signOut() {
    sessionStorage.removeItem(STORE);
    this.closed = true;
    if (this.source) this.source.close();
  }

  async token() {
    const now = Date.now() / 1000;
    if (!this.cached || this.cached.expiry - now < 60) this.cached = await signSas(this.creds);
    return this.cached.token;
  }

  async loadSession() {
    const session = await this.request("GET", "/console/session");
    this.rights = session.rights;
    this.policy = session.policy;
    this.node = session.node;
    return session;
  }

  can(right) { return this.rights.includes(right); }

  // fetch with the SAS token; returns parsed JSON (or null), throws HubError with the hub's message.
  async request(method, path, body, extraHeaders = {}) {
    const headers = { authorization: await this.token(), ...extraHeaders };
    if (body !== undefined) headers["content-type"] = "application/json";
    const started = performance.now();
    const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const elapsed = performance.now() - started;
    const text = await response.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch { data = text; } }
    if (!response.ok) throw new HubError(response.status, data, elapsed);
    if (data && typeof data === "object" && !Array.isArray(data)) Object.defineProperty(data, "_elapsed", { value: elapsed });
    return data;
  }

  async events(onEvent, onState) {
    const url = `/console/events?sas=${encodeURIComponent(await this.token())}`;
    const source = new EventSource(url);
    source.addEventListener("hello", (e) => onEvent("hello", JSON.parse(e.data)));
    source.addEventListener("connection", (e) => onEvent("connection", JSON.parse(e.data)));
    source.onopen = () => onState(true);
    source.onerror = async () => {
      onState(false);
      source.close(); // re-open with a fresh token (the old one may have expired)
      setTimeout(() => { if (!this.closed) this.events(onEvent, onState); }, 2000);
    };
    this.source = source;
    return source;
  }
}

export class HubError extends Error {
  constructor(status, data, elapsed) {
    let message = (data && (data.Message || data.message || (data.error && data.error.message))) || `HTTP ${status}`;
    if (typeof message === "string" && message.startsWith("{")) {
      // Azure's error body: Message is itself JSON, {"errorCode": 404103, "message": "...", ...}.
      try { const inner = JSON.parse(message); message = inner.message ? `${inner.message} (${inner.errorCode})` : message; } catch { /* as sent */ }
    }
    super(typeof message === "string" ? message : JSON.stringify(message));
    this.status = status;
    this.data = data;
    this.elapsed = elapsed;
  }
}
