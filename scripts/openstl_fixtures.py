"""Make the OpenSTL reference fixtures of tests/data/openstl/ with OpenSTL's own classes.

Run it where OpenSTL is importable (its repository on PYTHONPATH, with torch and timm), outside this
repository's environment; svqbench itself is not imported:

    PYTHONPATH=/path/to/OpenSTL python scripts/openstl_fixtures.py --out tests/data/openstl
    PYTHONPATH=/path/to/OpenSTL python scripts/openstl_fixtures.py --out tests/data/openstl --only vit swin
    (ViT, Swin and SwinLSTM need the timm of OpenSTL v0.3's time, 0.6.x: their blocks take ``drop``; OpenSTL's
    current code imports timm.layers, which 0.6.13 holds as timm.models.layers.)

For each model, at a tiny configuration (4 -> 4 frames of 1x16x16), it builds OpenSTL's model with a fixed
seed, re-draws the weights so that every tensor matters (norm scales and layer scales near 1, biases and
BatchNorm statistics non-zero), and writes NAME/checkpoint.pth (OpenSTL's state dict, as OpenSTL saves it),
NAME/clip.npz (``inputs`` (2, 4, 1, 16, 16), ``targets``, and ``outputs``: OpenSTL's test-time prediction,
computed as OpenSTL's method computes it in ``forward``, with the true future frames in the batch as there)
and NAME/fixture.json (the svqbench model keys of the same network and the OpenSTL call).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

T, C, H, W = 4, 1, 16, 16
BATCH = 2
SEED = 2026


def openstl_config(**options):
    base = dict(
        in_shape=(T, C, H, W),
        pre_seq_length=T,
        aft_seq_length=T,
        total_length=2 * T,
        patch_size=2,
        filter_size=3,
        stride=1,
        layer_norm=0,
        device="cpu",
        reverse_scheduled_sampling=0,
    )
    base.update(options)
    return SimpleNamespace(**base)


def recurrent(cls_name, svq, **options):
    """A recurrent model of OpenSTL's, 2 layers of 8, and the svqbench keys of the same network."""

    def build():
        import openstl.models as om

        return getattr(om, cls_name)(2, [8, 8], openstl_config(**options))

    model = {
        "num_hidden": [8, 8],
        "filter_size": options.get("filter_size", 3),
        "patch_size": options.get("patch_size", 2),
    }
    return {
        "build": build,
        "call": "recurrent",
        "options": options,
        "openstl": f"{cls_name}(2, [8, 8], configs)",
        "model": {**svq, **model},
    }


