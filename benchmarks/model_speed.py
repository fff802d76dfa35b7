"""Training and sampling speed at the paper's MNIST configuration (T=64, 256/256 LSTMs, z=100, read 2,
write 5, batch 100), with and without attention: the straightforward reference model, the fused model,
and the fused model compiled 8 drawing steps per graph; sampling step by step (eager, compiled) and as
one LSTM call; on a GPU, batch size x precision x compile x CUDA graph of the full training step.
Variants are timed interleaved, side by side in one process.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import torch

from draw_service.model import DRAW, DRAWConfig
from draw_service.model.reference import ReferenceDRAW, fast_state_dict

from .common import BATCH, MNIST_SHAPE, PAPER, best_time, say


def _train_step(model, x, eps, device: str):
    """One forward and backward pass of `model` (the reference returns the loss terms as a tuple)."""
    def run():
        out = model(x, eps)
        loss = out[0] + out[1] if isinstance(out, tuple) else out.loss
        loss.mean().backward()
        if device == "cuda":
            torch.cuda.synchronize()
    return run


def bench_model(repeats: int, compile_step: bool, device: str) -> dict[str, Any]:
    out = {}
    for attention in (True, False):
        cfg = DRAWConfig(attention=attention, **PAPER)
        torch.manual_seed(0)
        ref = ReferenceDRAW(cfg, MNIST_SHAPE).to(device)
        fast = DRAW(cfg, MNIST_SHAPE).to(device)
        fast.load_state_dict(fast_state_dict(ref))
        x = torch.bernoulli(torch.rand(BATCH, 1, 28, 28, device=device))
        eps = torch.randn(cfg.T, BATCH, cfg.z_size, device=device)

        runs = {"reference": _train_step(ref, x, eps, device), "fused": _train_step(fast, x, eps, device)}
        if compile_step:
            compiled = DRAW(cfg, MNIST_SHAPE).to(device)
            compiled.load_state_dict(fast.state_dict())
            compiled.compile_step()
            runs["fused+compiled"] = _train_step(compiled, x, eps, device)
            t = time.perf_counter()
            runs["fused+compiled"]()
            say(f"  compiled the step in {time.perf_counter() - t:.0f} s")
        for run in runs.values():
            run()  # warm up
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):  # interleaved, so a noisy moment hurts every variant alike
            for name, run in runs.items():
                samples[name].append(best_time(run, 1, inner=2))
        times = {name: min(ts) for name, ts in samples.items()}
        medians = {name: statistics.median(ts) for name, ts in samples.items()}
        with torch.inference_mode():
            decode_eps = torch.randn(cfg.T, BATCH, cfg.z_size, device=device)
            # step by step (eager, and compiled in blocks of 8), and the whole decode as one LSTM call
            decoders = {"stepwise": fast.decode_stepwise, "one_lstm_call": fast.decode}
            if compile_step:
                decoders["stepwise+compiled"] = compiled.decode_stepwise
            if device == "cuda":  # what a Serve replica on a GPU does: the decode replayed as a CUDA graph
                from draw_service.model.cuda_graph_decoder import GraphedDecoder

                decoders["cuda_graph"] = GraphedDecoder(fast)
            sample_runs = {}
            for name, decoder in decoders.items():
                def decode(decoder=decoder, decode_eps=decode_eps):
                    decoder(decode_eps)
                    if device == "cuda":
                        torch.cuda.synchronize()

                decode()  # warm up (and compile)
                sample_runs[name] = decode
            sample_times: dict[str, list[float]] = {name: [] for name in sample_runs}
            for _ in range(repeats):  # interleaved, like the training variants
                for name, decode in sample_runs.items():
                    sample_times[name].append(best_time(decode, 1, inner=3))
            sample_s = {name: min(ts) for name, ts in sample_times.items()}
        key = "attention" if attention else "no_attention"
        train = {name: round(BATCH / t, 1) for name, t in times.items()}
        sample = {name: round(BATCH / t, 1) for name, t in sample_s.items()}
        out[key] = {
            "train_images_per_s": train,
            "speedup_vs_reference": {name: round(v / train["reference"], 2) for name, v in train.items()},
            # The median over the interleaved repeats: steadier than the best on a shared VM.
            "speedup_vs_reference_median": {name: round(medians["reference"] / t, 2) for name, t in medians.items()},
            "sample_images_per_s": sample,
            "one_lstm_call_vs_stepwise": round(sample["one_lstm_call"] / sample["stepwise"], 2),
            "one_lstm_call_vs_stepwise_median": round(statistics.median(sample_times["stepwise"])
                                                      / statistics.median(sample_times["one_lstm_call"]), 2),
            # The fastest generation against the fastest training step, per image.
            "sampling_vs_training_per_image": round(max(sample.values()) / max(train.values()), 1),
        }
        say(f"  {key}: {json.dumps(out[key])}")
    result = {"config": {**PAPER, "batch_size": BATCH, "device": device}, **out}
    if device == "cuda":
        result["gpu_scaling"] = bench_gpu_scaling(repeats, compile_step)
    return result


def bench_gpu_scaling(repeats: int, compile_step: bool) -> dict[str, Any]:
    """The GPU path users switch on, as full training steps (forward, backward, clipping, Adam) of the
    attention model: batch size x precision (bf16 autocast) x torch.compile x CUDA graph of the step."""
    from draw_service.train.step import EagerStep, GraphedStep

    variants = [(100, "fp32", c, g) for c in (False, True) for g in (False, True)]
    variants += [(100, "bf16", True, True)]
    variants += [(1000, "fp32", c, g) for c in (False, True) for g in (False, True)] + [(1000, "bf16", True, True)]
    variants += [(4000, "fp32", False, False), (4000, "fp32", True, True), (4000, "bf16", True, True)]
    out: dict[str, Any] = {}
    cfg = DRAWConfig(attention=True, **PAPER)
    for batch, precision, compiled, graphs in variants:
        if compiled and not compile_step:
            continue
        name = f"batch_{batch}_{precision}" + ("_compiled" if compiled else "") + ("_cuda_graph" if graphs else "")
        try:
            torch._dynamo.reset()  # each variant compiles afresh (and never hits the recompile limit)
            torch.manual_seed(0)
            model = DRAW(cfg, MNIST_SHAPE).cuda()
            if compiled:
                model.compile_step()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            step = (GraphedStep if graphs else EagerStep)(model, opt, 10.0, precision == "bf16")
            x = torch.bernoulli(torch.rand(batch, 1, 28, 28, device="cuda"))
            eps = torch.randn(cfg.T, batch, cfg.z_size, device="cuda")

            def run(step=step, x=x, eps=eps):
                step(x, eps)
                torch.cuda.synchronize()
            run()
            run()
            out[name] = round(batch / best_time(run, repeats, inner=5), 1)
        except Exception as e:  # a variant that fails is reported, not fatal to the whole bench
            out[name] = f"failed: {type(e).__name__}: {str(e)[:300]}"
        say(f"  {name}: {out[name]}")
    return out


