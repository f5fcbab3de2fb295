"""Score-CAM and Ablation-CAM: channel weights from the class score of perturbed inputs, batched;
and what such a run costs.

Both run one forward pass for the activations and the classes, then about one more per
channel: the perturbed inputs of one image go through a compiled forward pass in batches
of ``Explainer.batch_size``.

* Score-CAM (Wang et al., 2020): each channel's map, upsampled to the input (bilinear,
  pixel centres) and scaled min-max to [0, 1], masks the model's input (in the model's
  input space, after preprocessing, as tf-keras-vis and pytorch-grad-cam do); the channel's
  weight is the class probability (softmax of the pre-softmax scores) of the masked input.
  ``max_channels`` N keeps the N channels of largest activation standard deviation over
  positions (Faster Score-CAM, tf-keras-vis ``max_N``).
* Ablation-CAM (Desai & Ramaswamy, 2020): w_k = (y^c - y^c_k) / |y^c|, the relative drop of
  the pre-softmax class score when channel k of the layer is zeroed (0 where y^c = 0). The paper
  divides by y^c, which it takes to be positive; |y^c| keeps the sign of the drop for negative
  scores too (top-k ranks below 1, unlikely classes, class 0 of a sigmoid output).

Either map is ReLU(sum_k w_k A^k) over the channels used (or their first principal
component with eigen-smooth).
"""
from __future__ import annotations

import numpy as np

from ._tf import import_tf
from .graph import build_explainer_model
from .methods import channel_weighted_map


def perturbation_maps(explainer, batch: np.ndarray, classes: np.ndarray):
    """Maps (B, K, h, w) for ``explainer.method`` ('scorecam' or 'ablationcam').

    Args:
        batch: float32 (B, H, W, 3) photos at the input size, 0-255.
        classes: int32 (B, K): classes, or -1 for the ranked ones.

    Returns:
        a :class:`~gradcam.cam.BatchResult`.
    """
    tf, _ = import_tf()
    from .cam import BatchResult

    activations, chosen, probabilities, scores = (
        t.numpy() for t in explainer._features(tf.constant(batch), tf.constant(classes)))
    weigh = _scorecam_weights if explainer.method == "scorecam" else _ablation_weights
    cams = np.zeros((len(batch), chosen.shape[1]) + activations.shape[1:3], np.float32)
    for i in range(len(batch)):
        channels = select_channels(activations[i], explainer.max_channels)
        weights = weigh(explainer, batch[i], activations[i], channels, chosen[i], scores[i])  # (K ranks, n)
        used = tf.constant(activations[i][None, :, :, channels])
        for k in range(chosen.shape[1]):
            cams[i, k] = channel_weighted_map(used, tf.constant(weights[k][None]), explainer.eigen_smooth).numpy()[0]
    return BatchResult(cams, chosen, probabilities)


def select_channels(activations: np.ndarray, max_channels: int | None) -> np.ndarray:
    """Indices of the channels to use: all, or the ``max_channels`` of largest standard deviation
    over positions (largest first, as ``tf.math.top_k`` orders them)."""
    count = activations.shape[-1]
    if max_channels is None or max_channels >= count:
        return np.arange(count)
    tf, _ = import_tf()
    spread = tf.math.reduce_std(tf.constant(activations), axis=(0, 1))
    return tf.math.top_k(spread, k=max_channels).indices.numpy()


def _batches(total: int, size: int):
    for start in range(0, total, size):
        yield start, min(total, start + size)


def _scorecam_weights(explainer, image, activations, channels, chosen, scores) -> np.ndarray:
    """(K ranks, n channels): probability of each rank's class for the input masked by each channel."""
    tf, _ = import_tf()
    step = _compiled(explainer, "_scorecam_step", _make_scorecam_step)
    model_input = explainer._preprocess(tf.constant(image[None]))
    maps = np.moveaxis(activations[:, :, channels], -1, 0)  # (n, h, w)
    weights = np.empty((len(chosen), len(channels)), np.float32)
    for start, end in _batches(len(channels), explainer.batch_size):
        probabilities = step(model_input, tf.constant(maps[start:end])).numpy()
        weights[:, start:end] = probabilities[:, chosen].T
        _progress(explainer, end, len(channels))
    return weights


