"""OpenSTL's state-dict keys renamed to svqbench's, for every model OpenSTL also has (no torch here).

A model's rules are applied in order to each OpenSTL key with ``re.sub`` (a replacement may be a function of
the match, for indices that shift); keys matching one of its ``ignored`` patterns have no counterpart on
purpose (aliases of modules registered twice, constant buffers). :func:`svqbench.interop.openstl.map_state_dict`
then requires the renamed keys to be exactly svqbench's, with equal shapes up to singleton axes (OpenSTL's
layer scales are (C,) where svqbench's are (C, 1, 1); its ConvNeXt MLP is linear where svqbench's is 1x1 convs).

Made by building both models at the fixtures' configurations (``tests/data/openstl/``) and checked there: an
imported state dict forecasts OpenSTL's test-time output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Union

Replacement = Union[str, Callable[["re.Match[str]"], str]]


@dataclass(frozen=True)
class KeyMap:
    """Renaming rules ``(pattern, replacement)`` applied in order, and patterns of keys without a counterpart."""

    rules: tuple[tuple[str, Replacement], ...]
    ignored: tuple[str, ...] = field(default=())

    def rename(self, key: str) -> str | None:
        """svqbench's key for OpenSTL's ``key``; None for an ignored one."""
        if any(re.search(pattern, key) for pattern in self.ignored):
            return None
        for pattern, replacement in self.rules:
            key = re.sub(pattern, replacement, key)
        return key


def _shifted(prefix: str, by: int) -> Callable[["re.Match[str]"], str]:
    """``PREFIX.{i - by}.`` for a match whose group 1 is the index i."""
    return lambda match: f"{prefix}.{int(match.group(1)) - by}."


# the recurrent models: OpenSTL's cell_list / conv_last (a cell's memory convolution, and the 1x1 readout)
_CELLS = (
    (r"^conv_last\.", "readout."),
    (r"^cell_list\.(\d+)\.conv_last\.", r"cells.\1.conv_memory."),
    (r"^cell_list\.", "cells."),
)

RECURRENT = {
    "convlstm": KeyMap(((r"^cell_list\.(\d+)\.(conv_o|conv_last)\.", r"cells.\1.unused.\2."), *_CELLS)),
    "predrnn": KeyMap(_CELLS),
    "predrnn_v2": KeyMap(_CELLS),
    "predrnn_pp": KeyMap(
        (
            (r"^gradient_highway\.z_concat\.", "highway.conv_z."),
            (r"^gradient_highway\.x_concat\.", "highway.conv_x."),
            *_CELLS,
        )
    ),
    "mim": KeyMap(
        (
            # layer 0 is a spatio-temporal LSTM, layers 1.. MIM blocks; the differences' memories are unused there
            (r"^conv_last\.", "readout."),
            (r"^stlstm_layer\.0\.conv_last\.", "first.conv_memory."),
            (r"^stlstm_layer\.0\.", "first."),
            (r"^stlstm_layer\.(\d+)\.", _shifted("blocks", 1)),
            (r"^stlstm_layer_diff\.(\d+)\.conv_last\.", r"unused.\1."),
            (r"^stlstm_layer_diff\.", "differences."),
            (r"^(blocks\.\d+)\.conv_t_cc\.", r"\1.conv_h."),
            (r"^(blocks\.\d+)\.conv_s_cc\.", r"\1.conv_m."),
            (r"^(blocks\.\d+)\.conv_x_cc\.", r"\1.conv_x."),
            (r"^(blocks\.\d+)\.conv_last\.", r"\1.conv_memory."),
            (r"^(blocks\.\d+)\.(ct_weight|oc_weight)$", r"\1.stationary.\2"),
            (r"^(blocks\.\d+)\.conv_(h|x)_concat\.", r"\1.stationary.conv_\2."),
            (r"^(differences\.\d+)\.conv_(h|x)_concat\.", r"\1.conv_\2."),
        )
    ),
    "e3d_lstm": KeyMap(
        (
            (r"^conv_last\.", "readout.conv."),
            (r"\.conv3d\.", "."),
            (r"^cell_list\.(\d+)\._norm_c_t\.", r"cells.\1.norm_cell."),
            *_CELLS[1:],
        )
    ),
    "mau": KeyMap(
        (
            (r"^(encoders|decoders)\.(\d+)\.[^.]+\.", r"\1.\2.0."),  # encoder_t_conv-1, encoder_tK, c_decoderK
            (r"^srcnn\.0\.", "readout."),
            (r"^(merge|conv_last_sr)\.", r"unused.\1."),
            (r"^cell_list\.", "cells."),
        )
    ),
    "phydnet": KeyMap(
        (
            (r"^encoder\.encoder_E\.c(\d)\.main\.", _shifted("encoder", 1)),
            (r"^encoder\.encoder_Ep\.c(\d)\.main\.", _shifted("encoder_physics", 1)),
            (r"^encoder\.encoder_Er\.c(\d)\.main\.", _shifted("encoder_residual", 1)),
            (r"^encoder\.decoder_Dp\.upc(\d)\.main\.", _shifted("decoder_physics", 1)),
            (r"^encoder\.decoder_Dr\.upc(\d)\.main\.", _shifted("decoder_residual", 1)),
            (r"^encoder\.decoder_D\.upc(\d)\.main\.", _shifted("readout", 1)),
            (r"^encoder\.decoder_D\.upc3\.", "readout.2."),
            (r"^encoder\.phycell\.cell_list\.0\.F\.conv1\.", "phycell.physics.0."),
            (r"^encoder\.phycell\.cell_list\.0\.F\.bn1\.", "phycell.physics.1."),
            (r"^encoder\.phycell\.cell_list\.0\.F\.conv2\.", "phycell.physics.2."),
            (r"^encoder\.phycell\.cell_list\.0\.convgate\.", "phycell.gate."),
            (r"^encoder\.convcell\.cell_list\.(\d+)\.conv\.", r"residual_cells.\1.conv."),
        ),
        # the PhyCell and ConvLSTM are registered twice in OpenSTL (top level and inside the encoder); K2M's
        # constant matrices are svqbench's non-persistent buffer
        ignored=(r"^phycell\.", r"^convcell\.", r"^k2m\."),
    ),
    "swinlstm": KeyMap(
        (
            (r"^Downsample\.patch_embed\.", "embed."),
            (r"^Upsample\.patch_embed\.", "unused.embed."),  # variant d builds a second embedding it never calls
            (r"^Downsample\.layers\.(\d+)\.STBs\.", r"down.\1.blocks."),
            (r"^Downsample\.downsample\.", "merge."),
            (r"^Upsample\.layers\.(\d+)\.STBs\.", r"up.\1.blocks."),
            (r"^Upsample\.upsample\.", "expand."),
            (r"^Upsample\.Unembed\.Conv\.", "readout.0."),
            (r"^ST\.patch_embed\.", "embed."),
            (r"^ST\.layer\.STBs\.", "cell.blocks."),
            (r"^ST\.patch_inflated\.Conv\.", "readout.0."),
            (r"\.mlp\.fc1\.", ".mlp.0."),
            (r"\.mlp\.fc2\.", ".mlp.3."),
            (r"\.red\.", ".fuse."),
        ),
        # timm 0.6's Swin blocks store their relative-position index and shift mask; svqbench recomputes both
        ignored=(r"\.attn\.relative_position_index$", r"\.attn_mask$"),
    ),
}

# SimVP: the spatial encoder and decoder, then the translator (OpenSTL's hid)
_SIMVP = (
    (r"^enc\.enc\.(\d+)\.conv\.conv\.", r"encoder.layers.\1.conv."),
    (r"^enc\.enc\.(\d+)\.conv\.norm\.", r"encoder.layers.\1.norm."),
    (r"^dec\.dec\.(\d+)\.conv\.conv\.", r"decoder.layers.\1.conv."),
    (r"^dec\.dec\.(\d+)\.conv\.norm\.", r"decoder.layers.\1.norm."),
    (r"^dec\.readout\.", "decoder.readout."),
)
_META = ((r"^hid\.enc\.(\d+)\.", r"translator.layers.\1."),)  # MetaVP: N_T blocks, each a MetaBlock
_DWCONV = ((r"\.mlp\.dwconv\.dwconv\.", ".mlp.dwconv."),)

TRANSLATORS = {
    "incepu": KeyMap(
        (
            *_SIMVP,
            (r"^hid\.(enc|dec)\.(\d+)\.conv1\.", lambda m: f"translator.{m[1]}oder.{m[2]}.reduce."),
            (r"^hid\.(enc|dec)\.(\d+)\.layers\.(\d+)\.", lambda m: f"translator.{m[1]}oder.{m[2]}.branches.{m[3]}."),
        )
    ),
    "gsta": KeyMap((*_SIMVP, *_META, *_DWCONV)),
    "tau": KeyMap((*_SIMVP, *_META, *_DWCONV)),
    "van": KeyMap((*_SIMVP, *_META, *_DWCONV, (r"\.attn\.spatial_gating_unit\.", ".attn.lka."))),
    "uniformer": KeyMap((*_SIMVP, *_META, (r"\.mlp\.fc1\.", ".mlp.0."), (r"\.mlp\.fc2\.", ".mlp.3."))),
    "convnext": KeyMap((*_SIMVP, *_META, (r"\.mlp\.fc1\.", ".mlp.0."), (r"\.mlp\.fc2\.", ".mlp.2."))),
    "swin": KeyMap(
        (*_SIMVP, *_META, (r"\.mlp\.fc1\.", ".mlp.0."), (r"\.mlp\.fc2\.", ".mlp.3.")),
        ignored=(r"\.attn\.relative_position_index$", r"\.attn_mask$"),  # timm 0.6's buffers, recomputed here
    ),
    **{name: KeyMap((*_SIMVP, *_META)) for name in ("vit", "mlpmixer", "convmixer", "poolformer", "hornet", "moganet")},
}


def key_map(model: str, translator: str | None = None) -> KeyMap | None:
    """The rules for svqbench model ``model`` (SimVP: its ``translator``); None when OpenSTL has no such model."""
    if model == "simvp":
        return TRANSLATORS.get(translator or "gsta")
    return RECURRENT.get(model)


def supported() -> list[str]:
    """What ``import-openstl`` reads, for its messages: the recurrent models and SimVP's translators."""
    return [*RECURRENT, *(f"simvp/{name}" for name in TRANSLATORS)]
