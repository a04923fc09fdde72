#!/bin/bash
# The main job: sets up the machine (tools/setup.sh), builds and runs the demo — for now the tiny
# character-level language model trained with Lyra's autograd (on a GPU when there is one).
# Extra arguments go to the demo, e.g. `bash tools/demo.sh --device=cpu --steps=500`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
bazel run -c opt --disk_cache="$HOME/.cache/lyra/bazel-disk" --ui_event_filters=-info,-stdout \
  --noshow_progress //train:tiny_lm -- "$@"
