"""Attention maps of text tokens over image patches: the paper's Figure 2.

The map of a text token is the sequence-wise attention's probabilities with
that token as the query and the image patches as keys (section 4.4): of one
fusion layer (default the last), averaged over its heads, restricted to the
patch keys (the image [CLS] and the text are dropped) and renormalized to sum
to one, laid out on the patch grid. A word of several BPE tokens gets the mean
of its tokens' maps.

`token_attention_maps` computes maps from a model and inputs; `render_attention_map`
draws the figure (image, heat map over it, the text with the token marked) with
PIL; `attention_map_figures` does both for a batch, for TensorBoard.
"""

import math
import re

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont

from cmaclip_tf.preprocessing.image_preprocessor import CLIP_MEAN
from cmaclip_tf.preprocessing.image_preprocessor import CLIP_STD

PANEL_SIZE = 224
TEXT_HEIGHT = 56
MARGIN = 8


def token_attention_maps(model, inputs, token_positions, layer_index=-1,
                         scores=None):
    """Heat maps `[B, grid, grid]` of text tokens over the image patches.

    Args:
        model: a `CMACLIP` with sequence-wise attention (`full`, `no_ma`).
        inputs: raw model inputs, `images`, `token_ids`, `padding_mask` (`[B, ...]`).
        token_positions: per example, the positions in `token_ids` (0 is the
            start token) of the token(s) whose map to draw: an int or a list
            of ints each.
        layer_index: the fusion layer; negative counts from the end.
        scores: `model.attention_scores(inputs, layer_index)`, if already
            computed.

    Returns:
        float32 `[B, grid, grid]`, each map non-negative and summing to 1:
        the mean over heads of `softmax(QKᵀ/√d)` from the token to each patch,
        renormalized over the patches.
    """
    if scores is None:
        scores = model.attention_scores(inputs, layer_index)
    scores = np.asarray(scores, np.float32)
    num_text = int(np.shape(inputs["token_ids"])[1])
    num_image = scores.shape[-1] - num_text  # [CLS] + patches.
    grid = int(round(math.sqrt(num_image - 1)))
    if grid * grid != num_image - 1:
        raise ValueError(
            f"{num_image - 1} image patches do not form a square grid."
        )
    heads_mean = scores.mean(axis=1)  # [B, S, S]
    maps = []
    for row, positions in enumerate(token_positions):
        positions = np.atleast_1d(np.asarray(positions, int))
        queries = heads_mean[row, num_image + positions]  # [T, S]
        patches = queries[:, 1:num_image]  # Drop the [CLS] key and the text.
        patches = patches / np.maximum(patches.sum(-1, keepdims=True), 1e-12)
        maps.append(patches.mean(0).reshape(grid, grid))
    return np.stack(maps).astype(np.float32)


def word_token_positions(text_preprocessor, text, word=None):
    """Positions in the packed `token_ids` of `word`'s tokens in `text`.

    Words are the text's whitespace-separated pieces; `word` matches one
    case-insensitively, ignoring punctuation around it, or a run of pieces
    ("polka dot"). Without `word`, every text token (not start or end).

    Raises:
        ValueError: when `word` is not in `text` (the message lists the words),
            or its tokens fall beyond the packed length.
    """
    return _word_token_positions(_Tokens(text_preprocessor), text, word)


class _Tokens:
    """Token ids of strings, tokenized in batches and remembered: a word's
    positions need the text's pieces, the word with and without punctuation,
    and one call per string would run the tokenizer dozens of times."""

    def __init__(self, text_preprocessor):
        self.text_preprocessor = text_preprocessor
        self.sequence_length = text_preprocessor.sequence_length
        self.known = {}

    def __call__(self, strings):
        missing = sorted({s for s in strings if s not in self.known})
        if missing:
            ids = self.text_preprocessor.tokenize(missing).to_list()
            self.known.update(zip(missing, ids))
        return [self.known[s] for s in strings]


