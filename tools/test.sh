#!/bin/bash
# Sets up the machine (tools/setup.sh), then builds and runs every test. Tests that need a GPU
# skip with the reason when there is none. Extra arguments go to `bazel test`, e.g.
#   bash tools/test.sh --config=sanitize        # the whole suite under ASan + UBSan
# A Bazel disk cache in ~/.cache/lyra lets a fresh clone reuse earlier builds; the tests themselves
# always run (no cached results).
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh || exit 1
log=$(mktemp)
bazel test --disk_cache="$HOME/.cache/lyra/bazel-disk" --nocache_test_results --test_summary=short \
  --noshow_progress "$@" //... 2>&1 | tee "$log" | grep -vE '^(INFO|Loading|Analyzing)'
status=${PIPESTATUS[0]}
passed=$(grep -cE '^//.* PASSED' "$log")
failed=$(grep -cE '^//.* (FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' "$log")
rm -f "$log"
echo "tests: $passed passed, $failed failed"
exit "$status"
