#!/usr/bin/env bash
# Vendors GraphiQL's browser build, and the React it runs on, into vendor/graphiql/ so the
# /graphql page needs no CDN and works offline. The binary includes these files at compile
# time (src/protocols/workshop/mod.rs); building needs nothing but cargo.
#
# GraphiQL 3.8 is the last line that ships a standalone UMD bundle (graphiql.min.js, with
# graphql-js inside, on window.GraphiQL) beside React 18's UMD builds; GraphiQL 4 and later
# ship ES modules only, which would need a bundler and a build step here.
#
# Run it to re-vendor (say, after changing a version below), then review `git diff vendor/`.
# npm pack checks each tarball against the registry's integrity hash; the hashes of what was
# vendored are written to vendor/graphiql/SOURCE.
set -euo pipefail
cd "$(dirname "$0")/.."

GRAPHIQL=3.8.3
REACT=18.3.1
# The asset paths carry the version; keep it in step in src/protocols/workshop/mod.rs.

out=vendor/graphiql
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

(cd "$work" && npm pack --silent "graphiql@$GRAPHIQL" "react@$REACT" "react-dom@$REACT" >/dev/null)
for pkg in "graphiql-$GRAPHIQL" "react-$REACT" "react-dom-$REACT"; do
  mkdir -p "$work/$pkg"
  tar xzf "$work/$pkg.tgz" -C "$work/$pkg"
done

rm -rf "$out"
mkdir -p "$out"
cp "$work/graphiql-$GRAPHIQL/package/graphiql.min.js" "$out/"
cp "$work/graphiql-$GRAPHIQL/package/graphiql.min.css" "$out/"
cp "$work/graphiql-$GRAPHIQL/package/LICENSE" "$out/LICENSE.graphiql"
cp "$work/react-$REACT/package/umd/react.production.min.js" "$out/"
cp "$work/react-$REACT/package/LICENSE" "$out/LICENSE.react"
cp "$work/react-dom-$REACT/package/umd/react-dom.production.min.js" "$out/"
cp "$work/react-dom-$REACT/package/LICENSE" "$out/LICENSE.react-dom"
# The source maps are not vendored: strip the comments that would make DevTools ask for them.
sed -i '/^\/\/# sourceMappingURL=/d' "$out/graphiql.min.js"
sed -i 's|/\*# sourceMappingURL=[^*]*\*/||' "$out/graphiql.min.css"

{
  echo "Vendored by scripts/vendor-graphiql.sh from the npm registry; do not edit by hand."
  echo "graphiql@$GRAPHIQL react@$REACT react-dom@$REACT (all MIT; licences beside this file)."
  echo "graphiql.min.js bundles graphql-js and CodeMirror 5 (MIT), as GraphiQL publishes it."
  echo
  (cd "$out" && sha256sum -- *.js *.css)
} >"$out/SOURCE"
echo "vendored into $out:"
ls -l "$out"
