#!/bin/bash
# Make REAL Linux crash dumps with QEMU (TCG) from Debian kernels.
#
# Usage:
#   make-dumps.sh setup                 # apt/pip installs + download & extract kernels, busybox
#   make-dumps.sh initramfs KDIR        # KDIR = amd64 | i386pae | i386 | arm64
#   make-dumps.sh extract DIR KREL      # kernel dir (amd64|i386pae|i386|arm64) from the debs
#   make-dumps.sh dump VARIANT [FORMATS...]
#                                       # boot one guest variant, dump it in every format
#   make-dumps.sh derive DIR...          # makedumpfile lzo/zlib/ELF files from DIR/vmcore.elf
#   make-dumps.sh all                   # the standard set of variants (see VARIANTS below)
#   make-dumps.sh list                  # list variants
#
# Environment:
#   OUT=/work/realdumps   where everything big goes (kernels, initramfs, dumps); never in the repo
#   QEMU_BIN_DIR=...      directory holding qemu-system-* (default: /usr/bin, i.e. the installed
#                         QEMU; set to $OUT/qemu72/usr/bin for the extracted Debian QEMU 7.2)
#   MEM=256               guest memory in MiB
#   BOOT_TIMEOUT=600      seconds to wait for the guest's ready marker
#
# Dumps land in $OUT/<arch>/<variant>[-qemuVER]/ as vmcore.<format> (+ .elf-paging, + .unflat
# for flattened kdump files converted with `makedumpfile -R`), with console.log (the guest's
# serial output: kallsyms lines, /proc/iomem, ...) and timing.txt.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/work/realdumps}
MEM=${MEM:-256}
BOOT_TIMEOUT=${BOOT_TIMEOUT:-600}
KVER=${KVER:-6.1.0-50}           # Debian bookworm kernel ABI (linux-image-$KVER-<flavour>)
PY=${PY:-$OUT/venv/bin/python}   # venv with system site packages (python3-libkdumpfile) + drgn

log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/LOG.txt" >&2; }

# ---------------------------------------------------------------------------------------------
setup() {
  mkdir -p "$OUT/debs" "$OUT/kernels"
  # i386/arm64 packages (kernels, busybox) are only downloaded, never installed.
  dpkg --add-architecture i386
  dpkg --add-architecture arm64
  # The image ships qemu-utils 10.0 from bookworm-backports, which Breaks qemu-system-common
  # 7.2 (bookworm); so QEMU comes from bookworm-backports (10.0.2 at the time of writing).
  if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  apt-get update -q || true   # bookworm-security i386 index was transiently inconsistent; harmless
  apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-system-arm
  apt-get install -y -q --no-install-recommends makedumpfile python3-libkdumpfile busybox-static \
      cpio xz-utils python3-venv
  /usr/bin/python3 -m venv --system-site-packages "$OUT/venv"
  "$OUT/venv/bin/pip" install -q drgn

  cd "$OUT/debs"
  apt-get download linux-image-$KVER-amd64 linux-image-$KVER-686-pae:i386 linux-image-$KVER-686:i386 \
      linux-image-$KVER-arm64:arm64 busybox-static:i386 busybox-static:arm64
  # Debian QEMU 7.2 (bookworm proper), extracted only, to reproduce the 7.2 kdump quirks.
  apt-get download qemu-system-x86=1:7.2+dfsg-7+deb12u18+b3 qemu-system-arm=1:7.2+dfsg-7+deb12u18+b3 \
      qemu-system-data=1:7.2+dfsg-7+deb12u18 qemu-system-common=1:7.2+dfsg-7+deb12u18+b3 || true
  mkdir -p "$OUT/qemu72"
  for d in qemu-system-*7.2*.deb; do [ -e "$d" ] && dpkg-deb -x "$d" "$OUT/qemu72"; done
  # The /boot/System.map in the image packages is a placeholder; the real one (and vmlinux with
  # DWARF) is in the -dbg package (~800 MB each). Optional: SETUP_DBG=1.
  if [ "${SETUP_DBG:-1}" = 1 ]; then
    apt-get download linux-image-$KVER-amd64-dbg linux-image-$KVER-686-pae-dbg:i386 \
        linux-image-$KVER-686-dbg:i386 linux-image-$KVER-arm64-dbg:arm64 || true
  fi
  for a in amd64:amd64 i386pae:686-pae i386:686 arm64:arm64; do
    extract_kernel "${a%%:*}" "$KVER-${a#*:}"
  done
  for a in i386 arm64; do
    mkdir -p "$OUT/busybox/$a"
    dpkg-deb --fsys-tarfile busybox-static_*_$a.deb | tar -x -O ./bin/busybox > "$OUT/busybox/$a/busybox"
    chmod +x "$OUT/busybox/$a/busybox"
  done
  mkdir -p "$OUT/busybox/amd64"; cp /bin/busybox "$OUT/busybox/amd64/busybox"
}

