import pytest
import torch

from svqbench.errors import SvqbenchError
from svqbench.models.quantizers import QUANTIZERS, build_quantizer

SMALL_OPTIONS = {
    "svq": {"codebook_size": 32},
    "vq": {"codebook_size": 16},
    "rvq": {"codebook_size": 16, "num_quantizers": 3},
    "fsq": {"levels": (5, 3)},
    "lfq": {"codebook_size": 64},
}


def test_every_quantizer_has_small_options():
    assert sorted(SMALL_OPTIONS) == QUANTIZERS.names()


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_shapes_backward_and_finite_aux_loss(name):
    torch.manual_seed(0)
    quantizer = build_quantizer(name, 8, **SMALL_OPTIONS[name])
    z = torch.randn(3, 8, 5, 4, requires_grad=True)
    quantized, aux_loss = quantizer(z)
    assert quantized.shape == z.shape and torch.isfinite(quantized).all()
    assert aux_loss.shape == () and torch.isfinite(aux_loss)
    (quantized.square().mean() + aux_loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", QUANTIZERS.names())
def test_eval_mode_is_deterministic(name):
    torch.manual_seed(0)
    quantizer = build_quantizer(name, 8, **SMALL_OPTIONS[name]).eval()
    z = torch.randn(2, 8, 3, 3)
    with torch.no_grad():
        first, _ = quantizer(z)
        second, _ = quantizer(z)
    torch.testing.assert_close(first, second)


def test_svq_has_zero_aux_loss_and_matches_plain_svq():
    quantizer = build_quantizer("svq", 8, codebook_size=32)
    z = torch.randn(2, 8, 3, 3)
    quantized, aux_loss = quantizer(z)
    assert aux_loss.item() == 0.0
    torch.testing.assert_close(quantized, quantizer.svq(z))


def test_vq_outputs_are_codebook_vectors_with_commitment_loss():
    torch.manual_seed(0)
    quantizer = build_quantizer("vq", 8, codebook_size=4)
    z = torch.randn(2, 8, 6, 6)
    _, training_loss = quantizer(z)
    assert training_loss.item() > 0
    quantized, _ = quantizer.eval()(z)
    vectors = quantized.permute(0, 2, 3, 1).reshape(-1, 8)
    assert len(torch.unique(vectors, dim=0)) <= 4


@pytest.mark.parametrize(
    "name, options, fragment",
    [
        ("vq", {"codebook_sise": 8}, "unknown option.*codebook_sise.*valid:.*codebook_size"),
        ("rvq", {"heads": 2, "not_an_option": 1}, "not_an_option"),
        ("svq", {"codebook": 8}, "unknown option.*codebook; valid:.*codebook_size"),
        ("fsq", {"channel_first": True}, "unknown option.*channel_first"),
        ("lfq", {"codebook_size": 100}, "rejects options.*power of 2"),
        ("rvq", {"num_quantizers": 0}, "rejects options"),
    ],
)
def test_bad_options_are_user_errors(name, options, fragment):
    with pytest.raises(SvqbenchError, match=fragment):
        build_quantizer(name, 8, **options)


def test_unknown_quantizer_lists_valid_names():
    with pytest.raises(SvqbenchError, match="fsq, lfq, rvq, svq, vq"):
        build_quantizer("gumbel", 8)
