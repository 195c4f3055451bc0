#!/usr/bin/env bash
# Builds the controller's console (xds/console/web: cytoscape.js and
# skiff's page) into xds/console/dist, which is committed and embedded
# with go:embed. npm ci installs exactly package-lock.json's versions from
# the npm registry; esbuild bundles and minifies.
#
#   hack/gen-console.sh           # rebuild dist/
#   hack/gen-console.sh --verify  # rebuild into a temporary directory and
#                                 # fail if it differs from the committed dist/
set -euo pipefail
cd "$(dirname "$0")/../xds/console/web"
out=../dist
if [ "${1:-}" = --verify ]; then
	out=$(mktemp -d)
	trap 'rm -rf "$out"' EXIT
fi
npm ci --no-audit --no-fund --loglevel=error >/dev/null
mkdir -p "$out"
./node_modules/.bin/esbuild src/main.js --bundle --minify --format=iife --target=es2020 \
	--legal-comments=eof --log-level=warning --outfile="$out/console.js"
cp index.html console.css "$out/"
cp node_modules/cytoscape/LICENSE "$out/LICENSE.cytoscape.txt"
if [ "${1:-}" = --verify ]; then
	if ! diff -r "$out" ../dist >/dev/null; then
		diff -r "$out" ../dist | head -5 >&2
		echo "xds/console/dist differs from what xds/console/web builds: run hack/gen-console.sh and commit" >&2
		exit 1
	fi
	echo "console bundle verified"
fi
