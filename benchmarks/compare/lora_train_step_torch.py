#!/usr/bin/env python3
"""Times one training step of a Mamba-130M-shaped transformers model, full fine-tuning and PEFT
LoRA, on CUDA: the baseline of benchmarks/lora_train_step_benchmark.cc.

    python3 benchmarks/compare/lora_train_step_torch.py [--model mamba1] [--seq 512]
        [--modes full sll_lora] [--batch 8 --warmup 2 --iters 5 --max-seconds 120]

Models (from a config, random weights, nothing downloaded; FP32 master weights):
  mamba1  MambaForCausalLM: hidden 768, 24 layers, state 16, expand 2, conv 4, time_step_rank 48,
          vocab 50280, tied embeddings, no in/out_proj bias, conv bias (mamba-130m-hf's shape)
  mamba2  Mamba2ForCausalLM: hidden 768, 24 layers, 24 heads of 64, state 128, 1 group, chunk 256,
          vocab 50280, tied embeddings
The step, as the Lyra benchmark: random token ids [B, L] (drawn once), model(input_ids=ids,
labels=ids).loss under torch.autocast("cuda", bfloat16), backward (outside autocast),
clip_grad_norm_(trainable, 1.0), torch.optim.AdamW(trainable, lr 1e-4, weight_decay 0.01,
fused=True).step(), zero_grad(set_to_none=True).

Modes:
  full               every parameter trains
  sll_lora           PEFT LoraConfig(r=8, lora_alpha=16, lora_dropout=0) on x_proj, embeddings,
                     in_proj (mamba2: embeddings, in_proj). This is the reference's LoRA row, NOT
                     the paper's SLL set: PEFT refuses out_proj for Mamba models
                     (tuners_utils._check_lora_target_modules_mamba: "incompatible with
                     Mamba-based models", a rule about mamba_ssm's fused kernel, which reads
                     out_proj.weight behind the module). Lyra's sll_lora also adapts out_proj.
  sll_lora_out_proj  the paper's SLL set (x_proj, embeddings, in_proj, out_proj) with PEFT's
                     refusal bypassed during injection (as tools/fixtures/make_lora_fixtures.py
                     does): on the pure-PyTorch path out_proj is an ordinary module call, so
                     the adapter acts. The same targets as Lyra's sll_lora.
  frozen             every parameter frozen; inputs_embeds = embeddings(ids) detached and made to
                     require grad, so the whole backward runs without weight gradients and
                     without clip / AdamW: the floor LoRA adds to (Lyra's frozen mode).

Kernels: transformers uses mamba_ssm / causal-conv1d (or the `kernels` hub package) when
installed; the script says which. Without them (the GPU machine here) Mamba-1 runs
MambaMixer.slow_forward, a Python loop over L (benchmarks/compare/mamba_layer_torch.py measured
one layer at 8 x 2048: 6.3 s forward+backward, i.e. minutes per 24-layer step), and Mamba-2
its chunked torch_forward. --max-seconds bounds each configuration: after the first warm-up step
the number of timed steps is cut so that the configuration fits (at least one); the line says
how many ran. With mamba_ssm's fused training path, the reference measured that PEFT adapters on
x_proj / in_proj / out_proj do not change the output at all (shared/reference/h100-2026-11-23.md).

Memory: torch.cuda.reset_peak_memory_stats() before each timed step, max_memory_allocated()
after it (max over the timed steps): resident weights, gradients and AdamW state included, as
the Lyra benchmark's peak_GiB. peak bytes per token = peak / (B L) (the paper's MMPT).
Timing: CUDA events around each whole step, synchronised; median of the timed steps.
Prints one line per configuration; an out-of-memory configuration prints OOM and the next runs.
"""

import argparse
import contextlib
import importlib.util
import statistics
import sys
import time

import torch

GIB = float(2**30)
LORA_R = 8
LORA_ALPHA = 16
MAX_GRAD_NORM = 1.0


def make_model(name, device):
    if name == "mamba1":
        from transformers import MambaConfig, MambaForCausalLM
        config = MambaConfig(hidden_size=768, state_size=16, num_hidden_layers=24, expand=2,
                             conv_kernel=4, time_step_rank=48, use_bias=False, use_conv_bias=True,
                             vocab_size=50280, tie_word_embeddings=True)
        return MambaForCausalLM(config).to(device)
    from transformers import Mamba2Config, Mamba2ForCausalLM
    config = Mamba2Config(hidden_size=768, num_heads=24, head_dim=64, state_size=128, n_groups=1,
                          chunk_size=256, expand=2, conv_kernel=4, num_hidden_layers=24,
                          vocab_size=50280, tie_word_embeddings=True, use_bias=False,
                          use_conv_bias=True)
    return Mamba2ForCausalLM(config).to(device)


