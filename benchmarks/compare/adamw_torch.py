#!/usr/bin/env python3
"""Replays a Lyra AdamW trajectory in torch.optim.AdamW and prints how far the results differ.

    bazel run //benchmarks/compare:adamw_trajectory -- --out=/tmp/adamw_trajectory.safetensors
    python3 benchmarks/compare/adamw_torch.py /tmp/adamw_trajectory.safetensors [--device cpu]

The file (written by benchmarks/compare/adamw_trajectory.cc) holds the initial parameters
("init.<name>", f32), a pool of bf16 gradient sets ("pool.<k>.<name>"), one f64 scale per step
("scale") and Lyra's final parameters ("final.<name>"); the gradient of step t is
f32(pool[t % pool_size]) * f32(scale[t]). This script runs torch.optim.AdamW (foreach=False, f32,
the metadata's hyper-parameters) from the same initial parameters with the same gradients and
prints, per parameter and overall, the max abs and max relative difference of the final
parameters, next to the size of the total update for scale. Both run the same f32 operations, so
differences should be a few f32 ulps of the parameters (torch's CUDA kernels may fuse
multiply-adds where Lyra's do not).
"""

import argparse
import json
import struct
import sys

import torch

_DTYPES = {
    "F32": torch.float32,
    "F64": torch.float64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
}


def read_safetensors(path):
    """Returns ({name: tensor}, metadata) without the safetensors package."""
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    buffer = memoryview(data)[8 + header_len :]
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        dtype = _DTYPES[entry["dtype"]]
        flat = torch.frombuffer(bytearray(buffer[begin:end]), dtype=dtype)
        tensors[name] = flat.reshape(entry["shape"])
    return tensors, metadata


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trajectory", help="file written by //benchmarks/compare:adamw_trajectory")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    tensors, meta = read_safetensors(args.trajectory)
    steps = int(meta["steps"])
    pool_size = int(meta["pool_size"])
    beta1, beta2 = (float(b) for b in meta["betas"].split(","))
    names = [key[len("init.") :] for key in tensors if key.startswith("init.")]
    device = torch.device(args.device)

    params = [tensors["init." + n].clone().to(device).requires_grad_(True) for n in names]
    pool = [
        [tensors[f"pool.{k}.{n}"].to(device).float() for n in names] for k in range(pool_size)
    ]
    scales = tensors["scale"].tolist()
    opt = torch.optim.AdamW(
        params,
        lr=float(meta["lr"]),
        betas=(beta1, beta2),
        eps=float(meta["eps"]),
        weight_decay=float(meta["weight_decay"]),
        foreach=False,
    )
    for t in range(steps):
        for p, g in zip(params, pool[t % pool_size]):
            p.grad = g * scales[t]
        opt.step()

    print(
        f"torch {torch.__version__} on {device} vs Lyra on {meta['device']}: "
        f"{steps} AdamW steps, lr {meta['lr']}, weight_decay {meta['weight_decay']}"
    )
    worst_abs = worst_rel = 0.0
    for n, p in zip(names, params):
        ours = tensors["final." + n].double()
        theirs = p.detach().cpu().double()
        init = tensors["init." + n].double()
        diff = (ours - theirs).abs()
        max_abs = diff.max().item()
        max_rel = (diff / theirs.abs().clamp_min(1e-30)).max().item()
        update = (theirs - init).abs().max().item()
        worst_abs, worst_rel = max(worst_abs, max_abs), max(worst_rel, max_rel)
        print(
            f"  {n:12s} {list(p.shape)!s:12s} max abs diff {max_abs:.3e}  max rel diff "
            f"{max_rel:.3e}  (max |update| {update:.3e})"
        )
    print(f"overall: max abs diff {worst_abs:.3e}, max rel diff {worst_rel:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