def _word_token_positions(tokens, text, word):
    pieces = text.split()
    counts = [len(ids) for ids in tokens(pieces)]
    starts = np.cumsum([0] + counts) + 1  # Position 0 is the start token.
    last = tokens.sequence_length - 2  # Positions 1..last hold text.
    if word is None:
        return list(range(1, min(int(starts[-1]), last + 1)))
    wanted = [_bare(w) for w in word.split()]
    bare = [_bare(p) for p in pieces]
    for i in range(len(pieces) - len(wanted) + 1):
        if bare[i : i + len(wanted)] == wanted:
            # The word's own tokens, without punctuation around it ("Shorts,").
            run, own = tokens([" ".join(pieces[i : i + len(wanted)]),
                               " ".join(wanted)])
            offset = next(
                (k for k in range(len(run) - len(own) + 1)
                 if run[k : k + len(own)] == own),
                None,
            )
            if offset is None:  # Tokens merged across the punctuation.
                offset, own = 0, run
            first = int(starts[i]) + offset
            positions = list(range(first, first + len(own)))
            if not positions or positions[-1] > last:
                raise ValueError(
                    f"{word!r} is cut off: the text has more than {last} tokens."
                )
            return positions
    raise ValueError(
        f"{word!r} is not a word of the text; its words are {pieces}."
    )


def most_attended_token(model, inputs, text_preprocessor, text, layer_index=-1,
                        scores=None):
    """The word of `text` whose tokens attend most to the image patches.

    Args:
        scores: the layer's attention probabilities of `inputs`, if already
            computed (`model.attention_scores`); else computed here.

    Returns:
        `(word, positions)`; the paper's "most relevant text token" when no
        word is given.
    """
    if scores is None:
        scores = model.attention_scores(inputs, layer_index)
    scores = np.asarray(scores, np.float32)
    num_text = int(np.shape(inputs["token_ids"])[1])
    num_image = scores.shape[-1] - num_text
    mass = scores[0].mean(0)[num_image:, 1:num_image].sum(-1)  # Per query token.
    best = None
    tokens = _Tokens(text_preprocessor)
    pieces = text.split()
    tokens(pieces + [_bare(p) for p in pieces])  # One tokenizer call.
    for piece in pieces:
        if not _bare(piece):
            continue
        try:
            positions = _word_token_positions(tokens, text, piece)
        except ValueError:
            continue
        value = float(mass[positions].mean())
        if best is None or value > best[0]:
            best = (value, piece, positions)
    if best is None:
        raise ValueError(f"No word of {text!r} fits in the packed text.")
    return best[1], best[2]


def denormalize_images(images, mean=CLIP_MEAN, std=CLIP_STD):
    """CLIP-normalized float images back to uint8 pixels."""
    images = np.asarray(images, np.float32) * np.asarray(std) + np.asarray(mean)
    return np.clip(np.round(images * 255.0), 0, 255).astype(np.uint8)


def heat_colors(values):
    """Values in [0, 1] to RGB uint8: dark blue, cyan, yellow, red (a jet-like map)."""
    stops = np.array(
        [[0, 0, 128], [0, 96, 255], [0, 224, 255], [255, 255, 0], [255, 64, 0],
         [160, 0, 0]],
        np.float32,
    )
    values = np.clip(np.asarray(values, np.float32), 0.0, 1.0) * (len(stops) - 1)
    low = np.floor(values).astype(int)
    high = np.minimum(low + 1, len(stops) - 1)
    t = (values - low)[..., None]
    return np.round(stops[low] * (1 - t) + stops[high] * t).astype(np.uint8)


def overlay_heat_map(image, attention, alpha=0.55, size=PANEL_SIZE):
    """The image with the attention map, scaled to [0, 1] by its max, over it.

    Args:
        image: uint8 `[H, W, 3]`.
        attention: `[grid, grid]`.
        alpha: opacity of the heat map.
        size: output side, pixels.

    Returns:
        `PIL.Image` of `size x size`.
    """
    attention = np.asarray(attention, np.float32)
    scaled = attention / max(float(attention.max()), 1e-12)
    heat = Image.fromarray(heat_colors(scaled)).resize((size, size), Image.NEAREST)
    base = Image.fromarray(np.asarray(image, np.uint8)).resize((size, size), Image.BICUBIC)
    return Image.blend(base.convert("RGB"), heat, alpha)


