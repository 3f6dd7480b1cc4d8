// The workshop page's entry point: the connect panel, then each panel wired to its module.

import { session, probe, createOrder } from "./api.js";
import { startFeed } from "./feed.js";
import * as playground from "./playground.js";
import * as patterns from "./patterns.js";
import * as chaos from "./chaos.js";

const $ = (selector) => document.querySelector(selector);
let columns = [];

async function connect() {
  const state = await probe();
  const text = { off: "authentication is off: no key needed", ok: "connected",
    needed: session.key ? "that key was refused" : "enter a key to start" }[state];
  $("#auth-state").textContent = text;
  $("#auth-state").dataset.state = state;
  $("#dev-hint").hidden = !(state === "needed" && session.mode === "dev");
  document.body.dataset.auth = state;
  if (state === "needed") return;
  const chosen = [...document.querySelectorAll("#transports input:checked")].map((i) => i.value);
  columns = await startFeed($("#columns"), chosen, columns);
  document.body.dataset.feed = "started";
}

$("#connect").addEventListener("submit", (event) => {
  event.preventDefault();
  session.key = $("#key").value.trim();
  $("#key").value = "";
  connect();
});
$("#forget").addEventListener("click", () => { session.key = ""; connect(); });
$("#transports").addEventListener("change", () => connect());

$("#create-order").addEventListener("click", async () => {
  const made = await createOrder();
  $("#created").textContent = made.status === 201 ? `created order ${made.json.id}` : `HTTP ${made.status}: ${made.json?.detail}`;
  $("#created").dataset.order = made.json?.id ?? "";
});

for (const button of document.querySelectorAll("#operations button")) {
  button.addEventListener("click", () => playground.run($("#cards"), button.dataset.op));
}

for (const [id, run] of [["idempotency", patterns.idempotency], ["conditional", patterns.conditional],
  ["pagination", patterns.pagination], ["webhooks", patterns.webhooks], ["rate-limit", patterns.rateLimit]]) {
  const root = document.getElementById(id);
  root.querySelector("button").addEventListener("click", async () => {
    root.dataset.done = "false";
    await run(root);
    root.dataset.done = "true";
  });
}

chaos.setUp($("#chaos"));

// With auth off, or a key already in this tab, the feed starts as soon as the page opens.
connect();
