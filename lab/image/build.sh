#!/bin/sh
# Build the lab's container image (Debian 12, systemd as PID 1, sshd, python3)
# with debootstrap and import it into podman. Reused when the image exists and
# was built by this very script (its hash is stored as an image label).
# Usage: lab/image/build.sh [IMAGE]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
image=${1:-localhost/dsrprov-lab:debian12}
recipe=$(cat "$0" "$here/ssh-hostkeys.service" | sha256sum | cut -c1-16)

if podman image exists "$image" &&
   [ "$(podman image inspect --format '{{ index .Labels "dsrprov.recipe" }}' "$image")" = "$recipe" ]; then
  echo "lab image $image is up to date"
  exit 0
fi

mirror=$(sh "$here/../mirror.sh") || { echo "lab image: no Debian mirror (set DSRPROV_MIRROR or configure apt)" >&2; exit 1; }
root=$(mktemp -d /var/tmp/dsrprov-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT INT TERM

echo "building $image with debootstrap (about a minute)"
debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,dbus,openssh-server,python3,iproute2,nftables,procps,iputils-ping,arping,curl,sudo,tcpdump,ndisc6 \
  bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2; echo "lab image: debootstrap from $mirror failed (log above, kept in $root.log)" >&2; exit 1; }
rm -f "$root.log"

# Every container must get host keys of its own: drop the image's keys and
# make them at first boot, before sshd starts.
rm -f "$root"/etc/ssh/ssh_host_*
install -m 0644 "$here/ssh-hostkeys.service" "$root/etc/systemd/system/ssh-hostkeys.service"
ln -sf /etc/systemd/system/ssh-hostkeys.service "$root/etc/systemd/system/multi-user.target.wants/ssh-hostkeys.service"
# Key-only root login for the lab; passwords stay off.
printf 'PermitRootLogin prohibit-password\nPasswordAuthentication no\n' >"$root/etc/ssh/sshd_config.d/dsrprov-lab.conf"
# Units that only slow a container down or fail in one.
for unit in getty@tty1.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_reap.service; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
: >"$root/etc/machine-id"

tar -C "$root" -c . | podman import --quiet \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change "LABEL dsrprov.recipe=$recipe" \
  - "$image" >/dev/null
echo "lab image $image built"
