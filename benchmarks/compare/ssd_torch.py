#!/usr/bin/env python3
"""Times the Mamba-2 SSD chunked scan in PyTorch on CUDA, and transformers' Mamba2Mixer: the
baselines of benchmarks/ssd_benchmark.cc and benchmarks/mamba2_layer_benchmark.cc.

    python3 benchmarks/compare/ssd_torch.py [--batch 8 --seq 2048 --heads 24 --head-dim 64
                                             --state 128 --chunk 256 --iters 10]

1. The SSD alone (y = SSD(x, dt, A, B, C) + D x, dt' = softplus(dt + dt_bias), one group of B/C,
   no z), bf16 inputs: with mamba_ssm installed, its Triton mamba_chunk_scan_combined; otherwise
   the chunked algorithm written with torch ops (einsum, f32 accumulation — the same four steps
   as the kernels: chunk cumsums of dt'A, the masked quadratic diagonal blocks, chunk states, the
   inter-chunk recurrence and the off-diagonal term), forward and forward+backward.
2. One Mamba-2 130M-shaped transformers Mamba2Mixer layer (hidden 768, expand 2, head_dim 64,
   state 128, 1 group, chunk 256), FP32 masters under torch.autocast(bfloat16), forward and
   forward+backward. Without mamba_ssm / causal-conv1d it runs torch_forward (pure PyTorch).

Timing: CUDA events around each call, median of --iters after --warmup calls. Prints one line
per measurement.
"""

import argparse
import importlib.util
import statistics
import sys

import torch
import torch.nn.functional as F


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


def ssd_torch(x, dt, A, B, C, D, dt_bias, chunk):
    """Chunked SSD with torch ops. x [b, l, h, p], dt [b, l, h], A [h], B/C [b, l, n] (1 group),
    D / dt_bias [h]; l a multiple of chunk. Returns y [b, l, h, p] in x's dtype."""
    b, l, h, p = x.shape
    c = l // chunk
    dt = F.softplus(dt.float() + dt_bias)                        # [b, l, h]
    xs = x.float().reshape(b, c, chunk, h, p)
    Bs = B.float().reshape(b, c, chunk, -1)
    Cs = C.float().reshape(b, c, chunk, -1)
    dts = dt.reshape(b, c, chunk, h)
    dA = dts * A                                                 # [b, c, q, h]
    cum = torch.cumsum(dA, dim=2)                                # within-chunk cumulative sums
    # Diagonal blocks: y[l] = sum_{s <= l} (C_l . B_s) exp(cum_l - cum_s) dt_s x_s.
    seg = cum.unsqueeze(3) - cum.unsqueeze(2)                    # [b, c, q(l), q(s), h]
    mask = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool, device=x.device))
    decay = torch.exp(seg.masked_fill(~mask[None, None, :, :, None], float("-inf")))
    cb = torch.einsum("bcln,bcsn->bcls", Cs, Bs)
    y = torch.einsum("bcls,bclsh,bcsh,bcshp->bclhp", cb, decay, dts, xs)
    # Chunk states: S_c = sum_s exp(cum_end - cum_s) dt_s x_s B_s^T.
    tail = torch.exp(cum[:, :, -1:, :] - cum)                    # [b, c, q, h]
    states = torch.einsum("bcsh,bcsh,bcshp,bcsn->bchpn", tail, dts, xs, Bs)
    # Inter-chunk recurrence: the state entering chunk k.
    total = torch.exp(cum[:, :, -1, :])                          # [b, c, h]
    entering = [torch.zeros_like(states[:, 0])]
    for k in range(1, c):
        entering.append(entering[-1] * total[:, k - 1, :, None, None] + states[:, k - 1])
    entering = torch.stack(entering, dim=1)                      # [b, c, h, p, n]
    # Off-diagonal term: C_l S_in exp(cum_l).
    y = y + torch.einsum("bcln,bchpn,bclh->bclhp", Cs, entering, torch.exp(cum))
    y = y + xs * D[None, None, None, :, None]
    return y.reshape(b, l, h, p).to(x.dtype)


def ssd_sequential(x, dt, A, B, C, D, dt_bias):
    """The recurrence one step at a time (the oracle of ssd_torch), f64."""
    b, l, h, p = x.shape
    dt = F.softplus(dt.double() + dt_bias.double())
    S = torch.zeros(b, h, p, B.shape[-1], dtype=torch.float64, device=x.device)
    ys = []
    for t in range(l):
        a = torch.exp(dt[:, t] * A.double())                                # [b, h]
        S = S * a[:, :, None, None] + torch.einsum("bh,bhp,bn->bhpn", dt[:, t],
                                                   x[:, t].double(), B[:, t].double())
        ys.append(torch.einsum("bhpn,bn->bhp", S, C[:, t].double()) + D.double()[:, None] * x[:, t])
    return torch.stack(ys, dim=1)


