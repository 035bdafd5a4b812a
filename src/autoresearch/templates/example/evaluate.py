"""Read-only evaluate phase of the `example` task: the number that counts.

It runs after train.py, in a process of its own, and reads only the weights train.py saved in
$AUTORESEARCH_OUT. So whatever train.py prints, the metric is computed here, by locked code.
"""

import json
import math
import os
import sys

from prepare import DEGREE_MAX, val_loss

path = os.path.join(os.environ.get("AUTORESEARCH_OUT", "."), "weights.json")
try:
    with open(path) as fh:
        weights = json.load(fh)
except (OSError, ValueError) as exc:
    print(f"evaluate: no readable weights.json ({exc})")
    sys.exit(1)
if not isinstance(weights, list) or not 1 <= len(weights) <= DEGREE_MAX + 1 \
        or not all(isinstance(w, (int, float)) for w in weights):
    print("reject: bad-weights")  # not what train.py writes: something else wrote this file
    sys.exit(0)
if not all(math.isfinite(w) for w in weights):
    print("val_loss: nan")  # training diverged: a crash (non-finite metric), not a cheat
    sys.exit(0)
print(f"val_loss: {val_loss([float(w) for w in weights]):.6f}")
