// The playground: one operation sent over REST, GraphQL and gRPC-Web side by side, with what
// each sent and got back, its status or code, bytes each way and latency. A fault gets the
// same problem type, gRPC code and GraphQL code on all three: the server's one error table.
//
// What is shown is what the page sent and what fetch hands back: the browser adds headers of
// its own (User-Agent, Accept-Encoding, Origin...) and may read the body compressed, so the
// byte counts are of the bodies, not of the whole exchange.

import { call, authHeaders, createOrder } from "./api.js";
import * as grpc from "./grpcweb.js";

const ORDER_FIELDS = "id customerId status totalCents currency version items { productId quantity unitPriceCents }";

const gql = (query, variables, headers = {}) =>
  call("POST", "/graphql", { body: { query, variables }, headers });

const grpcCall = (method, requestTable, request, responseTable, headers = {}) =>
  grpc.call(method, requestTable, request, responseTable, { headers: authHeaders(headers) });

/** A fresh order to cancel, made over REST (not timed: it is set-up, not the demo). */
async function freshOrderId() {
  const made = await createOrder();
  return made.json.id;
}

/**
 * The operations, each as the three requests that do it. `h` is the extra headers of this run
 * (`X-Chaos: on` when that box is ticked, for a chaos rule to match).
 */
export const OPERATIONS = {
  get: {
    rest: ({ h }) => call("GET", "/v1/orders/1", { headers: h }),
    graphql: ({ h }) => gql(`query { order(id: "1") { ${ORDER_FIELDS} } }`, undefined, h),
    grpc: ({ h }) => grpcCall("GetOrder", grpc.GetOrderRequest, { id: "1" }, grpc.Order, h),
  },
  list: {
    rest: ({ h }) => call("GET", "/v1/orders?limit=3", { headers: h }),
    graphql: ({ h }) => gql(`query { orders(first: 3) { edges { node { id status totalCents } } pageInfo { endCursor hasNextPage } } }`, undefined, h),
    grpc: ({ h }) => grpcCall("ListOrders", grpc.ListOrdersRequest, { limit: 3 }, grpc.Order, h),
  },
  create: {
    // One key for all three: the second and third are replays of the first, over other protocols.
    shared: () => ({ key: `workshop-${crypto.randomUUID()}` }),
    rest: ({ key, h }) => createOrder({ ...h, "Idempotency-Key": key }),
    graphql: ({ key, h }) => gql(`mutation { createOrder(input: { customerId: "1", items: [{ productId: "1", quantity: 1 }] }) { order { ${ORDER_FIELDS} } } }`,
      undefined, { ...h, "Idempotency-Key": key }),
    grpc: ({ key, h }) => grpcCall("CreateOrder", grpc.CreateOrderRequest,
      { customer_id: "1", items: [{ product_id: "1", quantity: 1 }] }, grpc.Order, { ...h, "Idempotency-Key": key }),
  },
  cancel: {
    rest: async ({ h }) => call("POST", `/v1/orders/${await freshOrderId()}/cancellations`, { body: { reason: "workshop" }, headers: h }),
    graphql: async ({ h }) => gql(`mutation($id: ID!) { cancelOrder(input: { id: $id, reason: "workshop" }) { order { id status version } } }`,
      { id: await freshOrderId() }, h),
    grpc: async ({ h }) => grpcCall("CancelOrder", grpc.CancelOrderRequest,
      { id: await freshOrderId(), reason: "workshop" }, grpc.Order, h),
  },
  fail: {
    rest: ({ h }) => call("GET", "/v1/orders/999999", { headers: h }),
    graphql: ({ h }) => gql(`query { order(id: "999999") { id } }`, undefined, h),
    grpc: ({ h }) => grpcCall("GetOrder", grpc.GetOrderRequest, { id: "999999" }, grpc.Order, h),
  },
};

// The key is shown cut short: the playground is on a projector.
const shown = (name, value) => /^authorization$/i.test(name) ? `${value.slice(0, 14)}… (cut here)` : value;
const headerText = (pairs) => pairs.map(([k, v]) => `${k}: ${shown(k, v)}`).join("\n");
const pretty = (text) => { try { return JSON.stringify(JSON.parse(text), null, 2); } catch { return text; } };

/** What the card for one protocol shows: a uniform view of each protocol's answer. */
function view(protocol, answer) {
  if (protocol === "grpc") {
    const reqBytes = answer.request.body;
    const messages = answer.messages;
    return {
      outcome: `${grpc.CODES[answer.status]} (${answer.status})${answer.message ? `: ${answer.message}` : ""}`,
      code: grpc.CODES[answer.status],
      request: `${answer.request.method} ${answer.request.path}\n${headerText(Object.entries(answer.request.headers))}\n\n` +
        `decoded: ${JSON.stringify(answer.request.message)}\nbytes (5-byte frame header, then protobuf):\n${grpc.hex(reqBytes)}`,
      response: `HTTP ${answer.httpStatus}\n${headerText(answer.headers)}\n\n` +
        messages.map((m, i) => `message ${i + 1} decoded:\n${JSON.stringify(m.message, null, 2)}\nas bytes:\n${grpc.hex(m.bytes)}`).join("\n\n") +
        `\n\ntrailers: ${JSON.stringify(answer.trailers)}`,
      bytesOut: answer.request.bytes, bytesIn: answer.bytesIn, ms: answer.ms,
    };
  }
  const errors = answer.json?.errors;
  const outcome = protocol === "rest"
    ? `HTTP ${answer.status}${answer.json?.type ? ` ${answer.json.type}` : ""}`
    : `HTTP ${answer.status}${errors ? ` ${errors[0].extensions?.code}` : " ok"}`;
  return {
    outcome,
    code: protocol === "rest" ? answer.json?.type : errors?.[0]?.extensions?.code,
    request: `${answer.request.method} ${answer.request.path}\n${headerText(Object.entries(answer.request.headers))}` +
      (answer.request.body ? `\n\n${pretty(answer.request.body)}` : ""),
    response: `HTTP ${answer.status}\n${headerText(answer.headers)}\n\n${pretty(answer.text)}`,
    bytesOut: answer.request.bytes, bytesIn: answer.bytes.length, ms: answer.ms,
  };
}

/** Runs `name` over the three protocols, one after the other, and fills the three cards. */
export async function run(root, name) {
  const operation = OPERATIONS[name];
  const chaos = document.querySelector("#chaos-header")?.checked;
  const shared = { ...(operation.shared ? operation.shared() : {}), h: chaos ? { "X-Chaos": "on" } : {} };
  root.dataset.operation = name;
  root.dataset.done = "false";
  for (const protocol of ["rest", "graphql", "grpc"]) {
    const card = root.querySelector(`[data-protocol=${protocol}]`);
    card.querySelector(".outcome").textContent = "…";
    let shown;
    try {
      shown = view(protocol, await operation[protocol](shared));
    } catch (error) {
      shown = { outcome: `failed: ${error.message}`, request: "", response: "", bytesOut: 0, bytesIn: 0, ms: 0 };
    }
    card.querySelector(".outcome").textContent = shown.outcome;
    card.dataset.code = shown.code ?? "";
    card.querySelector(".numbers").textContent =
      `${shown.bytesOut} B out · ${shown.bytesIn} B in · ${shown.ms.toFixed(1)} ms`;
    card.querySelector(".request").textContent = shown.request;
    card.querySelector(".response").textContent = shown.response;
  }
  root.dataset.done = "true";
}
