#!/bin/sh
# Lab only, run once at first boot before the network manager starts: write
# the manager's own static configuration of eth0 with the addresses podman
# gave the container, as an installer would have written it, so that the
# manager really manages eth0 (and keeps the same addresses: SSH stays up).
# Usage: dsrprov-lab-netconfig MANAGER   (networkmanager | networkd | netplan | netplan-nm | ifupdown)
set -eu
manager=$1
v4=$(ip -o -4 addr show dev eth0 scope global | awk '{print $4}')
v6=$(ip -o -6 addr show dev eth0 scope global | awk '{print $4}')
case $manager in
  networkmanager)
    file=/etc/NetworkManager/system-connections/eth0.nmconnection
    [ -e "$file" ] && exit 0
    umask 077
    {
      printf '[connection]\nid=eth0\nuuid=%s\ntype=ethernet\ninterface-name=eth0\n\n' "$(cat /proc/sys/kernel/random/uuid)"
      printf '[ipv4]\nmethod=manual\n'
      n=1; for a in $v4; do echo "address$n=$a"; n=$((n + 1)); done
      # No router on the lab network: no RA, no SLAAC.
      printf '\n[ipv6]\nmethod=manual\naddr-gen-mode=eui64\n'
      n=1; for a in $v6; do echo "address$n=$a"; n=$((n + 1)); done
    } >"$file.tmp"
    mv "$file.tmp" "$file"
    ;;
  networkd)
    file=/etc/systemd/network/10-eth0.network
    [ -e "$file" ] && exit 0
    {
      printf '[Match]\nName=eth0\n\n[Network]\nIPv6AcceptRA=no\n'
      for a in $v4 $v6; do echo "Address=$a"; done
    } >"$file.tmp"
    mv "$file.tmp" "$file"
    ;;
  netplan|netplan-nm)
    # As cloud-init writes it on an Ubuntu cloud image (static here: the lab
    # has no DHCP; by name, not "match: macaddress": netplan renders that as
    # PermanentMACAddress=, which a veth has none of), then rendered (for
    # networkd, or for NetworkManager where the image's 01-network-manager-all.yaml
    # says so): netplan's systemd generator ran before this file existed.
    file=/etc/netplan/50-cloud-init.yaml
    [ -e "$file" ] && exit 0
    umask 077
    {
      printf '%s\n' '# This file is generated from information provided by the datasource.  Changes' \
        '# to it will not persist across an instance reboot.  (dsrprov lab: as cloud-init writes it.)' \
        'network:' '    version: 2' '    ethernets:' '        eth0:' \
        '            accept-ra: false' '            addresses:'
      for a in $v4 $v6; do echo "            - $a"; done
    } >"$file.tmp"
    mv "$file.tmp" "$file"
    netplan generate
    ;;
  ifupdown)
    # The loopback stanza is what Debian's installer writes; eth0 stays podman's.
    ;;
  *)
    echo "dsrprov-lab-netconfig: unknown manager $manager" >&2
    exit 2
    ;;
esac