extract_kernel() {  # DIR KREL
  local d="$OUT/kernels/$1" k="$2" deb dbg
  mkdir -p "$d"
  deb=$(ls "$OUT"/debs/linux-image-${k}_*.deb)
  dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./boot/vmlinuz-$k > "$d/vmlinuz"
  dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./boot/config-$k > "$d/config"
  # CONFIG_FW_CFG_SYSFS=m in Debian: without this module the guest never hands its VMCOREINFO
  # to QEMU's vmcoreinfo device, and the dump has no VMCOREINFO note.
  dpkg-deb --fsys-tarfile "$deb" | tar -x -O ./lib/modules/$k/kernel/drivers/firmware/qemu_fw_cfg.ko > "$d/qemu_fw_cfg.ko"
  dbg=$(ls "$OUT"/debs/linux-image-${k}-dbg_*.deb 2>/dev/null || true)
  if [ -n "$dbg" ] && [ ! -s "$d/vmlinux" ]; then
    dpkg-deb --fsys-tarfile "$dbg" | tar -x -C "$d" ./usr/lib/debug/boot/System.map-$k ./usr/lib/debug/boot/vmlinux-$k
    mv "$d/usr/lib/debug/boot/System.map-$k" "$d/System.map"
    mv "$d/usr/lib/debug/boot/vmlinux-$k" "$d/vmlinux"
    rm -rf "$d/usr"
  fi
}

# ---------------------------------------------------------------------------------------------
initramfs() {  # KDIR (amd64 | i386pae | i386 | arm64): busybox of that arch + the kernel's qemu_fw_cfg.ko
  local kdir=$1 d="$OUT/initramfs/$1" arch
  case $kdir in amd64) arch=amd64 ;; i386*) arch=i386 ;; arm64) arch=arm64 ;; esac
  rm -rf "$d/root"; mkdir -p "$d/root"/{bin,proc,sys,dev,tmp,lib}
  cp "$OUT/busybox/$arch/busybox" "$d/root/bin/busybox"
  cp "$OUT/kernels/$kdir/qemu_fw_cfg.ko" "$d/root/lib/qemu_fw_cfg.ko"
  cat > "$d/root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
insmod /lib/qemu_fw_cfg.ko && echo "REALDUMP-INFO qemu_fw_cfg loaded: $(ls /sys/firmware/qemu_fw_cfg/by_name/etc 2>/dev/null | tr '\n' ' ')"
echo "REALDUMP-INFO uname $(uname -a)"
echo "REALDUMP-INFO cmdline $(cat /proc/cmdline)"
echo "REALDUMP-INFO vmcoreinfo-note $(cat /sys/kernel/vmcoreinfo 2>/dev/null)"
# ground truth from inside the guest: run-time addresses of a few symbols (root sees real values)
for s in _text _stext _etext linux_banner init_task init_uts_ns swapper_pg_dir init_top_pgt \
         page_offset_base vmalloc_base vmemmap_base phys_base _end init_mm jiffies_64; do
  grep -E " $s\$" /proc/kallsyms | sed "s/^/REALDUMP-KSYM /"
done
sed 's/^/REALDUMP-IOMEM /' /proc/iomem
dmesg | grep -iE 'KASLR|5-level|Memory:|paging|PAE|highmem|lowmem|Virtual kernel memory|Zone ranges' | sed 's/^/REALDUMP-DMESG /'
echo "REALDUMP-INFO meminfo $(grep -E 'MemTotal' /proc/meminfo)"
echo "REALDUMP-READY"
while :; do sleep 3600; done
EOF
  chmod +x "$d/root/init"
  (cd "$d/root" && find . | cpio -o -H newc --quiet | gzip -9) > "$d/initramfs.cpio.gz"
  log "initramfs $kdir: $(stat -c %s "$d/initramfs.cpio.gz") bytes"
}

