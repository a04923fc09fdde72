"""Repository rule for the local CUDA toolkit.

The toolkit path defaults to /usr/local/cuda; set LYRA_CUDA_PATH (e.g. in .bazelrc.user:
`build --repo_env=LYRA_CUDA_PATH=/opt/cuda-13.0`) for a toolkit elsewhere.
"""

def _cuda_configure_impl(ctx):
    path = ctx.os.environ.get("LYRA_CUDA_PATH", "/usr/local/cuda")
    if not ctx.path(path + "/bin/nvcc").exists:
        fail("CUDA toolkit not found: %s/bin/nvcc does not exist (set LYRA_CUDA_PATH)" % path)
    ctx.symlink(path + "/include", "include")
    ctx.symlink(path + "/lib64", "lib64")
    ctx.symlink(path + "/bin", "bin")
    ctx.file("BUILD", """
package(default_visibility = ["//visibility:public"])

cc_library(
    name = "cuda_headers",
    hdrs = glob(["include/**"]),
    includes = ["include"],
)

# The runtime, cuBLAS(Lt), cuDNN and NCCL. Linked dynamically: the GPU machine has them.
cc_library(
    name = "cuda",
    deps = [":cuda_headers"],
    linkopts = [
        "-L{lib}", "-lcudart", "-lcublas", "-lcublasLt", "-lcudnn", "-lnccl",
        "-Wl,-rpath,{lib}", "-ldl", "-lrt", "-lpthread",
    ],
)

filegroup(
    name = "nvcc",
    srcs = ["bin/nvcc"],
)

filegroup(
    name = "toolkit",
    srcs = glob(["bin/**", "nvvm/**"], allow_empty = True),
)
""".format(lib = path + "/lib64"))
    ctx.file("defs.bzl", "NVCC = \"%s/bin/nvcc\"\n" % path)
    # nvcc looks for nvvm/ next to bin/.
    if ctx.path(path + "/nvvm").exists:
        ctx.symlink(path + "/nvvm", "nvvm")

cuda_configure = repository_rule(
    implementation = _cuda_configure_impl,
    environ = ["LYRA_CUDA_PATH"],
    local = True,
)
