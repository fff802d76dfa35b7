"""The switchable speed paths (bf16 autocast, the learning-rate rules, the CUDA-graph step), checked for
correctness on the CPU where they can be; the CUDA-graph step needs a GPU and is checked there (it runs on
the lent GPU machines, not in CPU-only CI). torch.compile is checked in tests/integration/test_compiled.py."""

import pytest
import torch
from tiny import SHAPE, TINY, loss_and_grads

from draw_service.model import DRAW
from draw_service.train.config import TrainConfig
from draw_service.train.step import EagerStep, GraphedStep


def test_bf16_autocast_stays_close_to_fp32():
    torch.manual_seed(0)
    model = DRAW(TINY, SHAPE)
    x, eps = torch.rand(16, 3, 12, 20), torch.randn(TINY.T, 16, TINY.z_size)
    loss32, _ = loss_and_grads(model, x, eps)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, eps)
    out.loss.mean().backward()
    assert out.loss.dtype == torch.float32  # the loss terms are reduced in fp32
    assert torch.allclose(out.loss.detach(), loss32, rtol=2e-2)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_learning_rate_rule_for_large_batches():
    assert TrainConfig(batch_size=400, lr=1e-3, lr_scaling="linear").effective_lr() == pytest.approx(4e-3)
    assert TrainConfig(batch_size=400, lr=1e-3, lr_scaling="sqrt").effective_lr() == pytest.approx(2e-3)
    assert TrainConfig(batch_size=400, lr=1e-3).effective_lr() == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lr_scaling"):
        TrainConfig(lr_scaling="cubic")


