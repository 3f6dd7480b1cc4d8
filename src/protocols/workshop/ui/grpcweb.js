// gRPC-Web from a browser by hand: the protobuf wire format and gRPC-Web's framing, small
// enough to read in one sitting. A real client would generate this from the .proto files
// (protobuf-es, grpc-web's protoc plugin); here the few messages the page uses are described
// by tables that follow proto/polyport/orders/v1/orders.proto field by field.
//
// Framing (gRPC-Web, like gRPC over HTTP/2): each message is 1 flag byte (0 data, 0x80
// trailers), a 4-byte big-endian length, then the bytes. The trailers frame holds
// "grpc-status: 0\r\ngrpc-message: ...\r\n". A call refused before it ran (bad credentials,
// rate limit) is "trailers-only": grpc-status arrives in the HTTP headers and the body is empty.

// ---- message tables: field number -> [name, type, message table, repeated] ----
const Timestamp = { 1: ["seconds", "int64"], 2: ["nanos", "int32"] };
const Item = { 1: ["id", "string"], 2: ["product_id", "string"], 3: ["quantity", "uint32"],
  4: ["unit_price_cents", "int64"] };
const Cancellation = { 1: ["reason", "string"], 2: ["cancelled_at", "message", Timestamp] };
export const Order = { 1: ["id", "string"], 2: ["customer_id", "string"], 3: ["status", "string"],
  4: ["items", "message", Item, true], 5: ["total_cents", "int64"], 6: ["currency", "string"],
  7: ["created_at", "message", Timestamp], 8: ["updated_at", "message", Timestamp],
  9: ["version", "uint64"], 10: ["cancellation", "message", Cancellation] };
const OrderEvent = { 1: ["seq", "uint64"], 2: ["type", "string"], 3: ["order_id", "string"],
  4: ["occurred_at", "message", Timestamp], 5: ["order", "message", Order],
  6: ["from_status", "string"], 7: ["item_id", "string"] };
const EventsMissed = { 1: ["requested_after", "uint64"], 2: ["resumed_after", "uint64"] };
export const WatchOrdersResponse = { 1: ["event", "message", OrderEvent],
  2: ["missed", "message", EventsMissed] };
export const WatchOrdersRequest = { 1: ["after_seq", "uint64"], 2: ["types", "string", null, true],
  3: ["order_id", "string"], 4: ["customer_id", "string"] };
export const GetOrderRequest = { 1: ["id", "string"] };
const NewItem = { 1: ["product_id", "string"], 2: ["quantity", "int64"] };
export const CreateOrderRequest = { 1: ["customer_id", "string"], 2: ["items", "message", NewItem, true] };
export const CancelOrderRequest = { 1: ["id", "string"], 2: ["reason", "string"],
  3: ["expected_version", "uint64"] };
export const ListOrdersRequest = { 1: ["status", "string"], 2: ["customer_id", "string"],
  3: ["sort", "string"], 4: ["limit", "uint32"] };

// ---- the wire format ----
const VARINT = 0, LEN = 2;

function varint(out, value) {
  let v = BigInt.asUintN(64, BigInt(value));
  while (v >= 0x80n) { out.push(Number(v & 0x7fn) | 0x80); v >>= 7n; }
  out.push(Number(v));
}

/** Encodes `value` (a plain object) by `table`. Proto3: defaults (0, "") are left out. */
export function encode(value, table) {
  const out = [];
  for (const [number, [name, type, inner, repeated]] of Object.entries(table)) {
    const present = value[name];
    if (present === undefined || present === null) continue;
    for (const one of repeated ? present : [present]) {
      if (type === "string") {
        if (one === "" && !repeated) continue;
        const bytes = new TextEncoder().encode(one);
        varint(out, (number << 3) | LEN); varint(out, bytes.length); out.push(...bytes);
      } else if (type === "message") {
        const bytes = encode(one, inner);
        varint(out, (number << 3) | LEN); varint(out, bytes.length); out.push(...bytes);
      } else {
        varint(out, (number << 3) | VARINT); varint(out, one);
      }
    }
  }
  return Uint8Array.from(out);
}

