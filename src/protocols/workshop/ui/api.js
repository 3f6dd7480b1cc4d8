// The page's one way to call polyport over HTTP: every call carries the key from the connect
// panel (kept in sessionStorage: gone when the tab closes, never in a URL or a cookie) and
// reports what went over the wire, so the panels can show it.

const KEY = "polyport.key";

export const session = {
  get key() { return sessionStorage.getItem(KEY) || ""; },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
  // "off" (auth disabled), "ok" (the key works), "needed" (no key, or a wrong one).
  auth: "unknown",
};

/** `Authorization: Bearer <key>` when a key is set, merged into `extra`. */
export function authHeaders(extra = {}) {
  const headers = { ...extra };
  if (session.key) headers["Authorization"] = `Bearer ${session.key}`;
  return headers;
}

/**
 * One HTTP exchange. Returns what was sent and what came back: status, headers, body text and
 * bytes, the parsed JSON when it is JSON, and the time from sending to the whole body.
 */
export async function call(method, path, { body, headers = {}, raw = false, anonymous = false } = {}) {
  const sent = anonymous ? { ...headers } : authHeaders(headers);
  let payload = body;
  if (body !== undefined && typeof body !== "string" && !(body instanceof Uint8Array)) {
    payload = JSON.stringify(body);
    sent["Content-Type"] ??= "application/json";
  }
  const started = performance.now();
  // no-store: the page sets its own conditional headers, and wants to see every 304 itself.
  const response = await fetch(path, { method, headers: sent, body: payload, cache: "no-store" });
  const bytes = new Uint8Array(await response.arrayBuffer());
  const ms = performance.now() - started;
  const text = raw ? "" : new TextDecoder().decode(bytes);
  let json = null;
  if (!raw && (response.headers.get("content-type") || "").includes("json")) {
    try { json = JSON.parse(text); } catch { json = null; }
  }
  const outBytes = payload === undefined ? 0
    : payload instanceof Uint8Array ? payload.length : new TextEncoder().encode(payload).length;
  return {
    request: { method, path, headers: sent, body: payload, bytes: outBytes },
    status: response.status,
    headers: [...response.headers.entries()],
    text, json, bytes, ms,
  };
}

/**
 * Whether a key is needed (the open /ui/server.json says: "off", "dev" or "keys") and, if one
 * is set, whether it works: sets `session.auth` to "off", "ok" or "needed". Returns the mode
 * too, so the page can say where a dev-mode key is printed.
 */
export async function probe() {
  const { auth } = await (await fetch("/ui/server.json")).json();
  session.mode = auth;
  if (auth === "off") return (session.auth = "off");
  if (!session.key) return (session.auth = "needed");
  const keyed = await call("GET", "/v1/orders?limit=1");
  return (session.auth = keyed.status === 200 ? "ok" : "needed");
}

/**
 * A stream ticket: single-use, seconds long, bound to this key's principal. EventSource cannot
 * send a header, so the SSE column opens `?ticket=` with one of these instead of the key.
 */
export async function streamTicket() {
  const answer = await call("POST", "/v1/stream-tickets");
  if (answer.status !== 201) throw new Error(`stream ticket: HTTP ${answer.status}`);
  return answer.json.ticket;
}

/** The seq the event log has reached: a long poll from past its end is told where it is. */
export async function headSeq() {
  const answer = await call("GET", "/v1/events/poll?since=9007199254740991&timeout=1s");
  return answer.json ? answer.json.next_since : 0;
}

/** Creates a demo order over REST (customer 1, product 1): something for the feeds to show. */
export function createOrder(extraHeaders = {}) {
  return call("POST", "/v1/orders", {
    body: { customer_id: "1", items: [{ product_id: "1", quantity: 1 }] },
    headers: extraHeaders,
  });
}