def simvp(translator):
    def build():
        import openstl.models as om

        return om.SimVP_Model((T, C, H, W), hid_S=8, hid_T=16, N_S=2, N_T=2, model_type=translator)

    return {
        "build": build,
        "call": "simvp",
        "options": {},
        "openstl": f"SimVP_Model(model_type={translator!r})",
        "model": {"name": "simvp", "translator": translator, "hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2},
    }


def phydnet():
    def build():
        import openstl.models as om

        return om.PhyDNet_Model(openstl_config(patch_size=4))

    return {
        "build": build,
        "call": "phydnet",
        "options": {"patch_size": 4},
        "openstl": "PhyDNet_Model(configs)",
        "model": {"name": "phydnet", "patch_size": 4},
        "bf16_weights": True,
    }


def swinlstm(variant):
    """OpenSTL's SwinLSTM at window 4 on the 8x8 patch grid: shifted, masked windows and merged levels (d)."""
    sizes = {
        "d": {"embed_dim": 4, "depths_downsample": [2, 3], "depths_upsample": [3, 2], "num_heads": [2, 2]},
        "b": {"embed_dim": 8, "depths": 4, "num_heads": 2},
    }[variant]

    def build():
        import openstl.models as om

        cfg = SimpleNamespace(in_shape=(T, C, H, W), patch_size=2, window_size=4, embed_dim=sizes["embed_dim"])
        if variant == "d":
            return om.SwinLSTM_D_Model(sizes["depths_downsample"], sizes["depths_upsample"], sizes["num_heads"], cfg)
        return om.SwinLSTM_B_Model(SimpleNamespace(**vars(cfg), depths=sizes["depths"], num_heads=sizes["num_heads"]))

    return {
        "build": build,
        "call": "swinlstm",
        "options": {},
        "openstl": f"SwinLSTM_{variant.upper()}_Model",
        "model": {"name": "swinlstm", "variant": variant, "patch_size": 2, "window_size": 4, **sizes},
    }


FIXTURES = {
    "convlstm": recurrent("ConvLSTM_Model", {"name": "convlstm", "cell": "openstl"}),
    "predrnn": recurrent("PredRNN_Model", {"name": "predrnn"}),
    "predrnn_v2": recurrent("PredRNNv2_Model", {"name": "predrnn_v2"}, reverse_scheduled_sampling=1, decouple_beta=0.1),
    "predrnn_pp": recurrent("PredRNNpp_Model", {"name": "predrnn_pp"}),
    "mim": recurrent("MIM_Model", {"name": "mim"}),
    "e3d_lstm": recurrent("E3DLSTM_Model", {"name": "e3d_lstm", "stride": 1}, filter_size=5),
    "mau": recurrent(
        "MAU_Model",
        {"name": "mau", "sr_size": 2, "tau": 2, "cell_mode": "normal", "model_mode": "normal"},
        patch_size=1,
        sr_size=2,
        tau=2,
        cell_mode="normal",
        model_mode="normal",
    ),
    "phydnet": phydnet(),
    **{
        f"simvp_{t}": simvp(t)
        for t in (
            "gsta",
            "incepu",
            "tau",
            "mlpmixer",
            "convmixer",
            "uniformer",
            "poolformer",
            "van",
            "hornet",
            "convnext",
            "moganet",
            "vit",
            "swin",
        )
    },
    "swinlstm_d": swinlstm("d"),
    "swinlstm_b": swinlstm("b"),
}


def redraw(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Weights every part of which shows in the output: scales near 1, biases and BN statistics non-zero.
    Other buffers (Swin's shift masks and position indices) stay as the model computed them."""
    tensors = dict(model.named_parameters())
    tensors.update({k: v for k, v in model.named_buffers() if k.endswith(("running_mean", "running_var"))})
    with torch.no_grad():
        for name, tensor in tensors.items():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "running_var":
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif leaf in ("running_mean", "bias"):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
            elif (
                tensor.dim() <= 1
                or "layer_scale" in name
                or "gamma" in leaf
                or tensor.shape.count(1) >= tensor.dim() - 1
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) * 0.5 + 0.5)
            else:  # a weight: fan-in scaled, as PyTorch's default
                fan_in = tensor[0].numel()
                tensor.copy_((torch.rand(tensor.shape, generator=generator) * 2 - 1) / fan_in**0.5)


def predict(spec, model, batch_x, batch_y):
    """OpenSTL's method ``forward`` at test time, for the model's kind."""
    options = openstl_config(**spec["options"])
    if spec["call"] == "simvp":
        return model(batch_x)
    if spec["call"] == "swinlstm":  # OpenSTL's SwinLSTM method: frames channels-last, the last T_out outputs
        ims = torch.cat([batch_x, batch_y], dim=1).permute(0, 1, 3, 4, 2).contiguous()
        generated, _ = model(ims, return_loss=False)
        return generated[:, -T:].permute(0, 1, 4, 2, 3).contiguous()
    if spec["call"] == "phydnet":
        constraints = torch.zeros((49, 7, 7))
        for index in range(49):
            constraints[index, index // 7, index % 7] = 1
        return model.inference(batch_x, batch_y, constraints, return_loss=False)[0]
    from openstl.utils import reshape_patch, reshape_patch_back

    p = options.patch_size
    ims = torch.cat([batch_x, batch_y], dim=1).permute(0, 1, 3, 4, 2).contiguous()
    mask_input = 1 if options.reverse_scheduled_sampling == 1 else T
    flag = torch.zeros((BATCH, 2 * T - mask_input - 1, H // p, W // p, p * p * C))
    if options.reverse_scheduled_sampling == 1:
        flag[:, : T - 1] = 1.0
    if spec["model"]["name"] == "mau":  # OpenSTL's MAU method feeds the frames unpatched
        generated, _ = model(ims, flag, return_loss=False)
        return generated[:, -T:]
    generated, _ = model(reshape_patch(ims, p), flag, return_loss=False)
    return reshape_patch_back(generated, p)[:, -T:].permute(0, 1, 4, 2, 3).contiguous()


def openstl_commit() -> str | None:
    import openstl

    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=Path(openstl.__file__).parent, capture_output=True, text=True
            ).stdout.strip()
            or None
        )
    except OSError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--only", nargs="*", help="fixture names (default: all)")
    parser.add_argument("--commit", help="the OpenSTL commit to record (default: git rev-parse in its checkout)")
    args = parser.parse_args()
    import timm

    for name, spec in FIXTURES.items():
        if args.only and name not in args.only and name.removeprefix("simvp_") not in args.only:
            continue
        torch.manual_seed(SEED)
        model = spec["build"]()
        generator = torch.Generator().manual_seed(SEED)
        redraw(model, generator)
        if spec.get("bf16_weights"):  # 3.1M parameters: 17 levels per tensor (exact in bf16), gzipped to ~1 MB
            with torch.no_grad():
                for tensor in model.state_dict().values():
                    if tensor.is_floating_point() and tensor.abs().max() > 0:
                        step = 2.0 ** torch.ceil(torch.log2(tensor.abs().max())).item() / 8
                        tensor.copy_(torch.round(tensor / step).clamp(-8, 8) * step)
        model.eval()
        batch_x = torch.rand((BATCH, T, C, H, W), generator=generator)
        batch_y = torch.rand((BATCH, T, C, H, W), generator=generator)
        with torch.no_grad():
            outputs = predict(spec, model, batch_x, batch_y)
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        state = model.state_dict()
        if spec.get("bf16_weights"):  # one bf16 copy per tensor, so that aliased modules still share it
            copies = {}
            for key, value in state.items():
                if value.is_floating_point():
                    pointer = (value.data_ptr(), tuple(value.shape))
                    state[key] = copies.setdefault(pointer, value.to(torch.bfloat16))
        torch.save(state, folder / "checkpoint.pth")
        if spec.get("bf16_weights"):
            import gzip
            import shutil

            with open(folder / "checkpoint.pth", "rb") as raw, gzip.open(folder / "checkpoint.pth.gz", "wb") as packed:
                shutil.copyfileobj(raw, packed)
            (folder / "checkpoint.pth").unlink()
        np.savez(folder / "clip.npz", inputs=batch_x.numpy(), targets=batch_y.numpy(), outputs=outputs.numpy())
        record = {
            "model": spec["model"],
            "shape": {"frames_in": T, "frames_out": T, "channels": C, "height": H, "width": W},
            "openstl": spec["openstl"],
            "openstl_options": {k: v for k, v in spec["options"].items()},
            "openstl_commit": args.commit or openstl_commit(),
            "timm": timm.__version__,
            "torch": torch.__version__,
            "parameters": sum(p.numel() for p in model.parameters()),
            "weights": "17 levels per tensor, exact in bf16 (stored as bf16 in checkpoint.pth.gz, computed in fp32)"
            if spec.get("bf16_weights")
            else "fp32",
        }
        (folder / "fixture.json").write_text(json.dumps(record, indent=2) + "\n")
        print(f"{name}: {record['parameters']:,} parameters, outputs {tuple(outputs.shape)}")


if __name__ == "__main__":
    main()
