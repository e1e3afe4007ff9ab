#!/bin/sh
# A hand-written check in the style of prom-run: compare the node count the
# definition asks for with what is running. Exit 0 in sync, 2 drifted.
want=$(cat "$DRIFTWATCH_CHECKOUT/checks/nodes.wanted")
live=$(cat "$DRIFTWATCH_CHECKOUT/../live/nodes.running")
if [ "$want" = "$live" ]; then exit 0; fi
echo "The definition is $want nodes but berlin-ai is running with $live" >&2
exit 2
