import math

import pytest
import torch

from svqbench.errors import SvqbenchError
from svqbench.models.svq import CODEBOOK_INITS, SVQ, SVQStats, svq_statistics

OPTION_SETS = [
    {},
    {"nonlinear": False},
    {"hid_relu": False},
    {"freeze_codebook": True},
    {"hidden_dim": 64},  # wider than the codebook: the hidden width is capped at N
    *({"init": name} for name in CODEBOOK_INITS),
]


def explicit_quantize(model: SVQ, z: torch.Tensor) -> torch.Tensor:
    """Reference: materialise the (B, P, N) weights, then w @ M, back to (B, C, H, W)."""
    batch, channels, height, width = z.shape
    quantized = model.code_weights(z) @ model.codebook
    return quantized.transpose(1, 2).reshape(batch, channels, height, width)


def gradients(model: SVQ, z: torch.Tensor, quantize) -> dict[str, torch.Tensor]:
    z = z.clone().requires_grad_(True)
    model.zero_grad()
    output = quantize(z)
    # A fixed random projection makes every output element matter to the loss.
    probe = torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
    (output * probe).sum().backward()
    grads = {"input": z.grad}
    grads.update({name: p.grad for name, p in model.named_parameters() if p.requires_grad})
    return grads


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_fast_forward_and_gradients_match_explicit_form(options):
    torch.manual_seed(0)
    model = SVQ(dim=8, codebook_size=40, **{"hidden_dim": 16, **options})
    z = torch.randn(3, 8, 5, 4)
    fast = model(z)
    explicit = explicit_quantize(model, z)
    assert fast.shape == z.shape
    scale = explicit.abs().max().item()
    torch.testing.assert_close(fast, explicit, rtol=1e-5, atol=1e-5 * scale)
    fast_grads = gradients(model, z, model)
    explicit_grads = gradients(model, z, lambda x: explicit_quantize(model, x))
    assert fast_grads.keys() == explicit_grads.keys()
    expected_names = {"input", "to_weights.weight", "to_weights.bias"}
    expected_names |= set() if options.get("nonlinear") is False else {"hidden.weight", "hidden.bias"}
    expected_names |= set() if options.get("freeze_codebook") else {"codebook"}
    assert set(fast_grads) == expected_names
    for name in fast_grads:
        grad_scale = explicit_grads[name].abs().max().item()
        torch.testing.assert_close(fast_grads[name], explicit_grads[name], rtol=1e-4, atol=1e-5 * grad_scale, msg=name)


def test_float64_fast_form_is_exact_to_round_off():
    torch.manual_seed(0)
    model = SVQ(dim=6, codebook_size=30, hidden_dim=12).double()
    z = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(model(z), explicit_quantize(model, z), rtol=1e-12, atol=1e-12)


def test_out_relu_uses_nonnegative_weights():
    torch.manual_seed(0)
    model = SVQ(dim=8, codebook_size=20, hidden_dim=16, out_relu=True)
    z = torch.randn(2, 8, 3, 3, requires_grad=True)
    weights = model.code_weights(z)
    assert weights.shape == (2, 9, 20)
    assert (weights >= 0).all() and (weights == 0).any()
    output = model(z)
    torch.testing.assert_close(output, explicit_quantize(model, z))
    output.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


def test_hidden_width_and_frozen_codebook():
    model = SVQ(dim=8, codebook_size=6000, freeze_codebook=True)
    assert model.hidden.weight.shape == (128, 8)
    assert model.to_weights.weight.shape == (6000, 128)
    assert model.codebook.shape == (6000, 8) and not model.codebook.requires_grad
    assert "codebook" in model.state_dict()
    small = SVQ(dim=8, codebook_size=10)
    assert small.hidden.weight.shape == (10, 8)


def test_sparse_init_zeroes_ninety_percent_of_each_column():
    model = SVQ(dim=4, codebook_size=100, init="sparse")
    assert ((model.codebook == 0).sum(0) == 90).all()


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"codebook_size": 0}, "codebook_size=0"),
        ({"codebook_size": 10, "init": "uniform"}, "'uniform'; valid: kaiming"),
        ({"codebook_size": 10, "nonlinear": False, "out_relu": True}, "out_relu"),
    ],
)
def test_bad_arguments_raise_svqbench_error(kwargs, fragment):
    with pytest.raises(SvqbenchError, match=fragment):
        SVQ(dim=4, **kwargs)


def released_statistics(weights: torch.Tensor, threshold: float) -> tuple[float, float]:
    """The released diagnostics for one batch: share of |standardised w| > t and its usage perplexity."""
    standardised = ((weights - weights.mean()) / weights.std()).abs()
    large = (standardised > threshold).double()
    usage = large.reshape(-1, weights.shape[-1]).sum(0) / large.sum()
    perplexity = torch.exp(-torch.sum(usage * torch.log(usage + 1e-10)))
    return large.mean().item(), perplexity.item()


def test_stats_match_released_definition_for_one_batch():
    torch.manual_seed(0)
    weights = torch.randn(4, 30, 50) ** 3
    stats = SVQStats(max_chunk_elements=700)  # forces many chunks
    stats.update(weights)
    result = stats.result()
    for threshold in (2, 3):
        share, perplexity = released_statistics(weights.double(), threshold)
        assert result[f"share_above_{threshold}sd"] == pytest.approx(share)
        assert result[f"perplexity_above_{threshold}sd"] == pytest.approx(perplexity, rel=1e-6)
    flat = weights.double().flatten()
    centred = flat - flat.mean()
    kurtosis = (centred**4).mean() / (centred**2).mean() ** 2
    assert result["kurtosis"] == pytest.approx(kurtosis.item(), rel=1e-9)
    assert result["weight_mean"] == pytest.approx(flat.mean().item())


def test_stats_of_gaussian_weights():
    weights = torch.randn(8, 256, 64, generator=torch.Generator().manual_seed(0))
    result = svq_statistics([weights[:4], weights[4:]])
    assert result["kurtosis"] == pytest.approx(3.0, abs=0.05)
    assert result["share_above_2sd"] == pytest.approx(0.0455, abs=0.003)
    assert result["share_above_3sd"] == pytest.approx(0.0027, abs=0.0008)
    assert result["perplexity_above_2sd"] == pytest.approx(64, rel=0.02)


def test_model_statistics_do_not_depend_on_chunk_size():
    torch.manual_seed(0)
    model = SVQ(dim=8, codebook_size=30, hidden_dim=16)
    latents = [torch.randn(5, 8, 4, 4), torch.randn(3, 8, 4, 4)]
    whole = svq_statistics([model.code_weights(z).detach() for z in latents])
    chunked = svq_statistics(model, latents, max_chunk_elements=1)  # one frame per chunk
    assert whole.keys() == chunked.keys()
    for key in whole:
        assert chunked[key] == pytest.approx(whole[key], rel=1e-6), key
    assert math.isfinite(whole["perplexity_above_3sd"])


def test_stats_errors():
    with pytest.raises(SvqbenchError, match="before any update"):
        SVQStats().result()
    stats = SVQStats()
    stats.update(torch.randn(1, 4, 10))
    with pytest.raises(SvqbenchError, match="codebook size changed"):
        stats.update(torch.randn(1, 4, 12))
    with pytest.raises(SvqbenchError, match="latents are required"):
        svq_statistics(SVQ(dim=2, codebook_size=3))
