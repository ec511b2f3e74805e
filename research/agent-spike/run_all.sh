#!/bin/sh
# Re-runs every spike experiment; outputs go to out/.  Needs: venv (dbf==0.99.11 dbflib==1.1 dbfread==2.0.7)
# and Debian's libdbd-xbase-perl (independent CDX reader).
set -e
cd "$(dirname "$0")"
PY=./venv/bin/python
{ $PY --version; ./venv/bin/pip list 2>/dev/null | grep -iE '^(dbf|dbflib|dbfread|aenum) '; dpkg -s libdbd-xbase-perl | grep Version; uname -sr; nproc; } > out/versions.txt
$PY exp/q1_create_and_index.py > out/q1.txt 2>&1
$PY exp/q1_timing.py 10000 > out/q1_timing_10k.txt 2>&1
$PY exp/q1_timing.py 100000 > out/q1_timing_100k.txt 2>&1
(mkdir -p refrun && cd refrun && ../venv/bin/python /work/shared/reference/experiments/e4_rebuild_cost.py 100000) > out/ref_e4_rerun.txt 2>&1
$PY exp/q1_receipts_per_second.py 0 > out/rps.txt 2>&1
$PY exp/q1_receipts_per_second.py 100000 >> out/rps.txt 2>&1
$PY exp/q2_rjust_keys.py > out/q2.txt 2>&1
$PY exp/q3_delete_pack_integrity.py > out/q3.txt 2>&1
$PY exp/q4_locks.py > out/q4.txt 2>&1
$PY exp/q5_crash_matrix.py > out/q5.txt 2>&1
$PY exp/q5_random_kill.py 200 0.75 1.0 > out/q5_random_kill_200.txt 2>&1
echo done
