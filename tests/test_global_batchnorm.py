"""GlobalBatchNorm2d on 2 gloo processes computes what BatchNorm2d computes on the whole batch in one:
outputs, input and parameter gradients, running statistics (identical on both ranks)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from svqbench.engine.global_batchnorm import GlobalBatchNorm2d, globalise_batchnorm


def whole_batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(6, 3, 5, 4, generator=generator) * 3 + 1, torch.randn(6, 3, 5, 4, generator=generator)


def reference() -> dict[str, torch.Tensor]:
    x, upstream = whole_batch()
    norm = nn.BatchNorm2d(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
    x.requires_grad_()
    for _ in range(2):  # two steps: the running statistics accumulate
        out = norm(x)
    (out * upstream).sum().backward()
    return {
        "out": out.detach(),
        "x_grad": x.grad,
        "weight_grad": norm.weight.grad,
        "bias_grad": norm.bias.grad,
        "running_mean": norm.running_mean,
        "running_var": norm.running_var,
    }


def rank_main(rank: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        x, upstream = whole_batch()
        share = slice(3 * rank, 3 * rank + 3)
        model = globalise_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))
        norm = model[0]
        assert isinstance(norm, GlobalBatchNorm2d)
        with torch.no_grad():
            norm.weight.copy_(torch.tensor([0.5, 1.5, -1.0]))
        local = x[share].clone().requires_grad_()
        for _ in range(2):
            out = norm(local)
        (out * upstream[share]).sum().backward()
        # the parameters' gradients are sums over the whole batch: the ranks' shares add up (DDP would average
        # them, over a loss that is the mean of the ranks' losses)
        grads = torch.stack([norm.weight.grad, norm.bias.grad])
        dist.all_reduce(grads)
        results[rank] = {
            "out": out.detach(),
            "x_grad": local.grad,
            "weight_grad": grads[0],
            "bias_grad": grads[1],
            "running_mean": norm.running_mean.clone(),
            "running_var": norm.running_var.clone(),
            "state_keys": sorted(norm.state_dict()),
        }
    finally:
        dist.destroy_process_group()


def test_two_ranks_normalise_with_the_statistics_of_the_whole_batch(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(rank_main, args=(str(tmp_path / "init"), results), nprocs=2)
        results = dict(results)
    expected = reference()
    for name in ("out", "x_grad"):
        together = torch.cat([results[0][name], results[1][name]])
        torch.testing.assert_close(together, expected[name], rtol=1e-5, atol=1e-5, msg=name)
    for rank in (0, 1):
        for name in ("weight_grad", "bias_grad", "running_mean", "running_var"):
            torch.testing.assert_close(results[rank][name], expected[name], rtol=1e-5, atol=1e-5, msg=name)
        assert results[rank]["state_keys"] == sorted(nn.BatchNorm2d(3).state_dict())
    assert torch.equal(results[0]["running_var"], results[1]["running_var"])


def test_outside_torchrun_it_is_plain_batchnorm():
    x, _ = whole_batch()
    plain = nn.BatchNorm2d(3)
    converted = globalise_batchnorm(nn.Sequential(nn.BatchNorm2d(3)))[0]
    assert torch.equal(converted(x), plain(x)) and torch.equal(converted.running_var, plain.running_var)