def test_eager_step_trains_and_reports_its_terms():
    torch.manual_seed(0)
    model = DRAW(TINY, SHAPE)
    before = [p.detach().clone() for p in model.parameters()]
    step = EagerStep(model, torch.optim.Adam(model.parameters(), lr=1e-3), grad_clip=1.0, bf16=False)
    x = torch.rand(4, 3, 12, 20)
    loss, recon, kl, grad_norm = step(x, torch.randn(TINY.T, 4, TINY.z_size))
    torch.testing.assert_close(loss, recon + kl)
    assert grad_norm > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_a_kl_weight_changes_the_objective_but_not_the_reported_bound():
    """With the KL term weighted w, the step follows the gradient of recon + w·kl and reports recon + kl."""
    torch.manual_seed(0)
    x, eps = torch.rand(4, 3, 12, 20), torch.randn(TINY.T, 4, TINY.z_size)
    grads = {}
    for w in (0.0, 0.25, 1.0):
        torch.manual_seed(0)
        model = DRAW(TINY, SHAPE)
        step = EagerStep(model, torch.optim.SGD(model.parameters(), lr=0.0), grad_clip=0.0, bf16=False)
        step.set_kl_weight(w)
        loss, recon, kl, _ = step(x, eps)
        torch.testing.assert_close(loss, recon + kl)  # the whole bound, whatever the weight
        assert kl > 0
        grads[w] = torch.cat([p.grad.flatten() for p in model.parameters()])
    # the gradient is linear in w: g(w) = g_recon + w·g_kl
    torch.testing.assert_close(grads[0.25], grads[0.0] + 0.25 * (grads[1.0] - grads[0.0]), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(grads[0.0], grads[1.0])


def test_cuda_graphs_refuse_a_cpu_run():
    with pytest.raises(ValueError, match="cuda_graphs needs a GPU"):
        TrainConfig(device="cpu", cuda_graphs=True)


def test_graphed_step_refuses_a_model_on_the_cpu():
    model = DRAW(TINY, SHAPE)
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        GraphedStep(model, torch.optim.Adam(model.parameters()), grad_clip=1.0, bf16=False)


def test_cuda_graphs_need_gpus_but_not_a_single_worker(tmp_path):
    from draw_service.train.config import RayConfig
    from draw_service.train.on_ray import preflight

    with pytest.raises(ValueError, match="cuda_graphs captures a GPU step"):  # workers on CPUs
        preflight(TrainConfig(cuda_graphs=True, out=str(tmp_path / "a"), ray=RayConfig(num_workers=2)))
    # several GPU workers: the graphed step under DDP is accepted
    preflight(TrainConfig(cuda_graphs=True, out=str(tmp_path / "b"), ray=RayConfig(num_workers=4, gpus_per_worker=1)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs a GPU")
@pytest.mark.parametrize("attention", [True, False])
def test_cuda_graph_step_gives_the_eager_numbers(attention):
    cfg = TINY.replace(attention=attention)
    torch.manual_seed(0)
    models = [DRAW(cfg, SHAPE).cuda() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    steps = [kind(m, torch.optim.Adam(m.parameters(), lr=1e-3), 1.0, False)
             for kind, m in zip((EagerStep, GraphedStep), models)]
    g = torch.Generator("cuda").manual_seed(1)
    for i in range(5):  # the warm-up before capture must leave no trace: every step matches
        for step in steps:  # a KL warm-up: the graph must read the weight set before each replay
            step.set_kl_weight(min(1.0, 0.3 * (i + 1)))
        x = torch.rand(8, 3, 12, 20, generator=g, device="cuda")
        eps = torch.randn(cfg.T, 8, cfg.z_size, generator=g, device="cuda")
        eager, graphed = (step(x, eps) for step in steps)
        for e, c in zip(eager, graphed):
            torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-4)
    for pe, pc in zip(*(m.parameters() for m in models)):
        torch.testing.assert_close(pc, pe, rtol=1e-4, atol=1e-5)


def test_graphed_decoder_refuses_a_cpu_model():
    from draw_service.model.cuda_graph_decoder import GraphedDecoder

    with pytest.raises(ValueError, match="CUDA device"):
        GraphedDecoder(DRAW(TINY, SHAPE))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs a GPU")
def test_graphed_decoder_gives_the_eager_images():
    from draw_service.model.cuda_graph_decoder import GraphedDecoder

    torch.manual_seed(0)
    model = DRAW(TINY, SHAPE).cuda()
    decoder = GraphedDecoder(model)
    for n in (1, 3, 8, 5):  # buckets 1, 4, 8, and 8 again (padded)
        eps = torch.randn(TINY.T, n, TINY.z_size, device="cuda")
        with torch.inference_mode():
            expected, _ = model.decode(eps)
        torch.testing.assert_close(decoder(eps), expected, rtol=1e-4, atol=1e-5)
    assert sorted(decoder._graphs) == [1, 4, 8]
    with pytest.raises(ValueError, match="latents of shape"):
        decoder(torch.randn(TINY.T + 1, 2, TINY.z_size, device="cuda"))


def test_compile_step_refuses_a_block_of_no_steps():
    with pytest.raises(ValueError, match="steps_per_call must be >= 1"):
        DRAW(TINY, SHAPE).compile_step(steps_per_call=0)
    with pytest.raises(ValueError, match="compile_steps must be >= 1"):
        TrainConfig(compile=True, compile_steps=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph needs a GPU")
def test_a_one_rank_ddp_graphed_step_gives_the_single_gpu_graphed_numbers(monkeypatch):
    """World size 1 over NCCL: DDP built on a side stream, its all-reduce inside the captured graph."""
    import socket

    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCH_NCCL_ASYNC_ERROR_HANDLING": "0"}.items():
        monkeypatch.setenv(k, v)
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        models = [DRAW(TINY, SHAPE).cuda() for _ in range(2)]
        models[1].load_state_dict(models[0].state_dict())
        side = torch.cuda.Stream()
        with torch.cuda.stream(side):
            ddp = torch.nn.parallel.DistributedDataParallel(models[1], device_ids=[0])
        torch.cuda.current_stream().wait_stream(side)
        steps = [GraphedStep(net, torch.optim.Adam(net.parameters(), lr=1e-3), 1.0, False)
                 for net in (models[0], ddp)]
        assert steps[1].warmup == GraphedStep.DDP_WARMUP
        g = torch.Generator("cuda").manual_seed(1)
        for _ in range(5):
            x = torch.rand(8, *SHAPE, generator=g, device="cuda")
            eps = torch.randn(TINY.T, 8, TINY.z_size, generator=g, device="cuda")
            single, distributed = (step(x, eps) for step in steps)
            for a, b in zip(single, distributed):
                torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)
        for pa, pb in zip(models[0].parameters(), models[1].parameters()):
            torch.testing.assert_close(pb, pa, rtol=1e-4, atol=1e-5)
    finally:
        dist.destroy_process_group()
