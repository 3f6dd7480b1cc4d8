// Chaos knobs (admins only): turn on a fault the room can watch the protocols meet, and off
// again. Each button replaces the server's rules with `PUT /v1/chaos`; the server logs every
// change. The same rules can be set from the configuration file or with curl.

import { call } from "./api.js";

/** The presets: what each button asks the server to do. */
const PRESETS = {
  error: () => [{ header: "x-chaos=on", error: document.querySelector("#chaos-error").value }],
  latency: () => [{ latency_ms: 800 }],
  drop: () => [{ protocols: ["sse", "grpc", "long_poll"], drop_after_ms: 5000 }],
  off: () => [],
};

function show(root, answer) {
  const out = root.querySelector("pre");
  if (answer.status === 200 || answer.status === 204) {
    const rules = answer.json?.rules ?? [];
    out.textContent = rules.length ? JSON.stringify(rules, null, 2) : "off: no faults injected";
    root.dataset.rules = String(rules.length);
  } else {
    out.textContent = `HTTP ${answer.status}: ${answer.json?.detail ?? ""}`;
    root.dataset.rules = "refused";
  }
}

/** Fills the error choices from the open error table, and wires the buttons. */
export async function setUp(root) {
  const table = await (await fetch("/problems", { headers: { Accept: "application/json" } })).json();
  const select = root.querySelector("#chaos-error");
  for (const row of table.data) {
    const option = document.createElement("option");
    option.value = row.type.replace("/problems/", "");
    option.textContent = option.value;
    if (option.value === "unavailable") option.selected = true;
    select.append(option);
  }
  for (const button of root.querySelectorAll("button[data-preset]")) {
    button.addEventListener("click", async () => {
      root.dataset.done = "false";
      const rules = PRESETS[button.dataset.preset]();
      const answer = rules.length
        ? await call("PUT", "/v1/chaos", { body: { rules } })
        : await call("DELETE", "/v1/chaos");
      show(root, answer);
      root.dataset.done = "true";
    });
  }
}
