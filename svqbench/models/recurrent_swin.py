"""SwinLSTM (Tang et al. 2023): an LSTM whose state is updated by Swin Transformer blocks, in OpenSTL's two
variants; structure and sizes as OpenSTL's ``SwinLSTM_D_Model`` and ``SwinLSTM_B_Model`` (on timm 0.6's Swin
blocks, the version its environment pins).

Each step embeds the frame (a p x p convolution of stride p to ``embed_dim`` channels, LayerNorm) into a map of
tokens; cells update it with their (h, c); a stride-2 transposed 3x3 convolution and a sigmoid read the top
map out as the next frame. That readout always doubles the grid, so the patch grid is half the frame
(``patch_size`` 2), as in OpenSTL.

The SwinLSTM cell on input x with state (h, c), all token maps of one width: a chain of Swin blocks, the
first attending to x fused with h (both through the block's first LayerNorm, concatenated, a linear back to
the width), every even-numbered one after it to its predecessor's output fused with x, odd-numbered ones to
their predecessor's output alone. With o the last output: f = sigmoid(o), c' = f * (c + tanh(o)),
h' = f * tanh(c'); h' is also the cell's output.

- ``variant: b`` (base): one cell of ``depths`` blocks with ``num_heads`` heads on the patch grid.
- ``variant: d`` (deep): down level k = 0, 1, ... (0: the patch grid) is a cell of ``depths_downsample[k]``
  blocks at embed_dim * 2^k channels, then patch merging (each 2 x 2 tokens concatenated, LayerNorm, a
  linear to twice the width) halves the grid. Back up, coarsest first, level k is a cell of
  ``depths_upsample[k]`` blocks at the width and grid that merging k made, then patch expanding (a linear to
  twice the width, each token's channels spread over 2 x 2 tokens, LayerNorm) returns to level k's grid
  and width. ``num_heads[k]`` heads at level k both ways; every cell keeps its own (h, c).

Swin blocks are :class:`~svqbench.models.translators.SwinBlock` with timm's window rule (``window_size``;
a map no larger than it is one unshifted window; odd-numbered blocks shift by half a window) and timm's
mask of the shifted windows, MLP ratio 4, no dropout, stochastic depth rising linearly from 0 to
``drop_path_rate`` over each stack's blocks (variant d: the down stack level by level, the up stack
reversed within each level, as OpenSTL), ``drop_path_rate`` in every block of variant b. Initialisation as
OpenSTL's: PyTorch's defaults (timm does not re-initialise Swin blocks used outside its SwinTransformer),
relative-position tables truncated normal (std 0.02).

The frames it is fed are OpenSTL's, in training as at test time: the T_in true frames, then its own
predictions, T_in + T_out - 1 steps, the last T_out of them the forecast. OpenSTL's SwinLSTM has no
scheduled sampling, so neither has this model (no ``sampling_*`` keys): its training pass is its test pass.
Further frames (:func:`svqbench.models.forecast` beyond T_out) come from new passes on the latest T_in frames,
predictions included, as for every recurrent model here.

Differences from OpenSTL, on purpose: the training loss covers the T_out outputs (OpenSTL's also the
predictions of input frames 2 .. T_in); drop-path coins are keyed per sample (svqbench.keyed). OpenSTL
builds parameters its forward never calls: the fusion linear of every odd-numbered block and, in variant d,
a second patch embedding (``UpSample.patch_embed``); they are kept, frozen, so that the parameter count is
the published one. OpenSTL requires square frames; here any frame works whose grids the windows tile.

Shapes: B batch, C channels, H x W frame, h x w = H/2 x W/2 the patch grid, E = embed_dim; cells work on
channels-last token maps (B, h / 2^k, w / 2^k, E * 2^k).
"""

from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from svqbench.errors import SvqbenchError
from svqbench.models.base import MODELS
from svqbench.models.recurrent import RecurrentForecaster, SamplingSchedule
from svqbench.models.shape import ClipShape
from svqbench.models.translators import SwinBlock

MLP_RATIO = 4.0
PATCH_SIZE = 2  # the readout doubles the patch grid back to the frame
VARIANT_KEYS = {"d": ("depths_downsample", "depths_upsample"), "b": ("depths",)}
DEFAULTS = {
    "d": {"depths_downsample": [2, 6], "depths_upsample": [6, 2], "num_heads": [4, 8]},
    "b": {"depths": 12, "num_heads": 4},
}  # OpenSTL's configs/mmnist/SwinLSTM-D.py and configs/human/SwinLSTM-B.py


