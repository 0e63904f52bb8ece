#!/bin/bash
# Build the LVS-DR director VM image (Debian 12 / bookworm) for dsrprov's lab.
#
# Usage: lab/director/build-image.sh OUTDIR
#
# Produces OUTDIR/director.img (raw ext4, sparse, root=/dev/vda),
# OUTDIR/vmlinuz and OUTDIR/initrd.img (booted with qemu -kernel/-initrd),
# and OUTDIR/stamp (sha256 of this script). If all four exist and the stamp
# matches, nothing is rebuilt. See docs/director-vm.md.
#
# The Debian mirror comes from $DSRPROV_MIRROR or from this machine's apt
# sources; it is never written into the repository.
set -euo pipefail
# No silent exit under set -e: name the step that failed.
trap 'rc=$?; echo "build-image.sh: failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "$0: must run as root (debootstrap, chroot)" >&2
  exit 1
fi

OUTDIR=$1
SELF=$(readlink -f "$0")
HASH=$(sha256sum "$SELF" | cut -d' ' -f1)
IMG_SIZE=${DSRPROV_DIRECTOR_IMG_SIZE:-2G}
SUITE=bookworm

mkdir -p "$OUTDIR"
OUTDIR=$(readlink -f "$OUTDIR")

if [ -s "$OUTDIR/director.img" ] && [ -s "$OUTDIR/vmlinuz" ] && [ -s "$OUTDIR/initrd.img" ] \
   && [ "$(cat "$OUTDIR/stamp" 2>/dev/null)" = "$HASH" ]; then
  echo "director image up to date in $OUTDIR"
  exit 0
fi

