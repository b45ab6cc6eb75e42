"""FLOPs of one sample's whole test-time forecast (2 per multiply-add, rollout passes included; see
``svqbench bench``) for recipes at their dataset's shape, counted on the meta device: no data, no compute.

    PYTHONPATH=. python scripts/count_flops.py kth/predrnn_pp kth/mim kth/e3d_lstm kth/mau kth/phydnet kth/tau
"""

from __future__ import annotations

import sys

import torch

from svqbench import data
from svqbench.bench.measure import count_flops
from svqbench.config import load_recipe
from svqbench.errors import SvqbenchError
from svqbench.models import count_parameters, create_model


def main(recipes: list[str]) -> None:
    meta = torch.device("meta")
    print("| recipe | parameters | FLOPs |")
    print("|---|---|---|")
    for name in recipes:
        recipe = load_recipe(name)
        info = data.known_shape(recipe.dataset) or data.info(recipe.dataset)
        with meta:
            model = create_model(recipe.model_name, info, **recipe.model_args)
        print(f"| {name} | {count_parameters(model):,} | {count_flops(model, info, meta) / 1e9:.0f}G |", flush=True)


if __name__ == "__main__":
    try:
        main(sys.argv[1:] or ["kth/simvp"])
    except SvqbenchError as error:
        sys.exit(f"error: {error}")