def timm_window(grid: tuple[int, int], window_size: int, index: int) -> tuple[int, int]:
    """(window, shift) of block ``index`` on a ``grid`` map, as timm 0.6's Swin block chooses them."""
    if min(grid) <= window_size:
        return min(grid), 0
    return window_size, window_size // 2 if index % 2 else 0


class SwinLSTMBlock(SwinBlock):
    """A Swin block on channels-last maps (B, h, w, E) that may attend to its input fused with a second map."""

    def __init__(self, width: int, grid: tuple[int, int], index: int, heads: int, window_size: int, drop_path: float):
        window = timm_window(grid, window_size, index)
        super().__init__(width, grid, index, MLP_RATIO, 0.0, drop_path, heads, window=window, masked=True)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()  # PyTorch's init, as OpenSTL's
        self.fuse = nn.Linear(2 * width, width)
        if index % 2:  # odd-numbered blocks never fuse (built, never called in OpenSTL)
            self.fuse.requires_grad_(False)

    def forward(self, x: Tensor, other: Tensor | None = None) -> Tensor:
        """x and other (B, h, w, E) -> (B, h, w, E); the residual path carries x alone."""
        attend = self.norm1(x)
        if other is not None:
            attend = self.fuse(torch.cat([attend, self.norm1(other)], dim=-1))
        x = x + self.drop_path(self._windowed_attention(attend))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinLSTMCell(nn.Module):
    """The chain of Swin blocks and the gates of the module docstring, on maps of one width and grid."""

    def __init__(self, width: int, grid: tuple[int, int], heads: int, window_size: int, drop_paths: Sequence[float]):
        super().__init__()
        self.width = width
        self.grid = grid
        self.blocks = nn.ModuleList(
            SwinLSTMBlock(width, grid, j, heads, window_size, rate) for j, rate in enumerate(drop_paths)
        )

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """x, h, c (B, h, w, E) -> new (h, c)."""
        out = self.blocks[0](x, h)
        for j, block in enumerate(self.blocks[1:], start=1):
            out = block(out, x if j % 2 == 0 else None)
        gate = torch.sigmoid(out)
        c_new = gate * (c + torch.tanh(out))
        return gate * torch.tanh(c_new), c_new


