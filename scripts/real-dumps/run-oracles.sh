#!/bin/bash
# Run oracle.py over every dump under $OUT/<arch>/<variant>/ and keep the results beside the dumps:
#   oracle.<file>.txt  (full report)   xlat.<file>.txt  ("va pa" / "va -" lines)
# and copy each distinct VMCOREINFO text into scripts/real-dumps/vmcoreinfo/<variant>.txt
# Usage: run-oracles.sh [VARIANT_DIR...]     (default: all)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-/work/realdumps}
PY=${PY:-$OUT/venv/bin/python}
mkdir -p "$HERE/vmcoreinfo"
dirs=("$@"); [ ${#dirs[@]} -eq 0 ] && dirs=("$OUT"/x86_64/* "$OUT"/i386/* "$OUT"/aarch64/*)
for d in "${dirs[@]}"; do
  [ -d "$d" ] || continue
  v=$(basename "$d")
  case $v in
    x86_64*) k=amd64; arch=x86_64 ;; i386pae*) k=i386pae; arch=ia32 ;; i386*) k=i386; arch=ia32 ;;
    aarch64*) k=arm64; arch=aarch64 ;; *) continue ;;
  esac
  smap=(); [ -s "$OUT/kernels/$k/System.map" ] && smap=(--system-map "$OUT/kernels/$k/System.map")
  for f in "$d"/vmcore.*; do
    b=$(basename "$f")
    t0=$SECONDS
    "$PY" "$HERE/oracle.py" "$f" "${smap[@]}" --arch "$arch" --xlat-out "$d/xlat.$b.txt" \
        --vmcoreinfo-out "$d/vmcoreinfo.$b.txt" > "$d/oracle.$b.txt" 2>&1
    echo "$v/$b rc=$? $((SECONDS - t0))s $(grep -E '^xlat:' "$d/oracle.$b.txt")"
  done
  # one VMCOREINFO copy per variant (ELF one preferred; all formats of one boot carry the same text)
  for b in vmcore.elf vmcore.kdump-raw-zlib vmcore.kdump-zlib.unflat; do
    if [ -s "$d/vmcoreinfo.$b.txt" ]; then cp "$d/vmcoreinfo.$b.txt" "$HERE/vmcoreinfo/$v.txt"; break; fi
  done
done
