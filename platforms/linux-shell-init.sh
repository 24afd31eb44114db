#!/bin/sh
# /init of the linux-shell initramfs (busybox; packed by runtime/images/linux.py): mounts the
# pseudo filesystems, says how long the boot took and runs a shell on the console. The machine
# powers off when the shell exits.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=vt100 PS1='\w # '
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
read -r up _ < /proc/uptime
echo
echo "Mirage linux-shell: Linux $(uname -r) on $(uname -m)"
echo "Boot took $up seconds"
echo "Exit the shell (or run poweroff) to stop the machine."
cd /root
# cttyhack opens the real console device (ttyS0) so the shell gets job control.
setsid cttyhack sh
poweroff -f
