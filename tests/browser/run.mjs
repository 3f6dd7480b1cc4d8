// The browser half of tests/browser.rs: drives Debian's Chromium (through playwright-core,
// never a browser of Playwright's own) against the polyport server that the Rust test started,
// and fails (exit 1, with the reason) when the page does not do what it says.
//
//   node tests/browser/run.mjs SCENARIO BASE_URL [KEY]
//
// Every scenario also checks the whole visit: no console error, no uncaught exception, and no
// request to anywhere but the server (any other is aborted and reported). Waits are bounded
// (Playwright's timeouts) so a broken page fails instead of hanging; nothing asserts a time.
// With SCREENSHOTS=dir, each scenario leaves a PNG of its panel there.

import { chromium } from "playwright-core";
import { join } from "node:path";

const [scenario, base, key = ""] = process.argv.slice(2);
const executablePath = process.env.POLYPORT_CHROMIUM || "/usr/bin/chromium";
const shots = process.env.SCREENSHOTS;
const TRANSPORTS = ["sse", "ws", "poll", "graphql", "grpc"];

/** The API, from node: what a second client (a curl in the room) does meanwhile. */
async function api(method, path, body, headers = {}) {
  const response = await fetch(base + path, {
    method,
    headers: { ...(key ? { Authorization: `Bearer ${key}` } : {}), ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, json: text ? JSON.parse(text) : null, headers: response.headers };
}
const createOrder = () => api("POST", "/v1/orders", { customer_id: "1", items: [{ product_id: "1", quantity: 1 }] });
const headSeq = async () => (await api("GET", "/v1/events/poll?since=9007199254740991&timeout=1s")).json.next_since;

/**
 * Refusals a scenario provokes on purpose (the failing request, a stale If-Match, a burst past
 * the rate limit): Chromium logs every 4xx a page receives as a console error, and these are
 * the only ones allowed, each by status and path.
 */
const provoked = [];
const provoke = (status, path) => provoked.push({ status, path });

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Opens the workshop page, signs in with the key, and waits until every column is live. */
async function openFeed(page) {
  await page.goto(base + "/");
  if (key) {
    await page.fill("#key", key);
    await page.click("#connect button[type=submit]");
  }
  await page.waitForSelector("body[data-feed=started]");
  for (const t of TRANSPORTS) {
    // "live" or "polling": connected and following.
    await page.waitForFunction((t) => {
      const s = document.querySelector(`.column[data-transport=${t}] .state`);
      return s && /^(live|polling)/.test(s.textContent);
    }, t);
  }
}

async function seqsIn(page, transport) {
  return page.$$eval(`.column[data-transport=${transport}] .event`, (els) => els.map((e) => Number(e.dataset.seq)).reverse());
}

async function waitForOrderEverywhere(page, id, transports = TRANSPORTS) {
  for (const t of transports) {
    await page.waitForSelector(`.column[data-transport=${t}] .event[data-order="${id}"]`);
  }
}

const scenarios = {
  /** The page loads, signs in, and every feed column connects. */
  async loads(page) {
    await openFeed(page);
    check(await page.$eval("#auth-state", (e) => e.dataset.state) === (key ? "ok" : "off"), "not connected");
    check(!(await page.evaluate(() => location.href)).includes(key) || !key, "the key is in the URL");
  },

  /** An order created on the page appears in every feed column with the same seq. */
  async feed(page) {
    await openFeed(page);
    await page.click("#create-order");
    await page.waitForSelector("#created[data-order]:not([data-order=''])");
    const id = await page.$eval("#created", (e) => e.dataset.order);
    const second = (await createOrder()).json.id; // and one made by another client
    await waitForOrderEverywhere(page, id);
    await waitForOrderEverywhere(page, second);
    const seqs = await Promise.all(TRANSPORTS.map((t) => seqsIn(page, t)));
    for (const [i, s] of seqs.entries()) {
      check(JSON.stringify(s) === JSON.stringify(seqs[0]), `${TRANSPORTS[i]} saw seqs ${s}, SSE saw ${seqs[0]}`);
    }
    if (shots) await page.locator("#feed").screenshot({ path: join(shots, "workshop-feed.png") });
  },

  /** Every column, dropped while orders are made, resumes with all of them and no gap. */
  async resume(page) {
    await openFeed(page);
    const before = (await createOrder()).json.id;
    await waitForOrderEverywhere(page, before);
    for (const t of TRANSPORTS) await page.click(`.column[data-transport=${t}] .drop`);
    for (const t of TRANSPORTS) await page.waitForSelector(`.column[data-transport=${t}] .state[data-kind=dropped]`);
    const missed = [];
    for (let i = 0; i < 3; i++) missed.push((await createOrder()).json.id);
    for (const t of TRANSPORTS) await page.click(`.column[data-transport=${t}] .drop`);
    await Promise.all(missed.map((id) => waitForOrderEverywhere(page, id)));
    for (const t of TRANSPORTS) {
      const seqs = await seqsIn(page, t);
      for (let i = 1; i < seqs.length; i++) check(seqs[i] === seqs[i - 1] + 1, `${t}: seqs ${seqs} have a hole or a repeat`);
      check(!(await page.$(`.column[data-transport=${t}] .gap`)), `${t} shows a gap notice`);
    }
  },

  /** With a log that keeps 3 events, a column away for 6 shows the gap notice on resuming. */
  async gap(page) {
    await openFeed(page);
    for (const t of TRANSPORTS) await page.click(`.column[data-transport=${t}] .drop`);
    for (const t of TRANSPORTS) await page.waitForSelector(`.column[data-transport=${t}] .state[data-kind=dropped]`);
    for (let i = 0; i < 6; i++) await createOrder();
    const head = await headSeq();
    for (const t of TRANSPORTS) await page.click(`.column[data-transport=${t}] .drop`);
    for (const t of TRANSPORTS) {
      const notice = await page.waitForSelector(`.column[data-transport=${t}] .gap`);
      const text = await notice.textContent();
      check(text.includes(`after seq ${head - 3}`), `${t}: the gap notice says "${text}", expected to resume after ${head - 3}`);
    }
    if (shots) await page.locator("#feed").screenshot({ path: join(shots, "workshop-gap.png") });
  },

  /** The playground: each operation over three protocols, and one fault answered alike. */
  async playground(page) {
    await openFeed(page);
    provoke(404, "/v1/orders/999999");
    for (const op of ["get", "list", "create", "cancel", "fail"]) {
      await page.click(`#operations button[data-op=${op}]`);
      await page.waitForSelector(`#cards[data-operation=${op}][data-done=true]`);
      const outcomes = await page.$$eval("#cards .card", (cards) => cards.map((c) => [c.dataset.protocol, c.querySelector(".outcome").textContent, c.dataset.code]));
      const [rest, graphql, grpc] = outcomes;
      if (op === "fail") {
        check(rest[2] === "/problems/not-found", `REST: ${rest}`);
        check(graphql[2] === "NOT_FOUND", `GraphQL: ${graphql}`);
        check(grpc[2] === "NOT_FOUND", `gRPC: ${grpc}`);
      } else {
        check(/^HTTP 20[01]/.test(rest[1]), `${op} REST: ${rest}`);
        check(graphql[1] === "HTTP 200 ok", `${op} GraphQL: ${graphql}`);
        check(grpc[1].startsWith("OK"), `${op} gRPC: ${grpc}`);
      }
      if (op === "get") {
        const bytes = await page.$eval("[data-protocol=grpc] .response", (e) => e.textContent);
        check(bytes.includes('"id": "1"') && /as bytes:\n0a 01 31/.test(bytes), `gRPC response not shown decoded and as bytes: ${bytes.slice(0, 200)}`);
      }
      if (op === "create") {
        const ids = await page.$$eval("#cards .response", (els) => els.map((e) => (e.textContent.match(/"id": "(\d+)"/) || [])[1]));
        check(ids[0] && ids.every((id) => id === ids[0]), `one key over three protocols made orders ${ids}`);
      }
    }
    await page.click("#operations button[data-op=fail]");
    await page.waitForSelector("#cards[data-operation=fail][data-done=true]");
    if (shots) await page.locator("#playground").screenshot({ path: join(shots, "workshop-playground.png") });
  },

  /** The idempotency demo creates exactly one order, as the event log tells. */
  async idempotency(page) {
    await openFeed(page);
    const head = await headSeq();
    await page.click("#idempotency button");
    await page.waitForSelector("#idempotency[data-done=true]");
    check(await page.$eval("#idempotency", (e) => e.dataset.orders) === "1", "the page saw two orders");
    const log = (await api("GET", `/v1/events/poll?since=${head}&timeout=1s`)).json.events;
    const created = log.filter((e) => e.type === "order.created");
    check(created.length === 1, `the log has ${created.length} order.created events since the demo`);
    provoke(412, "/v1/orders/1");
    await page.click("#conditional button");
    await page.waitForSelector("#conditional[data-done=true]");
    const statuses = await page.$eval("#conditional", (e) => e.dataset.statuses);
    check(statuses === "200,304,412", `conditional requests answered ${statuses}`);
    // Offset paging repeats the two rows the writer pushed down; cursor paging repeats none.
    await page.click("#pagination button");
    await page.waitForSelector("#pagination[data-done=true]");
    const repeated = await page.$eval("#pagination", (e) => e.dataset.repeated);
    check(repeated === "2,0", `offset and cursor page 2 repeated ${repeated} rows of page 1`);
    // Webhooks: delivered to polyport's own receiver (202), then, with the receiver made to
    // fail, a 503 attempt and a retry due.
    await page.click("#webhooks button");
    await page.waitForSelector("#webhooks[data-done=true]");
    check(await page.$eval("#webhooks", (e) => e.dataset.attempt) === "202", "the delivery was not accepted");
    await page.check("#webhooks input[type=checkbox]");
    await page.click("#webhooks button");
    await page.waitForSelector("#webhooks[data-done=true]");
    check(await page.$eval("#webhooks", (e) => e.dataset.attempt) === "503", "the failing receiver's attempt is not in the log");
    check((await page.textContent("#webhooks ol")).includes("next attempt at"), "no retry is due after a failed attempt");
    if (shots) await page.locator("#patterns").screenshot({ path: join(shots, "workshop-patterns.png") });
  },

  /** The rate-limit demo gets a 429. */
  async ratelimit(page) {
    await openFeed(page);
    provoke(429, "/v1/orders?limit=1");
    await page.click("#rate-limit button");
    await page.waitForSelector("#rate-limit[data-done=true]");
    const limited = await page.$eval("#rate-limit", (e) => e.dataset.limited);
    const text = await page.$eval("#rate-limit ol", (e) => e.textContent);
    check(limited === "429", `no 429: ${text}`);
  },

  /** A chaos knob set on the page: its injected error on all three protocols, then off. */
  async chaos(page) {
    const row = (await api("GET", "/problems", undefined, { Accept: "application/json" })).json.data
      .find((r) => r.type === "/problems/unavailable");
    provoke(row.status, "/v1/orders/1");
    provoke(row.status, "/graphql");
    await openFeed(page);
    await page.selectOption("#chaos-error", "unavailable");
    await page.click("#chaos button[data-preset=error]");
    await page.waitForSelector("#chaos[data-done=true]");
    check(await page.$eval("#chaos", (e) => e.dataset.rules) === "1", "the rule was not set");
    await page.check("#chaos-header");
    await page.click("#operations button[data-op=get]");
    await page.waitForSelector("#cards[data-operation=get][data-done=true]");
    const codes = await page.$$eval("#cards .card", (cards) => cards.map((c) => c.dataset.code));
    check(JSON.stringify(codes) === JSON.stringify([row.type, row.graphql_code, row.grpc_code]),
      `injected error shown as ${codes}, the table says ${[row.type, row.graphql_code, row.grpc_code]}`);
    if (shots) await page.locator("#playground").screenshot({ path: join(shots, "workshop-chaos.png") });
    await page.click("#chaos button[data-preset=off]");
    await page.waitForSelector("#chaos[data-rules='0']");
    await page.click("#operations button[data-op=list]");
    await page.waitForSelector("#cards[data-operation=list][data-done=true]");
    await page.click("#operations button[data-op=get]");
    await page.waitForSelector("#cards[data-operation=get][data-done=true]");
    const after = await page.$$eval("#cards .card .outcome", (els) => els.map((e) => e.textContent));
    check(/^HTTP 200/.test(after[0]) && after[2].startsWith("OK"), `chaos off, yet: ${after}`);
  },

  /** GraphiQL from the binary, with the key: a query runs, and a subscription sees a new order. */
  async graphiql(page) {
    await page.goto(base + "/graphql");
    if (key) {
      await page.fill("#key", key);
      await page.click("#connect button[type=submit]");
    }
    await page.waitForSelector(".graphiql-container");
    await page.click(".graphiql-execute-button");
    await page.waitForFunction(() => document.querySelector(".result-window")?.textContent.includes("edges"));
    // A subscription over /graphql/ws, authenticated by connection_init.
    await page.evaluate(() => {
      const editor = document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror;
      // Named: GraphiQL's fetcher sends only a named subscription over the WebSocket.
      editor.setValue("subscription Watch { orderEvents { ... on OrderEvent { seq type orderId } } }");
    });
    // GraphiQL parses the editor's text a moment (a 100 ms debounce) after it changes, and
    // until then would run the old document: wait until it has seen the subscription.
    await page.waitForFunction(() => document.querySelector(".graphiql-query-editor .CodeMirror")
      .CodeMirror.documentAST?.definitions?.[0]?.operation === "subscription");
    await page.click(".graphiql-execute-button");
    await page.waitForFunction(() => document.querySelector(".graphiql-execute-button")?.getAttribute("aria-label")?.includes("Stop"));
    check(!(await page.textContent(".result-window")).includes("not supported on this transport"),
      "GraphiQL sent the subscription over HTTP, not the WebSocket");
    const id = (await createOrder()).json.id;
    await page.waitForFunction((id) => document.querySelector(".result-window")?.textContent.includes(`"orderId": "${id}"`), id);
    if (shots) await page.screenshot({ path: join(shots, "graphiql.png") });
  },
};

const run = scenarios[scenario];
if (!run) {
  console.error(`unknown scenario ${scenario}; known: ${Object.keys(scenarios).join(", ")}`);
  process.exit(2);
}
const browser = await chromium.launch({
  executablePath,
  headless: true,
  // What works on these machines: no sandbox (root), no GPU, and nothing of Chromium's own
  // phoning home (the network is closed; those connections would only fail). Playwright gives
  // every launch a fresh, empty profile of its own.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const problems = [];
let failed = false;
try {
  const context = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const origin = new URL(base).origin;
  const wsOrigin = origin.replace(/^http/, "ws");
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith("data:")) return route.continue();
    problems.push(`a request left the server: ${url}`);
    return route.abort();
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    const status = Number((m.text().match(/status of (\d+)/) || [])[1]);
    const url = m.location().url || "";
    if (provoked.some((p) => p.status === status && url === origin + p.path)) return;
    problems.push(`console error: ${m.text()} (${url})`);
  });
  page.on("pageerror", (e) => problems.push(`uncaught: ${e.message}`));
  page.on("websocket", (ws) => { if (!ws.url().startsWith(wsOrigin)) problems.push(`a WebSocket left the server: ${ws.url()}`); });
  try {
    await run(page);
  } catch (error) {
    if (shots) await page.screenshot({ path: join(shots, `failed-${scenario}.png`) });
    throw error;
  }
  check(problems.length === 0, problems.join("\n"));
  console.log(`ok: ${scenario}`);
} catch (error) {
  failed = true;
  console.error(`FAILED: ${scenario}: ${error.message}`);
  if (problems.length) console.error(problems.join("\n"));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
