#!/usr/bin/env bash
# Synthesizes the whole accelerator (systole_top) for one arch with yosys and prints its
# resource counts as a markdown table row (docs/rtl.md keeps the last run's rows).
#
#   scripts/synth.sh ulx3s      # synth_ecp5  (ECP5: LUT4, TRELLIS_FF, CCU2C, MULT18X18D, DP16KD)
#   scripts/synth.sh tiny       # synth_ice40 (iCE40: SB_LUT4, flip-flops, SB_CARRY, SB_MAC16, SB_RAM40_4K)
#
# Takes 10-40 minutes on one core (yosys 0.23). Needs yosys (apt-get install yosys) and a built
# `systole` (cargo build --release). Output: target/synth/ARCH/{stat.txt,synth.log}.
set -euo pipefail
arch=${1:?usage: scripts/synth.sh ARCH (ulx3s: synth_ecp5, anything else: synth_ice40)}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/synth/$arch"
systole="$root/target/release/systole"
[ -x "$systole" ] || cargo build --release --manifest-path "$root/Cargo.toml" --bin systole
command -v yosys >/dev/null || { echo "error: yosys not found (apt-get install yosys)" >&2; exit 1; }
rm -rf "$out" && mkdir -p "$out"
"$systole" rtl --arch "$arch" -o "$out" >/dev/null
# hdl::top::RTL_FILES, in compile order.
files="systole_array.v systole_ppu_lane.v systole_array_flat.v systole_requant_fp32.v systole_buffer.v systole_controller.v systole_dma.v systole_compute.v systole_top.v"
case "$arch" in
  ulx3s) synth=synth_ecp5; cells="LUT4 TRELLIS_FF CCU2C MULT18X18D DP16KD TRELLIS_DPR16X4" ;;
  *) synth=synth_ice40; cells="SB_LUT4 SB_DFF* SB_CARRY SB_MAC16 SB_RAM40_4K" ;;
esac
start=$(date +%s)
(cd "$out" && yosys -q -l synth.log -p "read_verilog $files; $synth -top systole_top; tee -q -o stat.txt stat")
secs=$(( $(date +%s) - start ))
row="| $arch | $synth |"
for c in $cells; do
  # Sum every cell type matching the pattern (SB_DFF* covers SB_DFF, SB_DFFE, SB_DFFSR...).
  n=$(awk -v pat="^${c//\*/.*}\$" '/=== systole_top ===/{top=1} top && $1 ~ pat {s += $2} END {print s + 0}' "$out/stat.txt")
  row="$row $c $n |"
done
echo "$row ${secs} s |"
