#!/usr/bin/env bash
# Prints the identity of the working tree: its commit, and every change
# since (status and diff), hashed. hack/images.sh records it beside the
# images it built from the whole tree, hack/e2e.sh beside the cluster
# --prepare started: after an edit, the images are built again.
cd "$(dirname "$0")/.." || exit 1
{ git rev-parse HEAD; git status --porcelain; git diff HEAD; } 2>/dev/null | sha256sum | cut -c1-16
