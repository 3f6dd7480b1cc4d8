// Patterns, shown: each demo is a few real requests and what their answers say.

import { call, createOrder } from "./api.js";

const header = (answer, name) => (answer.headers.find(([k]) => k === name) || [])[1];

function lines(root, items) {
  root.replaceChildren(...items.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

/** Idempotency: the same create twice with one key is one order; the second is a replay. */
export async function idempotency(root) {
  const key = `workshop-${crypto.randomUUID()}`;
  const first = await createOrder({ "Idempotency-Key": key });
  const second = await createOrder({ "Idempotency-Key": key });
  const same = first.json?.id !== undefined && first.json.id === second.json?.id;
  root.dataset.orders = same ? "1" : "2";
  lines(root.querySelector("ol"), [
    `Idempotency-Key: ${key}`,
    `1st POST /v1/orders → ${first.status}, order ${first.json?.id}, Idempotent-Replayed: ${header(first, "idempotent-replayed") ?? "(absent)"}`,
    `2nd POST /v1/orders → ${second.status}, order ${second.json?.id}, Idempotent-Replayed: ${header(second, "idempotent-replayed") ?? "(absent)"}`,
    same ? "One order: the retry was answered from the record of the first." : "Two orders: the key did not hold!",
  ]);
}

/** Conditional requests: ETag, then 304 with If-None-Match, then 412 on a stale If-Match. */
export async function conditional(root) {
  const read = await call("GET", "/v1/orders/1");
  const etag = header(read, "etag");
  const again = await call("GET", "/v1/orders/1", { headers: { "If-None-Match": etag } });
  const stale = await call("DELETE", "/v1/orders/1", { headers: { "If-Match": '"stale-version"' } });
  root.dataset.statuses = `${read.status},${again.status},${stale.status}`;
  lines(root.querySelector("ol"), [
    `GET /v1/orders/1 → ${read.status}, ETag: ${etag}, ${read.bytes.length} B`,
    `GET with If-None-Match: ${etag} → ${again.status} (${again.bytes.length} B: nothing to send again)`,
    `DELETE with If-Match: "stale-version" → ${stale.status} ${stale.json?.type ?? ""}: nothing deleted`,
  ]);
}

/**
 * A burst past the caller's quota: reads how many requests are left (the RateLimit header),
 * then sends waves of 50 at once until one is refused. The browser sends at most six at a
 * time over HTTP/1.1, and the bucket refills meanwhile, so it takes more than the quota left.
 * Bounded: at most 2000 requests.
 */
export async function rateLimit(root) {
  const probe = await call("GET", "/v1/orders?limit=1");
  const policy = header(probe, "ratelimit-policy");
  const remaining = Number((header(probe, "ratelimit") || "").match(/r=(\d+)/)?.[1] ?? NaN);
  if (!policy || Number.isNaN(remaining)) {
    root.dataset.limited = "off";
    lines(root.querySelector("ol"), ["Rate limiting is off on this server: no RateLimit headers, no 429."]);
    return;
  }
  const answers = [];
  while (answers.length < 2000 && !answers.some((a) => a.status === 429)) {
    answers.push(...await Promise.all(Array.from({ length: 50 }, () => call("GET", "/v1/orders?limit=1"))));
  }
  const count = answers.length;
  const refused = answers.filter((a) => a.status === 429);
  const first = refused[0];
  root.dataset.limited = refused.length ? "429" : "none";
  lines(root.querySelector("ol"), [
    `RateLimit-Policy: ${policy}; ${remaining} requests left before the burst`,
    `sent ${count} at once: ${answers.length - refused.length} answered, ${refused.length} refused with 429`,
    first ? `a 429: Retry-After: ${header(first, "retry-after")}, RateLimit: ${header(first, "ratelimit")}, ${first.json?.type}` : "no 429 (the bucket refilled in time)",
  ]);
}

/**
 * Offset vs cursor pagination while a writer inserts: read page 1 (newest first), let a writer
 * create two orders, then read page 2 both ways. The offset counts rows from the new top, so
 * its page 2 repeats rows page 1 already showed; the cursor names the last row seen, so its
 * page 2 carries on right after it.
 */
export async function pagination(root) {
  const ids = (answer) => (answer.json?.data ?? []).map((o) => o.id);
  const first = await call("GET", "/v1/orders?sort=-id&limit=5");
  const seen = ids(first);
  await createOrder();
  await createOrder();
  const byOffset = ids(await call("GET", "/v1/orders?sort=-id&limit=5&offset=5"));
  const byCursor = ids(await call("GET", `/v1/orders?sort=-id&limit=5&cursor=${encodeURIComponent(first.json.next_cursor)}`));
  const repeated = byOffset.filter((id) => seen.includes(id));
  const cursorRepeated = byCursor.filter((id) => seen.includes(id));
  root.dataset.repeated = `${repeated.length},${cursorRepeated.length}`;
  lines(root.querySelector("ol"), [
    `page 1 (sort=-id, limit=5): ${seen.join(", ")}`,
    "a writer creates two orders",
    `page 2 by offset=5: ${byOffset.join(", ")}: ${repeated.length ? `repeats ${repeated.join(", ")}` : "no repeats"}`,
    `page 2 by cursor: ${byCursor.join(", ")}: ${cursorRepeated.length ? `repeats ${cursorRepeated.join(", ")}` : "carries on after the last row seen"}`,
  ]);
}

/** The demo source's published secret (`webhooks.inbound.sources` in the default config). */
const DEMO_SECRET = "whsec_cG9seXBvcnQtZGVtby1pbmJvdW5kLXNlY3JldA==";
let endpoint = null;

/**
 * Webhooks, both ends: an endpoint at polyport's own receiver, an order, and the delivery log.
 * With "make the receiver fail" a chaos rule answers the receiver's URL with 503 (admins), so
 * the log shows a failed attempt and when the next one is due: retries with backoff, and
 * auto-disable once they run out.
 */
export async function webhooks(root) {
  const fail = root.querySelector("input[type=checkbox]").checked;
  if (!endpoint) {
    const made = await call("POST", "/v1/webhook-endpoints", {
      body: { url: `${location.origin}/v1/webhooks/inbound/demo`, event_types: ["order.created"],
        description: "workshop page", secret: DEMO_SECRET },
    });
    if (made.status !== 201) {
      lines(root.querySelector("ol"), [`registering failed: HTTP ${made.status} ${made.json?.detail ?? ""}`]);
      return;
    }
    endpoint = made.json.id;
  }
  const receiver = "/v1/webhooks/inbound/demo";
  if (fail) {
    await call("PUT", "/v1/chaos", { body: { rules: [{ path_prefix: receiver, error: "unavailable" }] } });
  }
  const order = (await createOrder()).json.id;
  // The delivery runs in the background: look at the log until it has this order's attempt.
  let delivery;
  for (let i = 0; i < 40 && !delivery; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const log = await call("GET", `/v1/webhook-endpoints/${endpoint}/deliveries`);
    delivery = (log.json?.data ?? []).find((d) => d.body?.data?.order_id === order && d.attempts.length);
  }
  if (fail) await call("DELETE", "/v1/chaos");
  const attempt = delivery?.attempts[0];
  root.dataset.attempt = attempt ? String(attempt.status ?? attempt.error) : "none";
  lines(root.querySelector("ol"), [
    `endpoint ${endpoint} → ${location.origin}${receiver} (Standard Webhooks signature, demo secret)`,
    `order ${order} created; delivery ${delivery?.id ?? "(none yet)"}: ${delivery?.state ?? ""}`,
    attempt ? `attempt at ${attempt.at}: ${attempt.status ?? attempt.error}, ${Math.round(attempt.latency_ms ?? 0)} ms` : "no attempt seen yet",
    delivery?.next_attempt_at ? `next attempt at ${delivery.next_attempt_at} (backoff; the endpoint is disabled when retries run out)` : "no retry due",
  ]);
}
