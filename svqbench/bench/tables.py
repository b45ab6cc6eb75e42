"""``svqbench bench``'s report (see bench.py) as Rich tables: the profile, the SVQ layer's forms, the training
step variants and the roofline."""

from __future__ import annotations

from rich.table import Table


def _cell(row: dict, key: str, spec: str) -> str:
    """A formatted number, or the candidate's error when it could not be measured."""
    return format(row[key], spec) if key in row else row.get("error", "-")


def bench_tables(report: dict) -> list[Table]:
    """Rich tables of a `run_bench` report."""
    profile = report["profile"]
    title = f"{report['recipe']} on {report['device_name']}, batch {report['batch_size']}, shape {report['shape']}"
    tables = [Table("parameters", "GFLOPs / prediction", "inference frames/s", "train samples/s", title=title)]
    tables[0].add_row(
        f"{profile['parameters'] / 1e6:.2f}M",
        f"{profile['flops'] / 1e9:.1f}",
        f"{profile['inference_frames_per_s']:.1f}",
        _cell(profile, "train_samples_per_s", ".2f"),
    )
    if "svq_layer" in report:
        layer = report["svq_layer"]
        table = Table(
            "SVQ form",
            "fwd+bwd s",
            "step memory MB",
            "peak MB",
            title=f"SVQ layer on latents {layer['latent_shape']}, {layer['codebook_size']} codes"
            + (f": fast form {layer['speedup']:.1f}x faster" if "speedup" in layer else "")
            + (f", {layer['memory_ratio']:.1f}x less memory" if "memory_ratio" in layer else ""),
        )
        for name, row in layer["forms"].items():
            table.add_row(
                name, _cell(row, "seconds", ".4f"), _cell(row, "extra_mb", ".0f"), _cell(row, "peak_mb", ".0f")
            )
        tables.append(table)
    if "compare" in report:
        compare = report["compare"]
        table = Table(
            "variant",
            "step s",
            "samples/s",
            f"time / {compare['baseline']}",
            "step memory MB",
            "peak MB",
            title="training step",
        )
        for name, row in compare["variants"].items():
            table.add_row(
                name,
                _cell(row, "step_s", ".3f"),
                _cell(row, "samples_per_s", ".2f"),
                _cell(row, "time_vs_baseline", ".2f"),
                _cell(row, "extra_mb", ".0f"),
                _cell(row, "peak_mb", ".0f"),
            )
        tables.append(table)
    if "roofline" in report:
        tables.append(roofline_table(report["roofline"]))
    return tables


def roofline_table(roof: dict) -> Table:
    """Peak kernels and the model's achieved GFLOP/s, with its share of the peak."""
    table = Table(
        "measured",
        "GFLOP/s",
        "% of peak",
        title=f"roofline in {roof['precision']}: peak {roof['peak'] / 1e9:.1f} GFLOP/s (the faster kernel)",
    )
    table.add_row(
        f"matrix product ({roof['precision']})",
        f"{roof['matmul'] / 1e9:.1f}",
        f"{100 * roof['matmul'] / roof['peak']:.0f}%",
    )
    table.add_row(
        f"3x3 convolution ({roof['precision']})",
        f"{roof['conv'] / 1e9:.1f}",
        f"{100 * roof['conv'] / roof['peak']:.0f}%",
    )
    if "train_flops_per_s" in roof:
        table.add_row(
            "training step (forward + backward)",
            f"{roof['train_flops_per_s'] / 1e9:.1f}",
            f"{roof['train_percent']:.1f}%",
        )
    table.add_row(
        "inference (full prediction)", f"{roof['inference_flops_per_s'] / 1e9:.1f}", f"{roof['inference_percent']:.1f}%"
    )
    return table
