import pytest
import torch

from svqbench.errors import SvqbenchError
from svqbench.models.translators import TRANSLATORS, swin_window


def conv_sc_params(channels_in: int, channels_out: int, upsample: bool = False) -> int:
    """OpenSTL's ConvSC: 3x3 conv (4x wider before a pixel shuffle when upsampling) + GroupNorm(2)."""
    widen = 4 if upsample else 1
    return channels_in * channels_out * widen * 9 + channels_out * widen + 2 * channels_out


def encoder_decoder_params(channels: int, hid_s: int, n_s: int) -> int:
    """OpenSTL's SimVP encoder (n_s ConvSC) + decoder (n_s ConvSC, half upsampling) + 1x1 readout."""
    encoder = conv_sc_params(channels, hid_s) + (n_s - 1) * conv_sc_params(hid_s, hid_s)
    decoder = (n_s // 2) * conv_sc_params(hid_s, hid_s, upsample=True) + (n_s - n_s // 2) * conv_sc_params(hid_s, hid_s)
    return encoder + decoder + hid_s * channels + channels


# OpenSTL model zoo: (T, C, H, W, hid_S, hid_T, N_S, N_T) and published SimVP sizes in millions,
# printed to 1 (KTH, Moving MNIST) or 2 (TaxiBJ, WeatherBench t2m) decimals.
ZOO_CONFIGS = {
    "kth": (10, 1, 128, 128, 64, 256, 2, 6),
    "mmnist": (10, 1, 64, 64, 64, 512, 4, 8),
    "taxibj": (4, 2, 32, 32, 32, 256, 2, 8),
    "weather_t2m": (12, 1, 32, 64, 32, 256, 2, 8),
}
ZOO_PARAMS_MILLIONS = [
    ("kth", "incepu", 12.2),
    ("kth", "gsta", 15.6),
    ("kth", "tau", 15.0),
    ("mmnist", "incepu", 58.0),
    ("mmnist", "gsta", 46.8),
    ("mmnist", "swin", 46.1),
    ("mmnist", "convnext", 37.3),
    ("mmnist", "moganet", 46.8),
    ("taxibj", "incepu", 13.79),
    ("taxibj", "gsta", 9.96),
    ("taxibj", "swin", 9.66),
    ("taxibj", "convnext", 7.84),
    ("taxibj", "moganet", 9.96),
    ("weather_t2m", "incepu", 14.67),
    ("weather_t2m", "gsta", 12.76),
    ("weather_t2m", "swin", 12.42),
    ("weather_t2m", "convnext", 10.09),
    ("weather_t2m", "moganet", 12.76),
]


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


@pytest.mark.parametrize("dataset, name, millions", ZOO_PARAMS_MILLIONS)
def test_parameter_count_matches_openstl_zoo(dataset, name, millions):
    frames, channels, height, width, hid_s, hid_t, n_s, n_t = ZOO_CONFIGS[dataset]
    scale = 2 ** (n_s // 2)
    translator = TRANSLATORS.get(name)(frames * hid_s, hid_t, n_t, input_resolution=(height // scale, width // scale))
    total = (count_parameters(translator) + encoder_decoder_params(channels, hid_s, n_s)) / 1e6
    printed_decimals = len(str(millions).split(".")[1])
    assert abs(total - millions) <= 0.6 * 10**-printed_decimals


def test_unknown_translator_lists_valid_names():
    with pytest.raises(SvqbenchError, match="convmixer, convnext, gsta, hornet, incepu"):
        TRANSLATORS.get("transformer")


@pytest.mark.parametrize("name", ["swin", "moganet"])
def test_widths_not_multiple_of_eight_are_user_errors(name):
    with pytest.raises(SvqbenchError, match="multiple of 8"):
        TRANSLATORS.get(name)(20, 16, 2, input_resolution=(4, 4))
    with pytest.raises(SvqbenchError, match="multiple of 8"):
        TRANSLATORS.get(name)(16, 12, 2, input_resolution=(4, 4))


@pytest.mark.parametrize(
    "resolution, layer_index, expected",
    [
        ((16, 32), 0, (4, 0)),  # WeatherBench latent: window 4
        ((16, 32), 1, (4, 2)),  # odd layers shift by half a window
        ((28, 28), 1, (7, 3)),  # heights divisible by 7 use window 7
        ((32, 32), 1, (4, 2)),
        ((3, 10), 1, (3, 0)),  # a map no larger than the window is one unshifted window
    ],
)
def test_swin_window_follows_openstl(resolution, layer_index, expected):
    assert swin_window(resolution, layer_index) == expected


@pytest.mark.parametrize("resolution", [(5, 7), (9, 6), (1, 1), (13, 4)])
def test_swin_pads_maps_not_divisible_by_the_window(resolution):
    translator = TRANSLATORS.get("swin")(16, 16, 3, input_resolution=resolution)
    x = torch.randn(2, 16, *resolution)
    y = translator(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