def _make_scorecam_step(explainer):
    tf, _ = import_tf()
    height, width = explainer.input_size

    def step(model_input, maps):
        """model_input (1, H, W, 3) preprocessed; maps (n, h, w) -> probabilities (n, C) of the masked inputs."""
        masks = tf.image.resize(maps[..., None], (height, width), method="bilinear")  # half-pixel centres
        low = tf.reduce_min(masks, axis=(1, 2, 3), keepdims=True)
        high = tf.reduce_max(masks, axis=(1, 2, 3), keepdims=True)
        masks = tf.math.divide_no_nan(masks - low, high - low)
        _, raw = explainer._explainer(model_input * masks, training=False)
        return explainer._scores_and_probabilities(raw)[1]

    return tf.function(step, input_signature=[tf.TensorSpec((1, height, width, 3), tf.float32),
                                              tf.TensorSpec((None, None, None), tf.float32)])


def _ablation_weights(explainer, image, activations, channels, chosen, scores) -> np.ndarray:
    """(K ranks, n channels): relative drop of each rank's class score with each channel zeroed."""
    tf, _ = import_tf()
    step = _compiled(explainer, "_ablation_step", _make_ablation_step)
    count = activations.shape[-1]
    weights = np.empty((len(chosen), len(channels)), np.float32)
    original = scores[chosen].astype(np.float64)  # (K,)
    for start, end in _batches(len(channels), explainer.batch_size):
        scale = np.ones((end - start, count), np.float32)
        scale[np.arange(end - start), channels[start:end]] = 0.0
        ablated = step(tf.constant(np.repeat(image[None], end - start, axis=0)), tf.constant(scale)).numpy()
        drop = original[:, None] - ablated[:, chosen].T.astype(np.float64)
        weights[:, start:end] = np.divide(drop, np.abs(original[:, None]), out=np.zeros_like(drop),
                                          where=original[:, None] != 0)
        _progress(explainer, end, len(channels))
    return weights


def _make_ablation_step(explainer):
    tf, _ = import_tf()
    height, width = explainer.input_size
    channels = int(explainer.target.output_shape[-1])
    rows = explainer.batch_size
    scale_variable = tf.Variable(tf.ones((rows, channels)), trainable=False, name="gradcam_ablation_scale")
    model = build_explainer_model(explainer.classifier.model, explainer.target, explainer.head, scale_variable)

    def step(images, scale):
        """images (n, H, W, 3) 0-255, n <= batch_size; scale (n, K) -> pre-softmax class scores (n, C)."""
        padding = tf.ones((rows - tf.shape(scale)[0], channels))
        scale_variable.assign(tf.concat([scale, padding], axis=0))
        _, raw = model(explainer._preprocess(images), training=False)
        return explainer._scores_and_probabilities(raw)[0]

    return tf.function(step, input_signature=[tf.TensorSpec((None, height, width, 3), tf.float32),
                                              tf.TensorSpec((None, channels), tf.float32)])


def seconds_per_image(explainer) -> float:
    """Estimated seconds to explain one image: one timed batch of forward passes (after a traced
    one) times :meth:`~gradcam.cam.Explainer.passes_per_image`."""
    import time

    images = np.zeros((explainer.batch_size, *explainer.input_size, 3), np.float32)
    explainer.predict(images, batch_size=explainer.batch_size)  # trace
    start = time.perf_counter()
    explainer.predict(images, batch_size=explainer.batch_size)
    return (time.perf_counter() - start) / len(images) * explainer.passes_per_image()


def _compiled(explainer, name: str, make):
    """The explainer's compiled step called ``name``, made (and traced) once."""
    step = getattr(explainer, name, None)
    if step is None:
        step = make(explainer)
        setattr(explainer, name, step)
    return step


def _progress(explainer, done: int, total: int) -> None:
    if explainer.on_progress is not None:
        explainer.on_progress(done, total)
