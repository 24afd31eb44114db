#!/bin/sh
# /init of the linux-shell initramfs (busybox; packed by runtime/images/linux.py): mounts the
# pseudo filesystems, says how long the boot took and runs a shell on the console. The machine
# powers off when the shell exits (or on poweroff/halt; reboot reboots).
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root TERM=vt100 PS1='\w # '
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
hostname -F /etc/hostname
read -r up _ < /proc/uptime
echo
echo "Mirage linux-shell: Linux $(uname -r) on $(uname -m)"
echo "Boot took $up seconds"
echo "Exit the shell (or run poweroff) to stop the machine."
cd /root
# busybox's poweroff, halt and reboot signal PID 1 (this script): USR2, USR1, TERM. A trapped
# signal interrupts `wait`, not a foreground command, so the shell runs in the background;
# cttyhack gives it the real console device (ttyS0) as its terminal, so it has job control.
trap 'poweroff -f' USR1 USR2
trap 'reboot -f' TERM
setsid cttyhack sh &
wait
poweroff -f