@contextlib.contextmanager
def allow_out_proj():
    """Within the block PEFT does not refuse out_proj as a LoRA target of Mamba models."""
    import peft
    base_tuner = peft.tuners.tuners_utils.BaseTuner
    orig = base_tuner._check_target_module_compatiblity
    base_tuner._check_target_module_compatiblity = lambda self, *args, **kwargs: None
    try:
        yield
    finally:
        base_tuner._check_target_module_compatiblity = orig


def apply_mode(model, model_name, mode):
    """Returns (model, trainable parameters) for the mode."""
    if mode == "full":
        return model, [p for p in model.parameters() if p.requires_grad]
    if mode == "frozen":
        for p in model.parameters():
            p.requires_grad_(False)
        return model, []
    from peft import LoraConfig, get_peft_model
    targets = ["x_proj", "embeddings", "in_proj"] if model_name == "mamba1" else [
        "embeddings", "in_proj"]
    guard = contextlib.nullcontext()
    if mode == "sll_lora_out_proj":
        targets = targets + ["out_proj"]
        guard = allow_out_proj()
    config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0,
                        target_modules=targets, task_type="CAUSAL_LM")
    with guard:
        model = get_peft_model(model, config)
    return model, [p for p in model.parameters() if p.requires_grad]


def embeddings_of(model):
    return model.get_input_embeddings()


def run_config(args, model_name, mode, seq, device):
    torch.manual_seed(0)
    model = make_model(model_name, device).train()
    total_params = sum(p.numel() for p in model.parameters())
    model, trainable = apply_mode(model, model_name, mode)
    n_trainable = sum(p.numel() for p in trainable)
    opt = (torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.01, fused=True)
           if trainable else None)
    ids = torch.randint(0, 50280, (args.batch, seq), device=device)
    embed = embeddings_of(model)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if mode == "frozen":
                embeds = embed(ids).detach().requires_grad_(True)
                loss = model(inputs_embeds=embeds, labels=ids).loss
            else:
                loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        if opt is not None:
            torch.nn.utils.clip_grad_norm_(trainable, MAX_GRAD_NORM)
            opt.step()
            opt.zero_grad(set_to_none=True)

    t0 = time.time()
    step()
    torch.cuda.synchronize()
    first_s = time.time() - t0
    for _ in range(args.warmup - 1):
        step()
    torch.cuda.synchronize()
    budget = args.max_seconds - first_s * args.warmup
    iters = max(1, min(args.iters, int(budget / max(first_s, 1e-9))))

    times, peak, reserved = [], 0, 0
    for _ in range(iters):
        torch.cuda.reset_peak_memory_stats()
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop))
        peak = max(peak, torch.cuda.max_memory_allocated())
        reserved = max(reserved, torch.cuda.max_memory_reserved())
    ms = statistics.median(times)
    tokens = args.batch * seq
    return ms, iters, peak, reserved, tokens, n_trainable, total_params


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["mamba1", "mamba2"], default="mamba1")
    parser.add_argument("--modes", nargs="+", default=["full", "sll_lora"],
                        choices=["full", "sll_lora", "sll_lora_out_proj", "frozen"])
    parser.add_argument("--seq", type=int, nargs="+", default=[512])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="time bound per configuration (warm-up included)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("lora_train_step_torch: no CUDA device", file=sys.stderr)
        return 1
    device = torch.device("cuda")
    kernel_packages = [p for p in ("mamba_ssm", "causal_conv1d", "kernels")
                       if importlib.util.find_spec(p) is not None]
    path = ("pure PyTorch" if not kernel_packages
            else "kernels may be used: " + ", ".join(kernel_packages) + " installed")
    import transformers
    try:
        import peft
        peft_version = peft.__version__
    except ImportError:
        peft_version = "not installed"

    for seq in args.seq:
        for mode in args.modes:
            label = f"torch {args.model} {mode} [{path}] bf16 autocast B={args.batch} L={seq}"
            try:
                ms, iters, peak, reserved, tokens, n_trainable, total = run_config(
                    args, args.model, mode, seq, device)
            except torch.cuda.OutOfMemoryError as e:
                print(f"{label}: OOM ({str(e).splitlines()[0]})", flush=True)
                torch.cuda.empty_cache()
                continue
            except ValueError as e:  # PEFT refusing a target
                print(f"{label}: refused: {e}", flush=True)
                continue
            print(f"{label}: {tokens / (ms / 1e3):.0f} tokens/s, {ms:.2f} ms/step (median of "
                  f"{iters}), peak {peak / GIB:.2f} GiB ({peak / tokens:.0f} bytes/token), "
                  f"reserved {reserved / GIB:.2f} GiB, trainable {n_trainable} of {total}",
                  flush=True)
            torch.cuda.empty_cache()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft "
          f"{peft_version}, {torch.cuda.get_device_name()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
