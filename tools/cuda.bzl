"""`cuda_library`: compiles .cu files with nvcc into a cc_library.

Each .cu becomes one object (one nvcc process, so nvcc runs in parallel across files). Headers
come from `deps` (their CcInfo), so a kernel file includes project headers by their workspace
path, like any other source file.
"""

load("@local_cuda//:defs.bzl", "NVCC")

GENCODE_ALL = [
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_80,code=compute_80",
]

GENCODE_SM90 = ["-gencode=arch=compute_90a,code=sm_90a"]

def _cuda_objects_impl(ctx):
    cc_infos = [d[CcInfo] for d in ctx.attr.deps]
    headers = depset(
        ctx.files.hdrs,
        transitive = [c.compilation_context.headers for c in cc_infos],
    )
    includes = []
    for c in cc_infos:
        cc = c.compilation_context
        for d in cc.includes.to_list() + cc.system_includes.to_list():
            includes.append("-I" + d)
        for d in cc.quote_includes.to_list():
            includes.append("-I" + d)
    includes += ["-I.", "-I" + ctx.bin_dir.path, "-I" + ctx.genfiles_dir.path]
    outs = []
    for src in ctx.files.srcs:
        out = ctx.actions.declare_file("_cuda_objs/%s/%s.o" % (ctx.label.name, src.basename[:-3]))
        args = [
            "-c",
            src.path,
            "-o",
            out.path,
            "-std=c++20",
            "-O3",
            "--expt-relaxed-constexpr",
            "--extended-lambda",
            "-Xcompiler",
            "-fPIC",
            "-Xcompiler",
            "-Wno-deprecated-declarations",
            "-DLYRA_CUDA_KERNELS=1",
        ] + ctx.attr.gencode + ctx.attr.copts + includes
        ctx.actions.run(
            executable = NVCC,
            arguments = args,
            inputs = depset([src], transitive = [headers]),
            outputs = [out],
            mnemonic = "Nvcc",
            progress_message = "nvcc %s" % src.short_path,
            use_default_shell_env = True,
        )
        outs.append(out)
    return [DefaultInfo(files = depset(outs))]

_cuda_objects = rule(
    implementation = _cuda_objects_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cu"]),
        "hdrs": attr.label_list(allow_files = [".h", ".cuh"]),
        "deps": attr.label_list(providers = [CcInfo]),
        "gencode": attr.string_list(),
        "copts": attr.string_list(),
    },
)

def cuda_library(name, srcs, hdrs = [], deps = [], copts = [], visibility = None, **kwargs):
    """A cc_library whose sources are .cu files compiled by nvcc.

    hdrs: headers the library exports (and that its .cu files may include).
    deps: cc_library targets whose headers the .cu files include and whose code they call.
    """
    _cuda_objects(
        name = name + "_objs",
        srcs = srcs,
        hdrs = hdrs,
        deps = deps + ["@local_cuda//:cuda_headers"],
        gencode = select({
            "//tools:cuda_archs_sm90": GENCODE_SM90,
            "//conditions:default": GENCODE_ALL,
        }),
        copts = copts + select({
            "//tools:cuda_lineinfo": ["-lineinfo"],
            "//conditions:default": [],
        }),
    )
    native.cc_library(
        name = name,
        srcs = [":" + name + "_objs"],
        hdrs = hdrs,
        deps = deps + ["@local_cuda//:cuda"],
        visibility = visibility,
        alwayslink = True,
        **kwargs
    )