class PatchEmbedding(nn.Module):
    """(B, C, H, W) -> (B, H/p, W/p, E): a p x p convolution of stride p, then LayerNorm."""

    def __init__(self, channels: int, width: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(channels, width, patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(width)

    def forward(self, frame: Tensor) -> Tensor:
        return self.norm(self.proj(frame).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """(B, h, w, E) -> (B, h/2, w/2, 2E): each 2 x 2 tokens' channels side by side (timm's order: top left,
    bottom left, top right, bottom right), LayerNorm, a bias-free linear."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * width)
        self.reduction = nn.Linear(4 * width, 2 * width, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.norm(rearrange(x, "b (h p) (w q) c -> b h w (q p c)", p=2, q=2)))


class PatchExpanding(nn.Module):
    """(B, h, w, E) -> (B, 2h, 2w, E/2): a bias-free linear to 2E, each token's channels spread over 2 x 2
    tokens (row-major), LayerNorm."""

    def __init__(self, width: int):
        super().__init__()
        self.expand = nn.Linear(width, 2 * width, bias=False)
        self.norm = nn.LayerNorm(width // 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(rearrange(self.expand(x), "b h w (p q c) -> b (h p) (w q) c", p=2, q=2))


class SwinLSTM(RecurrentForecaster):
    """The patch embedding, the readout and the cells' states; subclasses build the cells (:meth:`cells`)
    and step through them. The frames enter whole (patch 1 of the base class): the embedding cuts them."""

    trains_with_targets = False  # no scheduled sampling: a training pass is the test-time pass

    def __init__(self, shape: ClipShape, embed_dim: int):
        readout = nn.Sequential(
            nn.ConvTranspose2d(embed_dim, shape.channels, 3, stride=2, padding=1, output_padding=1), nn.Sigmoid()
        )
        never = SamplingSchedule(scheduled_sampling=False)
        super().__init__(shape, [embed_dim], 1, never, readout=readout)
        self.token_grid = (shape.height // PATCH_SIZE, shape.width // PATCH_SIZE)
        self.embed = PatchEmbedding(shape.channels, embed_dim, PATCH_SIZE)

    def cells(self) -> list[SwinLSTMCell]:
        raise NotImplementedError

    def initial_state(self, batch: int, like: Tensor) -> dict[str, list[Tensor]]:
        zeros = [like.new_zeros(batch, *cell.grid, cell.width) for cell in self.cells()]
        return {"h": list(zeros), "c": list(zeros)}

    def step_cell(self, index: int, x: Tensor, state: dict[str, list[Tensor]]) -> Tensor:
        """Update cell ``index``'s state on x; returns its new h."""
        state["h"][index], state["c"][index] = self.cells()[index](x, state["h"][index], state["c"][index])
        return state["h"][index]


class SwinLSTMBase(SwinLSTM):
    def __init__(
        self, shape: ClipShape, embed_dim: int, depths: int, num_heads: int, window_size: int, drop_path_rate: float
    ):
        super().__init__(shape, embed_dim)
        self.cell = SwinLSTMCell(embed_dim, self.token_grid, num_heads, window_size, [drop_path_rate] * depths)

    def cells(self) -> list[SwinLSTMCell]:
        return [self.cell]

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        """x (B, C, H, W) -> the cell's new h (B, E, h, w)."""
        return self.step_cell(0, self.embed(x), state).permute(0, 3, 1, 2)


def linear_rates(depths: Sequence[int], top: float) -> list[list[float]]:
    """Each level's share of a 0 .. top linear schedule over all the stack's blocks."""
    rates = torch.linspace(0, top, sum(depths), device="cpu").tolist()  # plain numbers, on the meta device too
    starts = [sum(depths[:k]) for k in range(len(depths))]
    return [rates[start : start + depth] for start, depth in zip(starts, depths)]


class SwinLSTMDeep(SwinLSTM):
    """``down[k]``, ``merge[k]`` for k = 0 .. L-1; ``up[i]``, ``expand[i]`` in the order they run, coarsest
    first (i = L-1-k)."""

    def __init__(
        self,
        shape: ClipShape,
        embed_dim: int,
        depths_downsample: Sequence[int],
        depths_upsample: Sequence[int],
        num_heads: Sequence[int],
        window_size: int,
        drop_path_rate: float,
    ):
        super().__init__(shape, embed_dim)
        levels = len(depths_downsample)
        widths = [embed_dim * 2**k for k in range(levels + 1)]
        grids = [(self.token_grid[0] // 2**k, self.token_grid[1] // 2**k) for k in range(levels + 1)]
        down_rates = linear_rates(depths_downsample, drop_path_rate)
        up_rates = linear_rates(depths_upsample, drop_path_rate)
        self.down = nn.ModuleList(
            SwinLSTMCell(widths[k], grids[k], num_heads[k], window_size, down_rates[k]) for k in range(levels)
        )
        self.merge = nn.ModuleList(PatchMerging(widths[k]) for k in range(levels))
        coarsest_first = range(levels - 1, -1, -1)
        self.up = nn.ModuleList(
            SwinLSTMCell(widths[k + 1], grids[k + 1], num_heads[k], window_size, up_rates[k][::-1])
            for k in coarsest_first
        )
        self.expand = nn.ModuleList(PatchExpanding(widths[k + 1]) for k in coarsest_first)
        self.unused = nn.ModuleDict({"embed": PatchEmbedding(shape.channels, embed_dim, PATCH_SIZE)})
        self.unused.requires_grad_(False)

    def cells(self) -> list[SwinLSTMCell]:
        return [*self.down, *self.up]

    def advance(self, x: Tensor, state: dict[str, list[Tensor]], training_terms: list[Tensor]) -> Tensor:
        """x (B, C, H, W) -> the top expanded map (B, E, h, w)."""
        tokens = self.embed(x)
        for k, merge in enumerate(self.merge):
            tokens = merge(self.step_cell(k, tokens, state))
        for i, expand in enumerate(self.expand):
            tokens = expand(self.step_cell(len(self.down) + i, tokens, state))
        return tokens.permute(0, 3, 1, 2)


def positive_ints(key: str, value: object, one: bool) -> list[int]:
    """``value`` as a list of positive integers (``one``: a single integer), else a one-line error."""
    values = [value] if one else value
    if isinstance(values, (list, tuple)) and values:
        if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
            return list(values)
    expected = "a positive integer" if one else "a non-empty list of positive integers"
    raise SvqbenchError(f"model.{key}={value!r}; valid: {expected}")


def check_windows(grids: list[tuple[int, int]], window_size: int) -> None:
    for grid in grids:
        window = timm_window(grid, window_size, 0)[0]
        if grid[0] % window or grid[1] % window:
            raise SvqbenchError(
                f"model.window_size={window_size}: windows of {window} do not tile a {grid[0]}x{grid[1]} token grid; "
                "valid: a window dividing every level's grid"
            )


def check_heads(widths: list[int], heads: list[int]) -> None:
    for width, count in zip(widths, heads):
        if width % count:
            raise SvqbenchError(f"model.num_heads: {width} channels do not split into {count} heads; valid: divisors")


@MODELS.register("swinlstm")
def swinlstm(
    shape: ClipShape,
    variant: str = "d",
    patch_size: int = PATCH_SIZE,
    embed_dim: int = 128,
    depths: int | None = None,
    depths_downsample: Sequence[int] | None = None,
    depths_upsample: Sequence[int] | None = None,
    num_heads: int | Sequence[int] | None = None,
    window_size: int = 4,
    drop_path_rate: float = 0.1,
) -> SwinLSTM:
    """SwinLSTM; ``variant``: d (deep: down and up stacks of cells, defaults as OpenSTL's Moving MNIST config)
    or b (base: one cell, defaults as OpenSTL's Human3.6M config). ``depths`` is b's; ``depths_downsample``,
    ``depths_upsample`` are d's; ``num_heads``: one count (b) or one per level (d)."""
    if variant not in VARIANT_KEYS:
        raise SvqbenchError(f"model.variant={variant!r}; valid: d, b")
    given = {"depths": depths, "depths_downsample": depths_downsample, "depths_upsample": depths_upsample}
    other = "b" if variant == "d" else "d"
    for key in VARIANT_KEYS[other]:
        if given[key] is not None:
            raise SvqbenchError(
                f"model.{key} is variant {other}'s; variant {variant} takes {', '.join(VARIANT_KEYS[variant])}"
            )
    options = {**DEFAULTS[variant], **{k: v for k, v in given.items() if v is not None}}
    if num_heads is not None:
        options["num_heads"] = num_heads
    if patch_size != PATCH_SIZE:
        raise SvqbenchError(
            f"model.patch_size={patch_size}; valid: 2 (the readout doubles the patch grid, as OpenSTL's)"
        )
    embed_dim = positive_ints("embed_dim", embed_dim, one=True)[0]
    window_size = positive_ints("window_size", window_size, one=True)[0]
    if not 0.0 <= drop_path_rate < 1.0:
        raise SvqbenchError(f"model.drop_path_rate={drop_path_rate}; valid: 0 <= rate < 1")
    if shape.height % (2 * PATCH_SIZE) or shape.width % (2 * PATCH_SIZE):
        raise SvqbenchError(f"model swinlstm: frames of {shape.height}x{shape.width}; valid: sides divisible by 4")
    grid = (shape.height // PATCH_SIZE, shape.width // PATCH_SIZE)
    if variant == "b":
        depth = positive_ints("depths", options["depths"], one=True)[0]
        heads = positive_ints("num_heads", options["num_heads"], one=True)[0]
        check_heads([embed_dim], [heads])
        check_windows([grid], window_size)
        return SwinLSTMBase(shape, embed_dim, depth, heads, window_size, drop_path_rate)
    down = positive_ints("depths_downsample", options["depths_downsample"], one=False)
    up = positive_ints("depths_upsample", options["depths_upsample"], one=False)
    heads = positive_ints("num_heads", options["num_heads"], one=False)
    if not len(down) == len(up) == len(heads):
        raise SvqbenchError(
            f"model.depths_downsample={down}, depths_upsample={up}, num_heads={heads}; valid: one entry per level each"
        )
    levels = len(down)
    if grid[0] % 2**levels or grid[1] % 2**levels:
        raise SvqbenchError(
            f"model swinlstm: {levels} patch mergings need a patch grid divisible by {2**levels}, "
            f"got {grid[0]}x{grid[1]} (frames of {shape.height}x{shape.width})"
        )
    check_heads([embed_dim * 2**k for k in range(levels)], heads)
    check_heads([embed_dim * 2 ** (k + 1) for k in range(levels)], heads)
    check_windows([(grid[0] // 2**k, grid[1] // 2**k) for k in range(levels + 1)], window_size)
    return SwinLSTMDeep(shape, embed_dim, down, up, heads, window_size, drop_path_rate)
