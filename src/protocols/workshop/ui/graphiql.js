// GraphiQL, served from the binary (vendor/graphiql/, React 18 and GraphiQL 3's browser
// build), with the key from the connect bar: sent as `Authorization: Bearer` on every HTTP
// request and in `connection_init` for subscriptions over /graphql/ws. The key is the one the
// workshop page keeps in sessionStorage, so signing in on either page serves both.

import { session } from "./api.js";

const root = ReactDOM.createRoot(document.getElementById("graphiql"));

async function render() {
  const { auth } = await (await fetch("/ui/server.json")).json();
  if (auth !== "off" && !session.key) {
    // Without a key every request would be refused: ask for one first.
    document.getElementById("auth-state").textContent = auth === "dev"
      ? "enter a key: in dev mode the server printed it at start-up (POLYPORT_DEV_KEY=...)"
      : "enter a key";
    return;
  }
  const headers = session.key ? { Authorization: `Bearer ${session.key}` } : {};
  const fetcher = GraphiQL.createFetcher({
    url: "/graphql",
    subscriptionUrl: `${location.origin.replace(/^http/, "ws")}/graphql/ws`,
    headers,
    // graphql-ws sends these as the connection_init payload, which the server reads.
    wsConnectionParams: session.key ? { authorization: `Bearer ${session.key}` } : {},
  });
  document.getElementById("auth-state").textContent = session.key ? "key set (this tab only)" : "no key";
  // A new key is a new fetcher: GraphiQL fetches the schema again with it.
  root.render(React.createElement(GraphiQL, {
    key: session.key,
    fetcher,
    defaultQuery: "# Ctrl-Enter runs the query\n{\n  orders(first: 3) {\n    edges { node { id status totalCents } }\n  }\n}\n",
  }));
}

document.getElementById("connect").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("key");
  session.key = input.value.trim();
  input.value = "";
  render();
});

render();