def render_attention_map(image, attention, text, word=None, caption=None,
                         size=PANEL_SIZE):
    """The figure: image, heat map over it, and the text with `word` marked.

    Args:
        image: uint8 `[H, W, 3]`.
        attention: `[grid, grid]` (from `token_attention_maps`).
        text: the title.
        word: the token the map is of; shown in [brackets] and red.
        caption: an extra line under the text (e.g. which layer and heads).
        size: side of each of the two panels, pixels.

    Returns:
        `PIL.Image` of `(2 * size + 3 * MARGIN) x (size + 2 * MARGIN +
        TEXT_HEIGHT)`.
    """
    width = 2 * size + 3 * MARGIN
    height = size + 2 * MARGIN + TEXT_HEIGHT
    figure = Image.new("RGB", (width, height), (255, 255, 255))
    base = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    figure.paste(base.resize((size, size), Image.BICUBIC), (MARGIN, MARGIN))
    figure.paste(overlay_heat_map(image, attention, size=size),
                 (2 * MARGIN + size, MARGIN))
    draw = ImageDraw.Draw(figure)
    font = _font(14)
    x, y = MARGIN, size + 2 * MARGIN
    marked = _marked_spans(text, word)
    for piece, highlight in marked:
        color = (200, 0, 0) if highlight else (0, 0, 0)
        piece_width = draw.textlength(piece, font=font)
        if x + piece_width > width - MARGIN and x > MARGIN:
            x, y = MARGIN, y + 17
        draw.text((x, y), piece, fill=color, font=font)
        x += piece_width
    if caption:
        draw.text((MARGIN, height - 16), caption, fill=(90, 90, 90), font=_font(11))
    return figure


def attention_map_figures(model, features, texts, text_preprocessor, mean=CLIP_MEAN,
                          std=CLIP_STD, words=None, layer_index=-1, size=128):
    """Figures for a batch, as float `[N, H, W, 3]` in [0, 1] (TensorBoard's format).

    Args:
        model: a `CMACLIP` with sequence-wise attention.
        features: raw model inputs for the `N` examples (normalized images).
        texts: the `N` titles the features were tokenized from.
        text_preprocessor: the `TextPreprocessor` that tokenized them.
        mean, std: the image normalization, to show the images as they were.
        words: per example the word to map, or `None` for the most attended.
        layer_index: the fusion layer.
        size: panel side, pixels.
    """
    images = denormalize_images(features["images"], mean, std)
    inputs = {k: np.asarray(features[k])
              for k in ("images", "token_ids", "padding_mask")}
    # One forward pass for the whole batch; each example reads its slice.
    scores = np.asarray(model.attention_scores(inputs, layer_index), np.float32)
    figures = []
    for i, text in enumerate(texts):
        single = {k: v[i : i + 1] for k, v in inputs.items()}
        own = scores[i : i + 1]
        word = words[i] if words else None
        if word is None:
            word, positions = most_attended_token(
                model, single, text_preprocessor, text, layer_index, scores=own
            )
        else:
            positions = word_token_positions(text_preprocessor, text, word)
        attention = token_attention_maps(
            model, single, [positions], layer_index, scores=own
        )[0]
        figure = render_attention_map(images[i], attention, text, word, size=size)
        figures.append(np.asarray(figure, np.float32) / 255.0)
    return np.stack(figures)


def _bare(piece):
    return re.sub(r"^\W+|\W+$", "", piece.lower())


def _marked_spans(text, word):
    """`[(piece, highlighted)]` with the first whole-word `word` bracketed."""
    if word:
        match = re.search(
            rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, re.IGNORECASE
        )
        if match:
            spans = [(text[: match.start()], False),
                     (f"[{match.group(0)}]", True),
                     (text[match.end():], False)]
            # Split into words so that long titles wrap.
            out = []
            for piece, highlight in spans:
                if highlight:
                    out.append((piece, True))
                    continue
                out += [(w, False) for w in re.findall(r"\S+\s*|\s+", piece)]
            return out
    return [(w, False) for w in re.findall(r"\S+\s*|\s+", text)]


def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size.
        return ImageFont.load_default()
