// The live feed: the one event log followed over five transports at once, one column each.
//
// Every transport resumes the same way, "everything after seq N", in its own idiom:
//   SSE          ?last_event_id=N (EventSource sends Last-Event-ID itself only on its own
//                reconnects, which a single-use ticket cannot survive, so the page reconnects)
//   WebSocket    {"op":"subscribe", "after_seq": N}
//   long poll    ?since=N (every poll is a resume)
//   GraphQL      subscription orderEvents(afterSeq: N)
//   gRPC-Web     WatchOrders { after_seq: N }
// and every one says so explicitly when N is older than the log keeps: the gap notice.

import { session, streamTicket, authHeaders, headSeq } from "./api.js";
import * as grpc from "./grpcweb.js";

const EVENT_TYPES = ["order.created", "order.updated", "order.status_changed",
  "order.item_added", "order.cancelled", "order.deleted"];

/** One column: its list of events, its state line, and the drop / resume button. */
class Column {
  constructor(root, transport) {
    this.transport = transport;
    this.lastSeq = null;
    this.el = document.createElement("section");
    this.el.className = "column";
    this.el.dataset.transport = transport.id;
    this.el.innerHTML = `<h3>${transport.label}</h3>
      <p class="state" aria-live="polite">connecting…</p>
      <button class="drop" type="button">Drop the connection</button>
      <ol class="events"></ol>`;
    this.state = this.el.querySelector(".state");
    this.list = this.el.querySelector(".events");
    this.button = this.el.querySelector(".drop");
    this.button.addEventListener("click", () => this.toggle());
    root.append(this.el);
  }

  async start(after) {
    this.connected = true;
    this.lastSeq = after;
    this.button.textContent = "Drop the connection";
    this.setState(`connecting, after seq ${after}`);
    try {
      await this.transport.open(after, this);
    } catch (error) {
      if (this.connected) this.setState(`error: ${error.message}`, "error");
    }
  }

  toggle() {
    if (this.connected) {
      this.connected = false;
      this.transport.close();
      this.setState(`dropped after seq ${this.lastSeq ?? "–"}; events keep coming without us`, "dropped");
      this.button.textContent = `Resume after seq ${this.lastSeq ?? "–"}`;
    } else {
      this.notice(`reconnected: asking for everything after seq ${this.lastSeq}`);
      this.start(this.lastSeq);
    }
  }

  setState(text, kind = "") {
    this.state.textContent = text;
    this.state.dataset.kind = kind;
  }

  /** An event as it arrives: type, order id, seq, and how long after it happened. */
  event({ seq, type, orderId, occurredMs }) {
    const li = document.createElement("li");
    li.className = "event";
    li.dataset.seq = seq;
    li.dataset.order = orderId;
    const latency = Math.max(0, Math.round(Date.now() - occurredMs));
    li.innerHTML = `<span class="seq">#${seq}</span> <span class="type"></span>
      <span class="order">order ${orderId}</span> <span class="latency">${latency} ms</span>`;
    li.querySelector(".type").textContent = type;
    this.list.prepend(li);
    this.lastSeq = Math.max(this.lastSeq ?? 0, seq);
    while (this.list.children.length > 200) this.list.lastChild.remove();
  }

  /** The explicit gap notice: these seqs are lost to this client; re-read state. */
  gap(requestedAfter, resumedAfter) {
    const li = this.notice(`GAP: events ${requestedAfter + 1}–${resumedAfter} are no longer in the ` +
      `log; re-read current state, then carry on after seq ${resumedAfter}`);
    li.classList.add("gap");
    this.lastSeq = resumedAfter;
  }

  notice(text) {
    const li = document.createElement("li");
    li.className = "notice";
    li.textContent = text;
    this.list.prepend(li);
    return li;
  }
}

const isoMs = (text) => Date.parse(text);

