#!/bin/sh
# Create a molecule scenario's podman network as "internal" (no route off the
# machine) before molecule's podman driver would create an ordinary one.
# Usage: lab/molecule-network.sh NAME SUBNET SUBNET6
set -eu
podman network exists "$1" 2>/dev/null && exit 0
podman network create --internal --subnet "$2" --ipv6 --subnet "$3" "$1" >/dev/null
