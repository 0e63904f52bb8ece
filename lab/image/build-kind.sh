#!/bin/sh
# Build a lab image of another kind than the default one: a Debian release
# with a network manager, from the recipe lab/image/kinds/KIND.conf (suite,
# extra packages, manager). The default image keeps its own script
# (build.sh), whose recipe hash every lab shares. Reused when the image exists
# and was built from this very recipe (its hash is stored as an image label).
# Usage: lab/image/build-kind.sh KIND [IMAGE]   (IMAGE: localhost/dsrprov-lab:KIND)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
kind=${1:?usage: build-kind.sh KIND [IMAGE]}
conf="$here/kinds/$kind.conf"
[ -r "$conf" ] || { echo "lab image: no recipe $conf (kinds: $(ls "$here/kinds" | sed 's/\.conf$//' | tr '\n' ' '))" >&2; exit 2; }
image=${2:-localhost/dsrprov-lab:$kind}
recipe=$(cat "$0" "$conf" "$here/ssh-hostkeys.service" "$here/lab-netconfig.sh" | sha256sum | cut -c1-16)

if podman image exists "$image" &&
   [ "$(podman image inspect --format '{{ index .Labels "dsrprov.recipe" }}' "$image")" = "$recipe" ]; then
  echo "lab image $image is up to date"
  exit 0
fi

suite="" packages="" manager=""
. "$conf"
[ -n "$suite" ] && [ -n "$manager" ] || { echo "lab image: $conf must set suite and manager" >&2; exit 2; }

mirror=$(sh "$here/../mirror.sh") || { echo "lab image: no Debian mirror (set DSRPROV_MIRROR or configure apt)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/dsrprov-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT INT TERM

echo "building $image ($suite, $manager) with debootstrap (about a minute)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,openssh-server,python3,iproute2,nftables,procps,iputils-ping,arping,curl,sudo,tcpdump,ndisc6${packages:+,$packages} \
  "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2; echo "lab image: debootstrap of $suite from $mirror failed (log above, kept in $root.log)" >&2; exit 1; }
rm -f "$root.log"

wants="$root/etc/systemd/system/multi-user.target.wants"
mkdir -p "$wants"
# Every container must get host keys of its own: drop the image's keys and
# make them at first boot, before sshd starts.
rm -f "$root"/etc/ssh/ssh_host_*
install -m 0644 "$here/ssh-hostkeys.service" "$root/etc/systemd/system/ssh-hostkeys.service"
ln -sf /etc/systemd/system/ssh-hostkeys.service "$wants/ssh-hostkeys.service"
# Key-only root login for the lab; passwords stay off.
mkdir -p "$root/etc/ssh/sshd_config.d"
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\n' >"$root/etc/ssh/sshd_config.d/dsrprov-lab.conf"
# Units that only slow a container down or fail in one.
for unit in getty@tty1.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done

# The manager's static configuration of eth0, written at first boot from the
# addresses podman assigned (lab-netconfig.sh), before the manager starts.
install -m 0755 "$here/lab-netconfig.sh" "$root/usr/local/sbin/dsrprov-lab-netconfig"
case $manager in
  networkmanager) before=NetworkManager.service ;;
  netplan-nm) before=NetworkManager.service
    # netplan renders for NetworkManager, globally, as Ubuntu desktop's
    # installer writes it; systemd-networkd stays disabled.
    mkdir -p "$root/etc/netplan"; umask_was=$(umask); umask 077
    printf '%s\n' '# Let NetworkManager manage all devices on this system' 'network:' '  version: 2' \
      '  renderer: NetworkManager' >"$root/etc/netplan/01-network-manager-all.yaml"
    umask "$umask_was" ;;
  networkd|netplan) before=systemd-networkd.service
    # As an admin would (netplan's renderer here is networkd, as on Ubuntu
    # servers): systemctl works offline in a chroot.
    chroot "$root" systemctl enable --quiet systemd-networkd.service ;;
  ifupdown) before=networking.service
    printf '%s\n' '# The loopback network interface (as Debian'"'"'s installer writes it)' \
      'source /etc/network/interfaces.d/*' '' 'auto lo' 'iface lo inet loopback' >"$root/etc/network/interfaces" ;;
  *) echo "lab image: unknown manager $manager in $conf" >&2; exit 2 ;;
esac
cat >"$root/etc/systemd/system/dsrprov-lab-netconfig.service" <<UNIT
[Unit]
Description=Lab: static eth0 configuration for $manager from podman's addresses
DefaultDependencies=no
After=systemd-udevd.service
Before=$before network-pre.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/dsrprov-lab-netconfig $manager

[Install]
WantedBy=multi-user.target
UNIT
ln -sf /etc/systemd/system/dsrprov-lab-netconfig.service "$wants/dsrprov-lab-netconfig.service"

rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
: >"$root/etc/machine-id"

tar -C "$root" -c . | podman import --quiet \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change "LABEL dsrprov.recipe=$recipe" \
  --change "LABEL dsrprov.kind=$kind" \
  - "$image" >/dev/null
echo "lab image $image built"
