#!/usr/bin/env bash
# Run bench/run.sh inside a throw-away Debian 12 virtual machine (QEMU).
#
# Why: holding N connected devices needs N descriptors in one broker process
# (and N in the load generator). Where the host's hard RLIMIT_NOFILE is lower
# than that and cannot be raised (a container without CAP_SYS_RESOURCE), the
# guest has its own kernel, and root there raises the limit to fs.nr_open.
# The guest's numbers are the guest's: RSS is measured inside it, so memory
# per device compares directly; times do not (QEMU without KVM emulates the
# CPU, several times slower than the host).
#
#   bench/vm.sh [--mem 12G] [--smp 2] [--cache DIR] [--max-minutes 240] -- RUN.SH-ARGS...
#   e.g. bench/vm.sh -- --only connected --reps 1 --connected-devices 100000 \
#            --connected-brokers vanilla,plugin-direct
#
# Needs root, debootstrap, qemu-system-x86_64 and mkfs.ext4 (e2fsprogs).
# The guest's root file system (debootstrap of bookworm with mosquitto and the
# plugin's libraries, ~800 MB) is kept in --cache and reused. The plugin and
# the load generator are built on the host (build-bench, Release) and copied
# in; results land in bench/results/ like those of a host run, and the
# guest's console goes to bench/results/vm-<date>.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MEM=12G
SMP=2
CACHE=/var/tmp/fleetmq-vm
MAX_MIN=240
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

while [ $# -gt 0 ]; do
	case "$1" in
		--mem) MEM=$2; shift 2 ;;
		--smp) SMP=$2; shift 2 ;;
		--cache) CACHE=$2; shift 2 ;;
		--max-minutes) MAX_MIN=$2; shift 2 ;;
		--) shift; break ;;
		-h|--help) sed -n '2,21p' "$0"; exit 0 ;;
		*) echo "unknown option $1 (run.sh arguments go after --)" >&2; exit 2 ;;
	esac
done

[[ "$MAX_MIN" =~ ^[1-9][0-9]*$ ]] || { echo "--max-minutes wants minutes > 0, not '$MAX_MIN'" >&2; exit 2; }
log() { echo "[vm.sh $(date +%H:%M:%S)] $*" >&2; }
for t in debootstrap qemu-system-x86_64 mkfs.ext4 debugfs; do
	command -v "$t" >/dev/null || {
		echo "vm.sh: $t is missing (apt-get install debootstrap qemu-system-x86 e2fsprogs)" >&2
		exit 1
	}
done
[ "$(id -u)" = 0 ] || { echo "vm.sh: debootstrap needs root" >&2; exit 1; }

