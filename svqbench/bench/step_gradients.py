"""The gradients of one training step, to compare world sizes against a float64 computation of the same step.

``step_gradients`` runs step 0 of a recipe's model (seeded init, keyed draws, the training forecast, MSE plus the
model's auxiliary loss) on the first ``batch`` training windows and returns ``{parameter name: gradient}`` in
float64. Under torchrun each rank takes its slice of that batch through DistributedDataParallel with global
BatchNorm, as training does, and rank 0 saves the averaged gradients:
``torchrun --nproc_per_node 2 -m svqbench.bench.step_gradients RECIPE DATA_ROOT BATCH OUT.pt``.
``scripts/world_size_accuracy.py`` prints the comparison; ``tests/test_world_size.py`` asserts it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from svqbench import data
from svqbench.config import load_recipe
from svqbench.engine.global_batchnorm import globalise_batchnorm
from svqbench.keyed import keyed_step
from svqbench.models import create_model, training_forecast


def first_batch(dataset: str, root: Path, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """inputs (B, T_in, C, H, W), targets (B, T_out, C, H, W): the first ``batch`` training windows."""
    split = data.create(dataset, "train", root)
    items = [split[i] for i in range(batch)]
    return torch.stack([torch.as_tensor(x) for x, _ in items]), torch.stack([torch.as_tensor(y) for _, y in items])


def step_gradients(
    recipe_path: str, root: Path, batch: int, dtype: torch.dtype = torch.float32, world: int = 1, rank: int = 0
) -> dict[str, torch.Tensor]:
    recipe = load_recipe(recipe_path)
    torch.manual_seed(recipe.train.seed)
    model = create_model(recipe.model_name, data.info(recipe.dataset, root), **recipe.model_args).to(dtype)
    module = model
    if world > 1:
        module = DistributedDataParallel(globalise_batchnorm(model))
    inputs, targets = first_batch(recipe.dataset, root, batch)
    share = slice(rank * batch // world, (rank + 1) * batch // world)
    inputs, targets = inputs[share].to(dtype), targets[share].to(dtype)
    with keyed_step(recipe.train.seed, 0, share.start, len(inputs)):
        out = training_forecast(module, inputs, targets, 0)
        loss = F.mse_loss(out.frames, targets) + out.aux_loss
    loss.backward()
    return {name: p.grad.detach().double() for name, p in model.named_parameters() if p.grad is not None}


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """|a - b| / |b| over every gradient (b the reference)."""
    diff = sum(float((a[k] - b[k]).square().sum()) for k in b)
    return (diff / sum(float(b[k].square().sum()) for k in b)) ** 0.5


if __name__ == "__main__":
    recipe_path, root, batch, out = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    dist.init_process_group("gloo")
    grads = step_gradients(recipe_path, root, batch, world=dist.get_world_size(), rank=dist.get_rank())
    if dist.get_rank() == 0:
        torch.save(grads, out)
    dist.destroy_process_group()