# ---------------------------------------------------------------------------------------------
# VARIANT -> arch|qemu-binary|qemu-args|kernel-dir|initramfs-arch|append
variant() {
  local base="console=ttyS0 panic=-1 loglevel=7"
  case $1 in
    x86_64-kaslr)        echo "x86_64|qemu-system-x86_64|-cpu qemu64|amd64|amd64|$base" ;;
    x86_64-nokaslr)      echo "x86_64|qemu-system-x86_64|-cpu qemu64|amd64|amd64|$base nokaslr" ;;
    x86_64-5level-kaslr) echo "x86_64|qemu-system-x86_64|-cpu max|amd64|amd64|$base" ;;
    x86_64-5level-nokaslr) echo "x86_64|qemu-system-x86_64|-cpu max|amd64|amd64|$base nokaslr" ;;
    x86_64-max-no5lvl)   echo "x86_64|qemu-system-x86_64|-cpu max|amd64|amd64|$base no5lvl" ;;
    i386pae-kaslr)       echo "i386|qemu-system-i386|-cpu max|i386pae|i386|$base" ;;
    i386pae-nokaslr)     echo "i386|qemu-system-i386|-cpu max|i386pae|i386|$base nokaslr" ;;
    i386-kaslr)          echo "i386|qemu-system-i386|-cpu max|i386|i386|$base" ;;
    i386-nokaslr)        echo "i386|qemu-system-i386|-cpu max|i386|i386|$base nokaslr" ;;
    aarch64-kaslr)       echo "aarch64|qemu-system-aarch64|-M virt -cpu cortex-a57|arm64|arm64|console=ttyAMA0 panic=-1 loglevel=7" ;;
    aarch64-nokaslr)     echo "aarch64|qemu-system-aarch64|-M virt -cpu cortex-a57|arm64|arm64|console=ttyAMA0 panic=-1 loglevel=7 nokaslr" ;;
    *) echo "unknown variant $1" >&2; return 1 ;;
  esac
}
VARIANTS="x86_64-kaslr x86_64-nokaslr i386pae-kaslr i386pae-nokaslr i386-kaslr aarch64-kaslr aarch64-nokaslr x86_64-5level-kaslr x86_64-5level-nokaslr"

dump() {  # VARIANT [FORMATS...]
  local v=$1; shift
  local spec arch qbin qargs kdir iarch append
  spec=$(variant "$v")
  IFS='|' read -r arch qbin qargs kdir iarch append <<<"$spec"
  local qdir=${QEMU_BIN_DIR:-/usr/bin} lflags=()
  [ -f "$OUT/initramfs/$kdir/initramfs.cpio.gz" ] || initramfs "$kdir"
  # Debian's qemu-system-i386 is a sh wrapper exec'ing /usr/libexec/qemu-system-i386
  [ -x "$qdir/../libexec/$qbin" ] && [ "$qdir" != /usr/bin ] && qdir="$qdir/../libexec"
  local qver; qver=$("$qdir/$qbin" --version | sed -n 's/^QEMU emulator version \([0-9.]*\).*/\1/p')
  local suffix=""; [ "$qdir" != /usr/bin ] && suffix="-qemu$qver"
  [ "$qdir" != /usr/bin ] && [ -d "$qdir/../share/qemu" ] && lflags=(-L "$qdir/../share/qemu" -L /usr/share/seabios)
  local d="$OUT/$arch/$v$suffix"
  rm -rf "$d"; mkdir -p "$d"
  local sock="$d/qmp.sock"
  log "boot $v ($qbin $qver, -m $MEM, append '$append')"
  local t0=$SECONDS
  # shellcheck disable=SC2086
  "$qdir/$qbin" "${lflags[@]}" -accel tcg -m "$MEM" -smp 2 $qargs -device vmcoreinfo -nic none \
      -display none -monitor none -serial "file:$d/console.log" \
      -kernel "$OUT/kernels/$kdir/vmlinuz" -initrd "$OUT/initramfs/$kdir/initramfs.cpio.gz" \
      -append "$append" -qmp "unix:$sock,server=on,wait=off" -no-reboot \
      > "$d/qemu.stdout" 2>&1 &
  local qpid=$!
  echo "$qpid" > "$d/qemu.pid"
  while ! grep -q '^REALDUMP-READY' "$d/console.log" 2>/dev/null; do
    if ! kill -0 "$qpid" 2>/dev/null; then log "QEMU exited early"; cat "$d/qemu.stdout"; tail -30 "$d/console.log"; return 1; fi
    if (( SECONDS - t0 > BOOT_TIMEOUT )); then log "boot timeout"; kill "$qpid"; tail -30 "$d/console.log"; return 1; fi
    sleep 2
  done
  sleep 3
  local tb=$((SECONDS - t0))
  echo "qemu $qver $qbin $qargs -m $MEM append=$append" > "$d/timing.txt"
  echo "boot_to_ready_s $tb" >> "$d/timing.txt"
  log "$v ready after ${tb}s"
  local fmts="$*"
  if [ -z "$fmts" ]; then fmts=$($PY "$HERE/qmp.py" "$sock" caps); fi
  echo "capability_formats $($PY "$HERE/qmp.py" "$sock" caps)" >> "$d/timing.txt"
  # stop the vCPUs so that all formats see the same memory
  $PY "$HERE/qmp.py" "$sock" raw '{"execute":"stop"}' >/dev/null
  for f in $fmts; do
    [ "$f" = win-dmp ] && continue
    local t1=$SECONDS
    $PY "$HERE/qmp.py" "$sock" dump "$f" "$d/vmcore.$f" 2>>"$d/qmp.log" | tee -a "$d/qmp.log" || { log "dump $f failed"; continue; }
    echo "dump_${f}_s $((SECONDS - t1)) size $(stat -c %s "$d/vmcore.$f")" >> "$d/timing.txt"
    case $f in
      kdump-zlib|kdump-lzo|kdump-snappy)
        t1=$SECONDS
        makedumpfile -R "$d/vmcore.$f.unflat" < "$d/vmcore.$f" > "$d/makedumpfile-R.$f.log" 2>&1 \
          && echo "makedumpfile_R_${f}_s $((SECONDS - t1))" >> "$d/timing.txt" \
          || log "makedumpfile -R $f failed (see makedumpfile-R.$f.log)"
        ;;
    esac
  done
  if [ "${PAGING_DUMP:-1}" = 1 ]; then
    local t1=$SECONDS
    $PY "$HERE/qmp.py" "$sock" dump elf "$d/vmcore.elf-paging" paging 2>>"$d/qmp.log" | tee -a "$d/qmp.log" \
      && echo "dump_elf-paging_s $((SECONDS - t1)) size $(stat -c %s "$d/vmcore.elf-paging")" >> "$d/timing.txt" \
      || log "paging dump failed"
  fi
  $PY "$HERE/qmp.py" "$sock" quit || true
  wait "$qpid" || true
  rm -f "$sock" "$d/qemu.pid"
  derive "$d"
  echo "total_s $((SECONDS - t0))" >> "$d/timing.txt"
  log "$v done in $((SECONDS - t0))s -> $d"
}

