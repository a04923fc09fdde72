#!/usr/bin/env python3
"""Times one Mamba-130M-shaped layer of transformers (MambaMixer) on CUDA: the baseline of
benchmarks/mamba_layer_benchmark.cc.

    python3 benchmarks/compare/mamba_layer_torch.py [--batch 8 --seq 2048 --iters 10]

Shape: M=768 (hidden), D=1536 (expand 2), N=16 (state), K=4 (conv), R=48 (time_step_rank), no
in/out_proj bias, conv bias (the state-spaces/mamba-130m-hf layout); B=8, L=2048. FP32 master
weights and an FP32 input [B, L, M] under torch.autocast(bfloat16), as a training step runs it.
mamba_ssm, causal-conv1d and the `kernels` hub package are not installed on the GPU machine, so
MambaMixer.forward takes the pure-PyTorch path (F.conv1d, then mamba_selective_scan's Python loop
over L on [B, D, L, N] f32 tensors); the script checks which packages exist and says so.
Measured on the H200 (torch 2.11.0, transformers 5.17.0): forward 121 ms, forward+backward
6290 ms.

Timing: CUDA events around each call, median of --iters after --warmup calls, nothing else in the
timed region; forward under no_grad, forward+backward with a random bf16 output gradient (grads
of the input and every parameter). Prints one line per measurement.
"""

import argparse
import importlib.util
import statistics
import sys

import torch
from transformers import MambaConfig
from transformers.models.mamba import modeling_mamba


def time_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("mamba_layer_torch: no CUDA device", file=sys.stderr)
        return 1

    config = MambaConfig(hidden_size=768, state_size=16, expand=2, conv_kernel=4,
                         time_step_rank=48, use_bias=False, use_conv_bias=True,
                         num_hidden_layers=1, vocab_size=50280)
    torch.manual_seed(0)
    device = torch.device("cuda")
    mixer = modeling_mamba.MambaMixer(config, layer_idx=0).to(device).train()
    # transformers 5.x loads mamba_ssm / causal-conv1d kernels from the `kernels` hub package
    # (or an installed mamba_ssm) and falls back to its pure-PyTorch functions without them.
    kernel_packages = [p for p in ("mamba_ssm", "causal_conv1d", "kernels")
                       if importlib.util.find_spec(p) is not None]
    path = ("pure PyTorch" if not kernel_packages
            else "kernels may be used: " + ", ".join(kernel_packages) + " installed")

    b, l, m = args.batch, args.seq, config.hidden_size
    x = torch.randn(b, l, m, device=device, requires_grad=True)
    dy = torch.randn(b, l, m, device=device, dtype=torch.bfloat16)

    def forward():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            mixer(x)

    def forward_backward():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            y = mixer(x)
        y.backward(dy)

    def clear_grads():
        x.grad = None
        for p in mixer.parameters():
            p.grad = None

    fwd = time_ms(forward, args.warmup, args.iters)
    fwd_bwd = time_ms(lambda: (clear_grads(), forward_backward()), args.warmup, args.iters)
    peak = torch.cuda.max_memory_allocated() / 2**30
    shape = (f"B={b} L={l} M={m} D={config.intermediate_size} N={config.state_size} "
             f"K={config.conv_kernel} R={config.time_step_rank}")
    print(f"transformers MambaMixer [{path}] bf16 autocast {shape}: forward {fwd:.3f} ms, "
          f"forward+backward {fwd_bwd:.3f} ms (median of {args.iters}; peak {peak:.1f} GiB; "
          f"torch {torch.__version__}, {torch.cuda.get_device_name()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
