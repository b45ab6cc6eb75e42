"""The SVQ paper's recipes: they validate, agree with the paper's table, build at the datasets' shapes with the
published parameter counts; the hard-VQ baseline trains; impossible models are one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_MODEL

from svqbench.config import load_recipe
from svqbench.data.base import DatasetInfo
from svqbench.engine.train import train
from svqbench.errors import SvqbenchError
from svqbench.models import count_parameters, create_model, forecast

# Shapes (protocols.md section 1): in -> out frames, C x H x W.
SHAPES = {
    "kth": (10, 20, 1, 128, 128),
    "human": (4, 4, 3, 256, 256),
    "kitticaltech": (10, 1, 3, 128, 160),
    "taxibj": (4, 4, 2, 32, 32),
    "weather_t2m": (12, 12, 1, 32, 64),
    "weather_r": (12, 12, 1, 32, 64),
    "weather_uv10": (12, 12, 2, 32, 64),
    "weather_tcc": (12, 12, 1, 32, 64),
    "weather_mv": (4, 4, 12, 32, 64),
}
# The paper's table: translator, (hid_S, hid_T, N_S, N_T), codebook, lr, schedule, warm-up epochs, epochs.
TABLE = {
    "kth": ("incepu", (64, 256, 2, 6), 6000, 5e-4, "onecycle", 0, 100),
    "human": ("gsta", (64, 512, 4, 6), 10000, 2.5e-4, "cosine", 0, 50),
    "kitticaltech": ("gsta", (64, 256, 2, 6), 6000, 1.25e-3, "onecycle", 0, 100),
    "taxibj": ("gsta", (32, 256, 2, 8), 10000, 5e-4, "cosine", 5, 50),
    "weather_t2m": ("gsta", (32, 256, 2, 8), 10000, 5e-3, "cosine", 5, 50),
    "weather_r": ("swin", (32, 256, 2, 8), 10000, 1e-3, "cosine", 5, 50),
    "weather_uv10": ("swin", (32, 256, 2, 8), 10000, 1e-3, "cosine", 5, 50),
    "weather_tcc": ("gsta", (32, 256, 2, 8), 10000, 1e-2, "cosine", 5, 50),
    "weather_mv": ("moganet", (32, 256, 2, 8), 10000, 5e-3, "cosine", 5, 200),
}
KINDS = ("simvp", "simvp_svq", "simvp_svq_frozen")
RECIPES = [f"{dataset}/{kind}" for dataset in SHAPES for kind in KINDS]


def info_of(dataset: str) -> DatasetInfo:
    return DatasetInfo(dataset, *SHAPES[dataset])


def svq_parameters(hid_S: int, codebook_size: int, hidden: int = 128) -> int:
    """Weight MLP C -> K -> N (with biases) plus the N x C codebook, K = min(hidden, N)."""
    width = min(hidden, codebook_size)
    return hid_S * width + width + width * codebook_size + codebook_size + codebook_size * hid_S


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_follows_the_paper(name):
    dataset, kind = name.split("/")
    recipe = load_recipe(name)
    translator, widths, codebook, lr, schedule, warmup, epochs = TABLE[dataset]
    args = recipe.model_args
    assert recipe.dataset == dataset and recipe.model_name == ("simvp" if kind == "simvp" else "simvp_svq")
    assert args["translator"] == translator
    assert (args["hid_S"], args["hid_T"], args["N_S"], args["N_T"]) == widths
    assert 0.1 <= args["drop_path"] <= 0.2
    train_cfg = recipe.train
    assert (train_cfg.lr, train_cfg.schedule, train_cfg.epochs, train_cfg.batch_size) == (lr, schedule, epochs, 16)
    assert train_cfg.warmup_epochs == warmup and train_cfg.seed == 42 and train_cfg.precision == "fp32"
    # the baseline trains as SVQ does (the controlled comparison); the published baseline is DATASET/simvp_openstl
    assert train_cfg.loss == ("mse" if dataset == "weather_tcc" else "l1")
    assert recipe.eval.convention == "openstl"  # rows line up with the reported numbers
    if kind == "simvp":
        return
    assert args["codebook_size"] == codebook
    assert args.get("freeze_codebook", False) == (kind == "simvp_svq_frozen")
    assert args.get("init", "kaiming") == ("normal" if dataset == "weather_t2m" else "kaiming")


@pytest.mark.parametrize("dataset", SHAPES)
def test_published_baseline_keeps_its_own_name(dataset):
    """DATASET/simvp_openstl: the released SimVP config (MSE loss), the paper's architecture, reported convention."""
    published, baseline = load_recipe(f"{dataset}/simvp_openstl"), load_recipe(f"{dataset}/simvp")
    assert published.model_name == "simvp" and published.train.loss == "mse"
    assert published.eval.convention == "openstl" and published.eval.metrics == baseline.eval.metrics
    translator, widths = TABLE[dataset][:2]
    args = published.model_args
    assert args["translator"] == translator and (args["hid_S"], args["hid_T"], args["N_S"], args["N_T"]) == widths