find_mirror() {
  if [ -n "${DSRPROV_MIRROR:-}" ]; then
    echo "$DSRPROV_MIRROR"; return 0
  fi
  local f m
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    # deb822 stanza whose Suites names plain bookworm/stable.
    m=$(awk '
      /^[[:space:]]*$/ { if (uri != "" && main) { print uri; exit } uri=""; main=0; next }
      /^URIs:/ { uri=$2 }
      /^Suites:/ { for (i=2;i<=NF;i++) if ($i ~ /^(bookworm|stable)$/) main=1 }
      END { if (uri != "" && main) print uri }' "$f" | head -n1)
    if [ -n "$m" ]; then echo "$m"; return 0; fi
  done
  if [ -r /etc/apt/sources.list ]; then
    m=$(awk '$1=="deb" && ($3=="bookworm" || $3=="stable") { print $2; exit }' /etc/apt/sources.list)
    if [ -n "$m" ]; then echo "$m"; return 0; fi
  fi
  return 1
}
MIRROR=$(find_mirror) || { echo "$0: no Debian mirror: set DSRPROV_MIRROR or configure apt" >&2; exit 1; }

WORK=$(mktemp -d "$OUTDIR/.build.XXXXXX")
ROOT=$WORK/root
cleanup() {
  for m in dev/pts dev sys proc; do
    mountpoint -q "$ROOT/$m" 2>/dev/null && umount -l "$ROOT/$m" || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

T0=$(date +%s)
echo "== debootstrap $SUITE from $MIRROR"
PKGS=systemd,systemd-sysv,dbus,udev,kmod,openssh-server,python3,iproute2,keepalived,ipvsadm,curl,tcpdump,procps,sudo,iputils-ping,less
debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$ROOT" "$MIRROR"

# Initramfs: only the modules needed to mount a virtio ext4 root, so it is
# small and quick to unpack under TCG. Written before the kernel is installed
# so the first (and only) initramfs build already uses it.
mkdir -p "$ROOT/etc/initramfs-tools/conf.d"
cat > "$ROOT/etc/initramfs-tools/conf.d/dsrprov.conf" <<'EOF'
MODULES=list
COMPRESS=gzip
EOF
cat >> "$ROOT/etc/initramfs-tools/modules" <<'EOF'
virtio_pci
virtio_blk
virtio_net
ext4
EOF

mount --bind /proc "$ROOT/proc"
mount --bind /sys "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
printf '#!/bin/sh\nexit 101\n' > "$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"

echo "== kernel + initramfs-tools"
chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
  linux-image-amd64 initramfs-tools

# ---------------------------------------------------------------- guest config
echo "== configure guest"
echo director > "$ROOT/etc/hostname"
cat > "$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	director
::1	localhost ip6-localhost ip6-loopback
EOF
cat > "$ROOT/etc/fstab" <<'EOF'
/dev/vda	/	ext4	defaults,noatime	0	1
EOF
printf 'ip_vs\nqemu_fw_cfg\n' > "$ROOT/etc/modules-load.d/dsrprov.conf"

# Boot-time configuration from the kernel command line and QEMU fw_cfg.
cat > "$ROOT/usr/local/sbin/dsrprov-boot-config" <<'EOF'
#!/bin/sh
# Runs before systemd-networkd and ssh. Reads:
#   /proc/cmdline: dsrprov.addr=A/N dsrprov.addr6=A/N dsrprov.gw=IP dsrprov.gw6=IP
#   fw_cfg opt/dsrprov/authorized_keys -> /root/.ssh/authorized_keys
# SSH host keys are made by dsrprov-ssh-hostkeys.service, in parallel.
set -u
addr= addr6= gw= gw6=
for w in $(cat /proc/cmdline); do
  case "$w" in
    dsrprov.addr=*)  addr=${w#*=} ;;
    dsrprov.addr6=*) addr6=${w#*=} ;;
    dsrprov.gw=*)    gw=${w#*=} ;;
    dsrprov.gw6=*)   gw6=${w#*=} ;;
  esac
done
mkdir -p /run/systemd/network
{
  echo "[Match]"
  echo "Name=en* eth*"
  echo "[Network]"
  [ -n "$addr" ] || echo "DHCP=ipv4"
  [ -n "$addr" ] && echo "Address=$addr"
  [ -n "$addr6" ] && echo "Address=$addr6"
  [ -n "$gw" ] && echo "Gateway=$gw"
  [ -n "$gw6" ] && echo "Gateway=$gw6"
  echo "IPv6AcceptRA=no"
  echo "LinkLocalAddressing=ipv6"
} > /run/systemd/network/10-dsrprov.network

modprobe qemu_fw_cfg 2>/dev/null || true
ak=/sys/firmware/qemu_fw_cfg/by_name/opt/dsrprov/authorized_keys/raw
if [ -r "$ak" ]; then
  install -d -m 700 /root/.ssh
  cat "$ak" > /root/.ssh/authorized_keys.new
  chmod 600 /root/.ssh/authorized_keys.new
  mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
fi
exit 0
EOF
chmod 755 "$ROOT/usr/local/sbin/dsrprov-boot-config"

cat > "$ROOT/etc/systemd/system/dsrprov-boot-config.service" <<'EOF'
[Unit]
Description=dsrprov: network and authorized_keys from cmdline/fw_cfg
DefaultDependencies=no
After=systemd-remount-fs.service local-fs.target systemd-modules-load.service
Before=systemd-networkd.service network-pre.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/dsrprov-boot-config

[Install]
WantedBy=sysinit.target
EOF

# Host keys are not in the image: generate them on first boot. Only ed25519
# and ECDSA: an RSA key takes ~10 s to generate under TCG (what
# `ssh-keygen -A` would also make); sshd is told to use just these two.
cat > "$ROOT/etc/systemd/system/dsrprov-ssh-hostkeys.service" <<'EOF'
[Unit]
Description=dsrprov: generate SSH host keys on first boot
DefaultDependencies=no
After=systemd-remount-fs.service local-fs.target
Before=ssh.service sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for t in ed25519 ecdsa; do f=/etc/ssh/ssh_host_$${t}_key; [ -s $$f ] || ssh-keygen -q -t $$t -N "" -f $$f; done'

[Install]
WantedBy=sysinit.target
EOF

# Print the ed25519 host key on the serial console, so the lab can record it
# without trusting the network.
cat > "$ROOT/usr/local/sbin/dsrprov-hostkey-console" <<'EOF'
#!/bin/sh
# One line, easy to grep from the serial log: DSRPROV-HOSTKEY ssh-ed25519 AAAA...
key=$(cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub) || exit 1
printf '\nDSRPROV-HOSTKEY %s\n' "$key" > /dev/ttyS0
EOF
chmod 755 "$ROOT/usr/local/sbin/dsrprov-hostkey-console"
cat > "$ROOT/etc/systemd/system/dsrprov-hostkey-console.service" <<'EOF'
[Unit]
Description=dsrprov: print SSH host key on ttyS0
After=dsrprov-ssh-hostkeys.service ssh.service
Requires=dsrprov-ssh-hostkeys.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/dsrprov-hostkey-console

[Install]
WantedBy=multi-user.target
EOF

mkdir -p "$ROOT/etc/ssh/sshd_config.d"
cat > "$ROOT/etc/ssh/sshd_config.d/dsrprov.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF

chroot "$ROOT" systemctl enable systemd-networkd.service dsrprov-boot-config.service \
  dsrprov-ssh-hostkeys.service dsrprov-hostkey-console.service ssh.service serial-getty@ttyS0.service
chroot "$ROOT" systemctl set-default multi-user.target
# Nothing here needs these; they only slow a TCG boot.
chroot "$ROOT" systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
  e2scrub_reap.service fstrim.timer systemd-networkd-wait-online.service 2>/dev/null || true
# keepalived waits for network-online.target; networkd-wait-online is masked,
# so give it a plain network.target order instead of a 2-minute timeout.
mkdir -p "$ROOT/etc/systemd/system/keepalived.service.d"
cat > "$ROOT/etc/systemd/system/keepalived.service.d/dsrprov.conf" <<'EOF'
[Unit]
After=network.target
EOF

# No host keys, machine-id or package caches in the image.
rm -f "$ROOT"/etc/ssh/ssh_host_*
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
rm -f "$ROOT/usr/sbin/policy-rc.d"
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/log/*.log "$ROOT"/tmp/*

for m in dev/pts dev sys proc; do umount "$ROOT/$m"; done

echo "== kernel, initrd, ext4 image ($IMG_SIZE)"
KVER=$(ls "$ROOT/lib/modules" | sort -V | tail -n1)
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"
cp "$ROOT/boot/initrd.img-$KVER" "$WORK/initrd.img"
truncate -s "$IMG_SIZE" "$WORK/director.img"
mkfs.ext4 -q -F -L dsrroot -E root_owner=0:0 -d "$ROOT" "$WORK/director.img"

rm -f "$OUTDIR/stamp"
mv -f "$WORK/director.img" "$WORK/vmlinuz" "$WORK/initrd.img" "$OUTDIR/"
echo "$KVER" > "$OUTDIR/kernel-version"
echo "$HASH" > "$OUTDIR/stamp"
echo "== built $OUTDIR in $(( $(date +%s) - T0 )) s (kernel $KVER, initrd $(du -h "$OUTDIR/initrd.img" | cut -f1))"