/** Decodes `bytes` by `table`; unknown fields are skipped, as protobuf says. */
export function decode(bytes, table) {
  const value = {};
  let at = 0;
  const readVarint = () => {
    let result = 0n, shift = 0n;
    for (;;) {
      const byte = bytes[at++];
      result |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return result;
      shift += 7n;
    }
  };
  while (at < bytes.length) {
    const key = Number(readVarint());
    const [number, wire] = [key >> 3, key & 7];
    const field = table[number];
    let raw;
    if (wire === VARINT) raw = readVarint();
    else if (wire === LEN) { const n = Number(readVarint()); raw = bytes.subarray(at, at + n); at += n; }
    else if (wire === 1) { at += 8; continue; }
    else if (wire === 5) { at += 4; continue; }
    else throw new Error(`unsupported wire type ${wire}`);
    if (!field) continue;
    const [name, type, inner, repeated] = field;
    let v;
    if (type === "string") v = new TextDecoder().decode(raw);
    else if (type === "message") v = decode(raw, inner);
    else if (type === "int64" || type === "int32") v = Number(BigInt.asIntN(64, raw));
    else v = Number(raw);
    if (repeated) (value[name] ??= []).push(v); else value[name] = v;
  }
  // Proto3 leaves out a scalar that has its default value: absent means 0, "" or [].
  for (const [name, type, , repeated] of Object.values(table)) {
    if (value[name] !== undefined || type === "message") continue;
    value[name] = repeated ? [] : type === "string" ? "" : 0;
  }
  return value;
}

/** A message framed for gRPC-Web. */
export function frame(message) {
  const out = new Uint8Array(5 + message.length);
  new DataView(out.buffer).setUint32(1, message.length);
  out.set(message, 5);
  return out;
}

/** Bytes as hex, sixteen to a line, for the playground's "as bytes" view. */
export function hex(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    lines.push([...bytes.subarray(i, i + 16)].map((b) => b.toString(16).padStart(2, "0")).join(" "));
  }
  return lines.join("\n");
}

function parseTrailers(text) {
  const trailers = {};
  for (const line of text.split("\r\n")) {
    const at = line.indexOf(":");
    if (at > 0) trailers[line.slice(0, at).trim().toLowerCase()] = line.slice(at + 1).trim();
  }
  return trailers;
}

/**
 * Calls `method` (e.g. "GetOrder") with `request` encoded by `requestTable`, and hands each
 * response message, decoded by `responseTable`, to `onMessage` as it arrives (a server stream
 * delivers many). Resolves with the status, the trailers and what went over the wire.
 */
export async function call(method, requestTable, request, responseTable, {
  headers = {}, onMessage = () => {}, signal,
} = {}) {
  const body = frame(encode(request, requestTable));
  const sent = { "Content-Type": "application/grpc-web+proto", "X-Grpc-Web": "1", ...headers };
  const path = `/polyport.orders.v1.Orders/${method}`;
  const started = performance.now();
  const response = await fetch(path, { method: "POST", headers: sent, body, signal });
  const received = [];
  const messages = [];
  let trailers = {};
  let pending = new Uint8Array(0);
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    received.push(value);
    const joined = new Uint8Array(pending.length + value.length);
    joined.set(pending); joined.set(value, pending.length);
    pending = joined;
    while (pending.length >= 5) {
      const length = new DataView(pending.buffer, pending.byteOffset).getUint32(1);
      if (pending.length < 5 + length) break;
      const flag = pending[0];
      const payload = pending.slice(5, 5 + length);
      pending = pending.slice(5 + length);
      if (flag & 0x80) trailers = parseTrailers(new TextDecoder().decode(payload));
      else {
        const message = decode(payload, responseTable);
        messages.push({ bytes: payload, message });
        onMessage(message, payload);
      }
    }
  }
  // Trailers-only (a refusal before the call ran): the status is in the HTTP headers.
  const fromHeaders = Object.fromEntries(response.headers.entries());
  if (trailers["grpc-status"] === undefined && fromHeaders["grpc-status"] !== undefined) {
    trailers = { "grpc-status": fromHeaders["grpc-status"], "grpc-message": fromHeaders["grpc-message"] };
  }
  const bytesIn = received.reduce((n, chunk) => n + chunk.length, 0);
  return {
    request: { method: "POST", path, headers: sent, body, bytes: body.length, message: request },
    httpStatus: response.status,
    headers: [...response.headers.entries()],
    status: Number(trailers["grpc-status"] ?? 2),
    message: decodeURIComponent(trailers["grpc-message"] || ""),
    trailers, messages, bytesIn, ms: performance.now() - started,
  };
}

/** gRPC's status codes by number, for display. */
export const CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
  "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
  "UNAUTHENTICATED"];