ROOTFS=$CACHE/rootfs
if [ ! -x "$ROOTFS/usr/sbin/mosquitto" ] || ! ls "$ROOTFS"/boot/vmlinuz-* >/dev/null 2>&1; then
	log "debootstrap bookworm into $ROOTFS (once)"
	rm -rf "$ROOTFS"
	mkdir -p "$CACHE"
	debootstrap --variant=minbase \
		--include=mosquitto,libcjson1,libsqlite3-0,libprotobuf-c1,libyaml-0-2,libmosquitto1,procps,iproute2,gawk,linux-image-amd64,udev,kmod \
		bookworm "$ROOTFS" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
		{ tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
fi
KERNEL=$(find "$ROOTFS/boot" -name 'vmlinuz-*' | sort | tail -1)
INITRD=$(find "$ROOTFS/boot" -name 'initrd.img-*' | sort | tail -1)

log "building plugin and load generator (Release, build-bench)"
cmake -S "$ROOT" -B "$ROOT/build-bench" -DCMAKE_BUILD_TYPE=Release -DFLEETMQ_BUILD_TESTS=OFF >/dev/null
cmake --build "$ROOT/build-bench" -j"$(nproc)" --target fleetmq_plugin fleetmq-loadgen >/dev/null

# The project's part of the guest: run.sh, the two binaries, and an init
# that mounts what run.sh needs, raises the descriptor limit, runs the
# benchmark and powers off.
G=$ROOTFS/fleetmq
rm -rf "$G"
mkdir -p "$G/bench/results" "$G/build-bench/bench" "$G/build-bench/broker-plugin"
cp "$ROOT/bench/run.sh" "$G/bench/"
cp "$ROOT/build-bench/bench/fleetmq-loadgen" "$G/build-bench/bench/"
cp "$ROOT/build-bench/broker-plugin/fleetmq_plugin.so" "$G/build-bench/broker-plugin/"
SOURCE="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' + local changes')"
{
	echo '#!/bin/bash'
	echo 'export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root'
	# the initramfs hands over /proc, /sys and /dev already mounted
	echo 'mountpoint -q /proc || mount -t proc proc /proc'
	echo 'mountpoint -q /sys || mount -t sysfs sys /sys'
	echo 'mountpoint -q /dev || mount -t devtmpfs dev /dev'
	echo 'mount -t tmpfs tmp /tmp; mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts'
	echo 'ip link set lo up'
	# shellcheck disable=SC2016 # expanded in the guest
	echo 'ulimit -Hn "$(cat /proc/sys/fs/nr_open)" && ulimit -Sn "$(cat /proc/sys/fs/nr_open)"'
	printf 'export BENCH_SOURCE=%q\n' "$SOURCE (in a QEMU guest)"
	echo "echo \"fleetmq-vm: source $SOURCE, \$(nproc) CPUs, \$(free -m | awk '/^Mem:/{print \$2}') MiB, ulimit -n \$(ulimit -n)\""
	printf 'cd /fleetmq && bash bench/run.sh --no-build'
	if [ $# -gt 0 ]; then printf ' %q' "$@"; fi
	echo
	echo 'echo "fleetmq-vm: run.sh exit $?"'
	echo 'sync; echo o >/proc/sysrq-trigger; sleep 10'
} >"$G/init.sh"
chmod 755 "$G/init.sh"

IMG=$CACHE/disk.img
rm -f "$IMG"
log "making the guest disk"
mkfs.ext4 -q -F -L fleetmq -d "$ROOTFS" "$IMG" 4G

mkdir -p "$ROOT/bench/results"
CONSOLE=$ROOT/bench/results/vm-$(date -u +%Y-%m-%dT%H%M%SZ).log
log "booting (QEMU TCG, $SMP CPUs, $MEM); console -> $CONSOLE"
# panic=1: if init fails, the guest reboots, which -no-reboot turns into an
# exit; the timeout bounds a guest that hangs.
timeout "$((MAX_MIN * 60))" qemu-system-x86_64 -accel tcg,thread=multi -cpu max -smp "$SMP" -m "$MEM" \
	-nographic -no-reboot -nic none \
	-kernel "$KERNEL" -initrd "$INITRD" \
	-append "root=/dev/vda rw console=ttyS0 quiet panic=1 init=/fleetmq/init.sh" \
	-drive "file=$IMG,if=virtio,format=raw,cache=unsafe" </dev/null >"$CONSOLE" 2>&1 ||
	log "QEMU exited with status $? (124 = --max-minutes reached)"
grep 'fleetmq-vm:' "$CONSOLE" >&2 || true

# Copy the guest's result files out of the disk image.
OUTDIR=$(mktemp -d)
debugfs -R "rdump /fleetmq/bench/results $OUTDIR" "$IMG" >/dev/null 2>&1 || true
for f in "$OUTDIR"/results/*.md; do
	[ -f "$f" ] || continue
	cp "$f" "$ROOT/bench/results/vm-$(basename "$f")"
	log "wrote $ROOT/bench/results/vm-$(basename "$f")"
done
rm -rf "$OUTDIR" "$IMG"
grep -q 'fleetmq-vm: run.sh exit 0' "$CONSOLE"