/** Server-Sent Events with a single-use ticket (EventSource cannot send the key). */
const sse = {
  id: "sse", label: "SSE",
  async open(after, column) {
    let url = "/v1/events";
    const params = new URLSearchParams();
    if (session.auth !== "off") params.set("ticket", await streamTicket());
    params.set("last_event_id", after);
    if ([...params].length) url += `?${params}`;
    const source = (this.source = new EventSource(url));
    const onEvent = (message) => {
      const e = JSON.parse(message.data);
      column.event({ seq: e.seq, type: e.type, orderId: e.order_id, occurredMs: isoMs(e.occurred_at) });
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
    source.addEventListener("reset", (message) => {
      const r = JSON.parse(message.data);
      column.gap(r.requested_after, r.resumed_after);
    });
    source.onopen = () => column.setState("live (EventSource open)");
    source.onerror = () => {
      // The ticket was used up by the first connection: EventSource's own retry would be
      // refused. Close it and resume by hand with a fresh ticket.
      source.close();
      if (!column.connected) return;
      column.setState("stream ended; reconnecting with a new ticket");
      setTimeout(() => column.connected && this.open(column.lastSeq, column).catch(() => {}), 1000);
    };
  },
  close() { this.source?.close(); },
};

/** A WebSocket's close code and reason, unless the page closed it (a drop). */
function reportClose(ws, column) {
  ws.onclose = (close) => {
    if (column.connected) column.setState(`closed ${close.code} ${close.reason}`, "error");
  };
}

/** A drop, for the two WebSocket transports: a normal close, with a reason the server logs. */
function closeSocket() {
  this.ws?.close(1000, "dropped from the workshop page");
}

/** polyport's own WebSocket protocol: the key in the first message, then a subscription. */
const websocket = {
  id: "ws", label: "WebSocket",
  open(after, column) {
    const ws = (this.ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/v1/ws`));
    ws.onopen = () => {
      if (session.auth !== "off" && session.key) ws.send(JSON.stringify({ op: "auth", token: session.key }));
      const subscribe = { op: "subscribe", id: "feed", topic: "orders", after_seq: after };
      ws.send(JSON.stringify(subscribe));
    };
    ws.onmessage = (message) => {
      const m = JSON.parse(message.data);
      if (m.op === "event") {
        column.event({ seq: m.seq, type: m.type, orderId: m.order_id, occurredMs: isoMs(m.occurred_at) });
      } else if (m.op === "reset") column.gap(m.requested_after, m.resumed_after);
      else if (m.op === "result" && m.subscribed) column.setState(`live (subscribed at seq ${m.subscribed.last_seq})`);
      else if (m.op === "error") column.setState(`error: ${m.detail}`, "error");
    };
    reportClose(ws, column);
  },
  close: closeSocket,
};

/** Long polling: each answer says where to poll from next, so a poll is always a resume. */
const longPoll = {
  id: "poll", label: "Long poll",
  async open(after, column) {
    const abort = (this.abort = new AbortController());
    let since = after;
    column.setState(`polling after seq ${since}`);
    while (!abort.signal.aborted) {
      let answer;
      try {
        const response = await fetch(`/v1/events/poll?since=${since}&timeout=20s`, {
          headers: authHeaders(), signal: abort.signal,
        });
        answer = await response.json();
        if (!response.ok) throw new Error(answer.detail || `HTTP ${response.status}`);
      } catch (error) {
        if (abort.signal.aborted) return;
        column.setState(`poll failed (${error.message}); retrying`, "error");
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      if (answer.reset) column.gap(answer.reset.requested_after, answer.reset.resumed_after);
      for (const e of answer.events) {
        column.event({ seq: e.seq, type: e.type, orderId: e.order_id, occurredMs: isoMs(e.occurred_at) });
      }
      since = answer.next_since;
      column.setState(`polling after seq ${since}`);
    }
  },
  close() { this.abort?.abort(); },
};

/** A GraphQL subscription over graphql-transport-ws: the key in connection_init. */
const graphql = {
  id: "graphql", label: "GraphQL subscription",
  open(after, column) {
    const ws = (this.ws = new WebSocket(`${location.origin.replace(/^http/, "ws")}/graphql/ws`,
      "graphql-transport-ws"));
    ws.onopen = () => {
      const payload = session.key && session.auth !== "off" ? { authorization: `Bearer ${session.key}` } : {};
      ws.send(JSON.stringify({ type: "connection_init", payload }));
    };
    ws.onmessage = (message) => {
      const m = JSON.parse(message.data);
      if (m.type === "connection_ack") {
        ws.send(JSON.stringify({
          id: "feed", type: "subscribe",
          payload: {
            query: `subscription Feed($after: Int) { orderEvents(afterSeq: $after) {
              __typename
              ... on OrderEvent { seq type orderId occurredAt }
              ... on EventsMissed { requestedAfter resumedAfter } } }`,
            variables: { after },
          },
        }));
        column.setState("live (subscribed)");
      } else if (m.type === "next") {
        const item = m.payload.data?.orderEvents;
        if (!item) column.setState(`error: ${m.payload.errors?.[0]?.message}`, "error");
        else if (item.__typename === "EventsMissed") column.gap(item.requestedAfter, item.resumedAfter);
        else column.event({ seq: item.seq, type: item.type, orderId: item.orderId, occurredMs: isoMs(item.occurredAt) });
      } else if (m.type === "error") column.setState(`error: ${m.payload?.[0]?.message}`, "error");
      else if (m.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
    };
    reportClose(ws, column);
  },
  close: closeSocket,
};

/** gRPC-Web: WatchOrders, a server stream read frame by frame from fetch's body. */
const grpcWeb = {
  id: "grpc", label: "gRPC-Web stream",
  async open(after, column) {
    const abort = (this.abort = new AbortController());
    const request = { after_seq: after };
    column.setState("live (WatchOrders open)");
    const result = await grpc.call("WatchOrders", grpc.WatchOrdersRequest, request,
      grpc.WatchOrdersResponse, {
        headers: authHeaders(), signal: abort.signal,
        onMessage: ({ event, missed }) => {
          if (missed) column.gap(missed.requested_after, missed.resumed_after);
          if (event) {
            const at = event.occurred_at || {};
            column.event({ seq: event.seq, type: event.type, orderId: event.order_id,
              occurredMs: (at.seconds || 0) * 1000 + (at.nanos || 0) / 1e6 });
          }
        },
      }).catch((error) => {
      if (!abort.signal.aborted) throw error;
    });
    if (result && column.connected) {
      column.setState(`ended: ${grpc.CODES[result.status]} ${result.message}`, result.status ? "error" : "");
    }
  },
  close() { this.abort?.abort(); },
};

export const TRANSPORTS = [sse, websocket, longPoll, graphql, grpcWeb];

/**
 * Builds the feed panel's columns for the transports ticked, and starts them all after the
 * same seq (where the log is now), so every column shows the same events whichever connects
 * first.
 */
export async function startFeed(root, chosen, previous = []) {
  for (const column of previous) if (column.connected) column.toggle();
  root.replaceChildren();
  const head = await headSeq();
  const columns = [];
  for (const transport of TRANSPORTS.filter((t) => chosen.includes(t.id))) {
    // Each column gets its own transport object (its own socket or request).
    const column = new Column(root, Object.create(transport));
    columns.push(column);
    column.start(head);
  }
  return columns;
}
