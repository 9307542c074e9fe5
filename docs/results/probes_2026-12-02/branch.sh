#!/bin/bash
# Soup experiment: parent = recipe v8 seed $PSEED for $K epoch(s) (10-epoch cosine), child = same state, data seed $CSEED.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export RSITR_SHARED=/work/shared HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY=.venv/bin/python
PSEED=${PSEED:-0}; CSEED=${CSEED:-1}; K=${K:-1}
P=runs/v9_parent_s$PSEED; C=runs/v9_child_s${PSEED}_c$CSEED
if [ ! -f $P/epoch$K.pt ]; then
  $PY training/train.py --config training/configs/pir_lite_v8.yaml --resume --set name=v9_parent_s$PSEED seed=$PSEED &
  TP=$!
  while ! [ "$(wc -l < $P/metrics.jsonl 2>/dev/null || echo 0)" -ge $K ]; do sleep 5; kill -0 $TP || exit 1; done
  sleep 20  # last.pt is saved after the metrics line
  kill $TP; wait $TP || true
  $PY - <<PYEOF
import torch
ck = torch.load("$P/last.pt", map_location="cpu", weights_only=False)
assert ck["state"]["epoch"] == $K, ck["state"]["epoch"]
torch.save(ck, "$P/epoch$K.pt")
PYEOF
fi
mkdir -p $C
[ -f $C/last.pt ] || cp $P/epoch$K.pt $C/last.pt
/usr/bin/time -v $PY training/train.py --config training/configs/pir_lite_v8.yaml --resume --set name=v9_child_s${PSEED}_c$CSEED seed=$CSEED
