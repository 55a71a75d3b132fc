#!/bin/sh
# The example app: prints the greeting baked in at build time.
echo "$(cat /app/greeting) from an image built by kubectl-buildkit"
