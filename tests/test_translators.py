import pytest
import torch

from svqbench.errors import SvqbenchError
from svqbench.models.translators import TRANSLATORS

# OpenSTL's KTH SimVP: T=10 frames of hid_S=64 latents at 32x32, hid_T=256, N_T=6. Its ConvSC
# encoder (1->64, 64->64 stride 2) and decoder (64->4*64 + pixel shuffle, 64->64, 1x1 readout), with
# GroupNorm(2, 64) after every conv, hold 37,824 + 184,961 parameters.
KTH_ENCODER_DECODER_PARAMS = 37_824 + 184_961
KTH_ZOO_PARAMS_MILLIONS = {"incepu": 12.2, "gsta": 15.6}


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", TRANSLATORS.names())
@pytest.mark.parametrize("depth", [2, 3])
def test_shape_backward_and_finite(name, depth):
    torch.manual_seed(0)
    translator = TRANSLATORS.get(name)(16, 24, depth, input_resolution=(8, 6), drop=0.1, drop_path=0.1)
    x = torch.randn(2, 16, 8, 6, requires_grad=True)
    y = translator(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    trainable = [p for p in translator.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)


@pytest.mark.parametrize("name", TRANSLATORS.names())
def test_eval_mode_is_deterministic(name):
    torch.manual_seed(0)
    translator = TRANSLATORS.get(name)(16, 16, 2, input_resolution=(4, 4), drop=0.5, drop_path=0.5).eval()
    x = torch.randn(1, 16, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(translator(x), translator(x))


@pytest.mark.parametrize("name", TRANSLATORS.names())
def test_depth_below_two_is_a_user_error(name):
    with pytest.raises(SvqbenchError, match="depth"):
        TRANSLATORS.get(name)(16, 16, 1, input_resolution=(4, 4))


@pytest.mark.parametrize("name, millions", KTH_ZOO_PARAMS_MILLIONS.items())
def test_kth_parameter_count_matches_openstl_zoo(name, millions):
    translator = TRANSLATORS.get(name)(640, 256, 6, input_resolution=(32, 32))
    total = count_parameters(translator) + KTH_ENCODER_DECODER_PARAMS
    assert round(total / 1e6, 1) == millions


def test_unknown_translator_lists_valid_names():
    with pytest.raises(SvqbenchError, match="gsta.*incepu"):
        TRANSLATORS.get("transformer")
