#!/bin/sh
# Regenerates pkg/perfmodel/testdata/scalesim_v2_*.csv from a SCALE-Sim v2 checkout
# (see pkg/perfmodel/testdata/README.md). Usage: scripts/scalesim_testdata.sh SCALESIM_DIR
# v2 is slow: the 1x4096x4096 anchor takes about 3 minutes, the large file about 40
# (the two 1024^3 runs 7 and 25), the random file about 25.
set -eu
ss=${1:?usage: $0 SCALESIM_DIR}
out=$(dirname "$0")/../pkg/perfmodel/testdata
run() { /usr/bin/python3 "$(dirname "$0")/scalesim_runs.py" --scalesim "$ss" "$@"; }

S=""
for df in os ws is; do for arr in 32,32 128,128 8,16 16,8 128,64; do
	for sh in 4,16,8 64,64,64 100,37,53 129,1,129 1,1,1 7,200,13 300,50,70 256,256,256; do
		S="$S $sh,$arr,$df,4096,4096,4096,CALC"
	done
done; done
{ run --header $S; run 1,4096,4096,128,128,is,4096,4096,4096,CALC; } > "$out/scalesim_v2_calc.csv"

S=""
for df in os ws is; do for arr in 8,8 16,8; do for sh in 40,30,50 64,64,64 100,37,53; do
	S="$S $sh,$arr,$df,1,1,1,CALC"
done; done; done
T=""
for df in os ws is; do for arr in 8,8 16,8; do for sh in 40,30,50 64,64,64 100,37,53 20,200,30; do
	for cfg in 2,1,1,CALC 1,4,2,CALC; do T="$T $sh,$arr,$df,$cfg"; done
done; done; done
run --header $S $T > "$out/scalesim_v2_calc_sram.csv"

S=""
for df in os ws is; do for arr in 8,8 16,8 8,16; do for sh in 40,30,50 64,64,64 100,37,53 20,200,30; do
	for cfg in 1,1,1,USER,4 2,1,1,USER,10 1,2,4,USER,1; do S="$S $sh,$arr,$df,$cfg"; done
done; done; done
run --header $S > "$out/scalesim_v2_user.csv"

S=""
for df in os ws is; do
	S="$S 256,256,256,32,32,$df,16,16,16,USER,8 200,300,150,64,32,$df,32,16,8,USER,16 300,200,100,16,64,$df,8,8,8,CALC"
done
for df in os ws is; do S="$S 512,512,512,128,128,$df,64,64,64,USER,32"; done
run --header $S 1024,1024,1024,128,128,ws,4096,4096,4096,CALC 1024,1024,1024,128,128,os,256,256,256,USER,64 > "$out/scalesim_v2_large.csv"

# Random specs.
run --header $(/usr/bin/python3 "$(dirname "$0")/scalesim_random_runs.py" 15 150) > "$out/scalesim_v2_random.csv"