@pytest.mark.parametrize("dataset", SHAPES)
def test_recipes_build_at_the_dataset_shapes(dataset):
    counts = {}
    for kind in KINDS:
        recipe = load_recipe(f"{dataset}/{kind}")
        model = create_model(recipe.model_name, info_of(dataset), **recipe.model_args)
        counts[kind] = count_parameters(model)
    args = load_recipe(f"{dataset}/simvp_svq").model_args
    assert counts["simvp_svq"] - counts["simvp"] == svq_parameters(args["hid_S"], args["codebook_size"])
    assert counts["simvp_svq_frozen"] == counts["simvp_svq"]  # a frozen codebook is still a (fixed) parameter


def test_published_kth_parameter_counts():
    kth = info_of("kth")
    recipe = load_recipe("kth/simvp")
    assert round(count_parameters(create_model("simvp", kth, **recipe.model_args)) / 1e6, 1) == 12.2
    gsta = {**recipe.model_args, "translator": "gsta"}
    assert round(count_parameters(create_model("simvp", kth, **gsta)) / 1e6, 1) == 15.6


def test_rollout_of_the_paper_shapes():
    """KTH's 20 frames from 10 inputs take two passes; KittiCaltech's 1 frame is a truncated pass."""
    for dataset, frames_out in (("kth", 20), ("kitticaltech", 1)):
        info = DatasetInfo(dataset, SHAPES[dataset][0], frames_out, 1, 16, 16)
        model = create_model("simvp_svq", info, **TINY_MODEL, codebook_size=16)
        assert forecast(model, torch.rand(1, *info.shape_in), frames_out).frames.shape[1] == frames_out


VQ_OPTIONS = {
    "vq": {"codebook_size": 16},
    "rvq": {"codebook_size": 16, "num_quantizers": 2},
    "fsq": {"levels": [5, 3]},
    "lfq": {"codebook_size": 64},
}


@pytest.mark.parametrize("quantizer", VQ_OPTIONS)
def test_simvp_vq_trains_a_few_steps(quantizer):
    torch.manual_seed(0)
    info = DatasetInfo("toy", 4, 4, 1, 16, 16)
    model = create_model("simvp_vq", info, **TINY_MODEL, quantizer=quantizer, **VQ_OPTIONS[quantizer])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, targets = torch.rand(2, 4, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    for _ in range(3):
        out = forecast(model, inputs, info.frames_out)
        loss = torch.nn.functional.l1_loss(out.frames, targets) + out.aux_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss) and torch.isfinite(out.frames).all()
        if quantizer == "vq":
            assert out.aux_loss > 0  # the commitment loss reaches the training loss
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_simvp_vq_recipe_trains_on_digits(tmp_path, digits_root):
    recipe_file = tmp_path / "vq.yaml"
    recipe_file.write_text(
        "dataset: digits\n"
        "model: {name: simvp_vq, hid_S: 8, hid_T: 16, N_S: 2, N_T: 2, translator: incepu, quantizer: vq,"
        " codebook_size: 16, commitment_weight: 0.5}\n"
        "train: {epochs: 1, max_steps: 3, batch_size: 4, num_workers: 0}\n"
    )
    run_dir = train(load_recipe(str(recipe_file)), tmp_path / "run", torch.device("cpu"), data_root=digits_root)
    record = json.loads((run_dir / "log.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 3
    assert torch.isfinite(torch.tensor([record["train_loss"], record["val_loss"]])).all()


ODD = DatasetInfo("odd", 4, 4, 1, 20, 20)


@pytest.mark.parametrize(
    "name, args, needles",
    [
        ("simvp_svq", {"translator": "lstm"}, ["unknown translator 'lstm'", "gsta"]),
        ("simvp_svq", {"init": "zeros", "N_S": 2}, ["init='zeros'", "kaiming"]),
        ("simvp_svq", {"codebook_size": 0, "N_S": 2}, ["codebook_size=0", ">= 1"]),
        ("simvp_vq", {"quantizer": "kmeans", "N_S": 2}, ["unknown quantizer 'kmeans'", "fsq"]),
        ("simvp_vq", {"codebook_size": 0, "N_S": 2}, ["codebook_size=0", ">= 1"]),
        ("simvp_vq", {"quantizer": "fsq", "codebook_size": 8, "N_S": 2}, ["codebook_size", "levels"]),
        ("simvp_svq", {"N_S": 6}, ["model.N_S=6", "20x20", "stride 8"]),
    ],
)
def test_impossible_models_are_one_line_errors(name, args, needles):
    with pytest.raises(SvqbenchError) as error:
        create_model(name, ODD, **{"hid_S": 8, "hid_T": 16, "N_T": 2, **args})
    message = str(error.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