def self_check(dev):
    """ssd_torch equals the sequential recurrence on a small f32 case (else the timing is moot)."""
    g = torch.Generator(device="cpu").manual_seed(1)
    b, l, h, p, n, q = 2, 64, 3, 8, 16, 16
    x = torch.randn(b, l, h, p, generator=g).to(dev)
    dt = (torch.randn(b, l, h, generator=g) * 0.5 - 1).to(dev)
    A = (-torch.rand(h, generator=g) * 2).to(dev)
    B, C = torch.randn(b, l, n, generator=g).to(dev), torch.randn(b, l, n, generator=g).to(dev)
    D, bias = torch.rand(h, generator=g).to(dev), torch.rand(h, generator=g).to(dev)
    y = ssd_torch(x, dt, A, B, C, D, bias, q).double()
    ref = ssd_sequential(x, dt, A, B, C, D, bias)
    err = ((y - ref).norm() / ref.norm()).item()
    if not err < 1e-5:
        raise SystemExit(f"ssd_torch self-check failed: relative error {err:.3g}")
    return err


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=24)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--state", type=int, default=128)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--skip-layer", action="store_true", help="only the SSD")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("ssd_torch: no CUDA device", file=sys.stderr)
        return 1
    dev = torch.device("cuda")
    check = self_check(dev)
    torch.manual_seed(0)
    b, l, h, p, n, q = args.batch, args.seq, args.heads, args.head_dim, args.state, args.chunk
    bf = torch.bfloat16
    x = torch.randn(b, l, h, p, device=dev, dtype=bf, requires_grad=True)
    dt = (torch.randn(b, l, h, device=dev) * 0.5 - 2).to(bf).requires_grad_()
    A = (-torch.rand(h, device=dev) * 4 - 0.5).requires_grad_()
    B = torch.randn(b, l, 1, n, device=dev, dtype=bf, requires_grad=True)
    C = torch.randn(b, l, 1, n, device=dev, dtype=bf, requires_grad=True)
    D = torch.rand(h, device=dev, requires_grad=True)
    dt_bias = (torch.rand(h, device=dev) - 4).requires_grad_()
    dy = torch.randn(b, l, h, p, device=dev, dtype=bf)
    shape = f"B={b} L={l} H={h} P={p} N={n} G=1 chunk={q} bf16"
    params = [x, dt, A, B, C, D, dt_bias]

    if importlib.util.find_spec("mamba_ssm") is not None:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined

        name = "mamba_ssm mamba_chunk_scan_combined (Triton)"

        def run():
            return mamba_chunk_scan_combined(x, dt, A, B, C, q, D=D, dt_bias=dt_bias,
                                             dt_softplus=True)
    else:
        name = "PyTorch ops (einsum chunked SSD; mamba_ssm is not installed)"

        def run():
            return ssd_torch(x, dt, A, B[:, :, 0], C[:, :, 0], D, dt_bias, q)

    def fwd():
        with torch.no_grad():
            run()

    def fwd_bwd():
        for t in params:
            t.grad = None
        run().backward(dy)

    f = time_ms(fwd, args.warmup, args.iters)
    fb = time_ms(fwd_bwd, args.warmup, args.iters)
    print(f"SSD [{name}] {shape}: forward {f:.3f} ms, forward+backward {fb:.3f} ms "
          f"(median of {args.iters}; torch {torch.__version__}, {torch.cuda.get_device_name()}; "
          f"chunked torch SSD vs sequential recurrence: rel. error {check:.1e})")

    if args.skip_layer:
        return 0
    from transformers import Mamba2Config
    from transformers.models.mamba2 import modeling_mamba2

    config = Mamba2Config(hidden_size=768, expand=2, head_dim=64, num_heads=24, state_size=128,
                          n_groups=1, chunk_size=256, conv_kernel=4, use_bias=False,
                          use_conv_bias=True, num_hidden_layers=1, vocab_size=50280)
    mixer = modeling_mamba2.Mamba2Mixer(config, layer_idx=0).to(dev).train()
    kernel_packages = [k for k in ("mamba_ssm", "causal_conv1d", "kernels")
                       if importlib.util.find_spec(k) is not None]
    path = ("pure PyTorch torch_forward" if not kernel_packages
            else "kernels may be used: " + ", ".join(kernel_packages) + " installed")
    hs = torch.randn(b, l, 768, device=dev, requires_grad=True)
    dout = torch.randn(b, l, 768, device=dev, dtype=bf)

    def layer_fwd():
        with torch.no_grad(), torch.autocast("cuda", dtype=bf):
            mixer(hs)

    def layer_fwd_bwd():
        hs.grad = None
        for t in mixer.parameters():
            t.grad = None
        with torch.autocast("cuda", dtype=bf):
            y = mixer(hs)
        y.backward(dout)

    torch.cuda.reset_peak_memory_stats()
    lf = time_ms(layer_fwd, args.warmup, args.iters)
    lfb = time_ms(layer_fwd_bwd, args.warmup, args.iters)
    peak = torch.cuda.max_memory_allocated() / 2**30
    print(f"transformers Mamba2Mixer [{path}] bf16 autocast B={b} L={l} M=768 D=1536 H=24 P=64 "
          f"N=128 G=1 chunk=256: forward {lf:.3f} ms, forward+backward {lfb:.3f} ms "
          f"(median of {args.iters}; peak {peak:.1f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