# makedumpfile-made files from the QEMU ELF (Debian's makedumpfile 1.7.2 has lzo+zlib, not
# snappy/zstd). makedumpfile cannot read QEMU's ELF directly (phdrs not at offset 64), so
# elf-for-makedumpfile.py makes a temporary copy with the phdrs moved.
derive() {  # DIR
  local d=$1 t1
  [ -s "$d/vmcore.elf" ] || return 0
  # Debian's makedumpfile is built for the host (x86_64) only: i386/arm64 dumps fail
  # ("vtop4_x86_64: Can't get the symbol of init_level4_pgt/init_top_pgt").
  case $(basename "$d") in x86_64*) ;; *) return 0 ;; esac
  t1=$SECONDS
  $PY "$HERE/elf-for-makedumpfile.py" "$d/vmcore.elf" "$d/tmp-mdf.elf" >/dev/null || { log "elf-for-makedumpfile failed"; return 0; }
  makedumpfile -l -d 31 "$d/tmp-mdf.elf" "$d/vmcore.mdf-lzo-d31" > "$d/makedumpfile.log" 2>&1 || log "makedumpfile -l failed ($d)"
  makedumpfile -c -d 1 "$d/tmp-mdf.elf" "$d/vmcore.mdf-zlib-d1" >> "$d/makedumpfile.log" 2>&1 || log "makedumpfile -c failed ($d)"
  makedumpfile -E -d 31 "$d/tmp-mdf.elf" "$d/vmcore.mdf-elf-d31" >> "$d/makedumpfile.log" 2>&1 || log "makedumpfile -E failed ($d)"
  rm -f "$d/tmp-mdf.elf"
  echo "makedumpfile_derive_s $((SECONDS - t1)) $(cd "$d" && stat -c '%n=%s' vmcore.mdf-* 2>/dev/null | tr '\n' ' ')" >> "$d/timing.txt"
}

case ${1:-} in
  derive) shift; for d in "$@"; do derive "$d"; done ;;
  setup) setup ;;
  initramfs) initramfs "$2" ;;
  extract) extract_kernel "$2" "$3" ;;   # e.g. extract amd64 6.1.0-50-amd64
  dump) shift; dump "$@" ;;
  all) for v in $VARIANTS; do dump "$v" || log "variant $v FAILED"; done ;;
  list) for v in $VARIANTS; do echo "$v: $(variant "$v")"; done ;;
  *) sed -n '2,22p' "$0"; exit 2 ;;
esac
