#!/usr/bin/env python3
"""Regenerates the srcs and deps of the two all-in-one GPU binaries from the per-folder BUILD files:

    python3 tools/gen_gpu_targets.py

- //tests:gpu_tests (tests/BUILD): every non-manual cc_test source of tests/*/BUILD (each must be
  listed in its package's exports_files) and the union of their deps;
- //benchmarks:all_benchmarks (benchmarks/BUILD): every non-manual cc_binary source of
  benchmarks/BUILD and the union of their deps.

One binary each keeps the GPU upload small (every staged binary carries every kernel); see
tools/gpu_check.sh. Run it after adding a test suite or a benchmark, then commit the two BUILD files.
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def targets(path, kind):
    """(name, .cc srcs, deps) of every `kind(...)` rule in `path` that is not tagged manual."""
    text = open(path).read()
    found = []
    for m in re.finditer(kind + r"\(\n(.*?)\n\)", text, re.S):
        body = m.group(1)
        if 'tags = ["manual"]' in body:
            continue
        name = re.search(r'name = "([^"]+)"', body).group(1)
        srcs = re.findall(r'"([^"]+\.cc)"', re.search(r"srcs = \[(.*?)\]", body, re.S).group(1))
        deps_list = re.search(r"deps = \[(.*?)\]", body, re.S)
        deps = re.findall(r'"([^"]+)"', deps_list.group(1)) if deps_list else []
        found.append((name, srcs, deps))
    return found


def absolute(dep, package):
    return "//" + package + dep if dep.startswith(":") else dep


def listing(items):
    return "".join('        "%s",\n' % item for item in items)


def main():
    os.chdir(ROOT)
    srcs, deps = [], set()
    for build in sorted(glob.glob("tests/*/BUILD")):
        package = os.path.dirname(build)
        if package == "tests/testing":
            continue
        exported = set()
        for m in re.finditer(r"exports_files\(\[(.*?)\]\)", open(build).read(), re.S):
            exported |= set(re.findall(r'"([^"]+)"', m.group(1)))
        for name, files, rule_deps in targets(build, "cc_test"):
            for f in files:
                if f not in exported:
                    sys.exit(f"{build}: {f} (of {name}) is not in exports_files")
                srcs.append(f"//{package}:{f}")
            deps |= {absolute(d, package) for d in rule_deps}
    deps.discard("@system//:gtest_main")
    text = open("tests/BUILD").read()
    text = re.sub(r"srcs = \[\n.*?    \]", "srcs = [\n" + listing(srcs) + "    ]", text, flags=re.S)
    text = re.sub(r"deps = \[\n.*?    \]",
                  "deps = [\n" + listing(sorted(deps) + ["@system//:gtest_main"]) + "    ]",
                  text, flags=re.S)
    open("tests/BUILD", "w").write(text)

    text = open("benchmarks/BUILD").read()
    bench_srcs, bench_deps = [], set()
    for _, files, rule_deps in targets("benchmarks/BUILD", "cc_binary"):
        bench_srcs += files
        bench_deps |= {absolute(d, "benchmarks") for d in rule_deps}
    bench_deps.discard("@system//:benchmark_main")
    m = re.search(r'(    name = "all_benchmarks",\n    srcs = \[\n).*?'
                  r'(    \],\n    tags = \["manual"\],\n    deps = \[\n).*?(    \],\n\))', text, re.S)
    text = (text[:m.start()] + m.group(1) + listing(bench_srcs) + m.group(2) +
            listing(sorted(bench_deps) + ["@system//:benchmark_main"]) + m.group(3) + text[m.end():])
    open("benchmarks/BUILD", "w").write(text)
    print(f"{len(srcs)} test files; {len(bench_srcs)} benchmark files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
