"""Dense layers differentiated as (W @ dy^T)^T: the same values, the same gradients, and no dy @ W^T left."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import keras

from gradcam.explainers.explainer import Explainer
from gradcam.models.dense_backward import fast_backward_dense, matmul_fast_backward, plain_dense

tf = pytest.importorskip("tensorflow")


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_the_product_and_its_gradients_are_the_ones_worked_out_in_float64(scale):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((8, 300)) * scale).astype(np.float32)
    b = (rng.standard_normal((300, 50)) * scale).astype(np.float32)
    dy = (rng.standard_normal((8, 50)) * scale).astype(np.float32)
    a_t, b_t = tf.constant(a), tf.constant(b)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a_t, b_t])
        y = matmul_fast_backward(a_t, b_t)
    da, db = tape.gradient(y, [a_t, b_t], output_gradients=tf.constant(dy))
    a64, b64, dy64 = (v.astype(np.float64) for v in (a, b, dy))
    np.testing.assert_allclose(y.numpy(), a64 @ b64, rtol=1e-5, atol=1e-5 * scale * scale)
    np.testing.assert_allclose(da.numpy(), dy64 @ b64.T, rtol=1e-5, atol=1e-5 * scale * scale)
    np.testing.assert_allclose(db.numpy(), a64.T @ dy64, rtol=1e-5, atol=1e-5 * scale * scale)


def _dense_head_model(bias: bool = True, activation: str = "softmax", hidden_scale: float | None = None):
    """conv 'last_conv' -> flatten -> Dense relu -> [Rescaling(hidden_scale)] -> Dense (VGG's head in small)."""
    k = keras()
    k.utils.set_random_seed(3)
    inputs = k.Input((16, 16, 3))
    x = k.layers.Conv2D(6, 3, strides=2, activation="relu", name="last_conv")(inputs)
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(40, activation="relu", use_bias=bias, name="fc1")(x)
    if hidden_scale is not None:
        x = k.layers.Rescaling(hidden_scale)(x)
    return k.Model(inputs, k.layers.Dense(5, activation=activation, use_bias=bias, name="predictions")(x))


@pytest.mark.parametrize("activation", ["relu", "linear", "tanh"])
@pytest.mark.parametrize("bias", [True, False])
def test_the_layer_gives_the_dense_layers_own_values_bit_for_bit(activation, bias):
    k = keras()
    k.utils.set_random_seed(1)
    dense = k.layers.Dense(30, activation=activation, use_bias=bias)
    x = np.random.default_rng(2).standard_normal((7, 90)).astype(np.float32)
    own = dense(x).numpy()
    if bias:
        dense.bias.assign(np.random.default_rng(4).standard_normal(30).astype(np.float32))
        own = dense(x).numpy()
    assert np.array_equal(fast_backward_dense(dense, False)(x).numpy(), own)
    pre_activation = x @ dense.kernel.numpy() + (dense.bias.numpy() if bias else 0)
    np.testing.assert_allclose(fast_backward_dense(dense, True)(x).numpy(), pre_activation, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 1e-4])
def test_grad_cam_through_a_dense_head_equals_the_plain_tape_on_the_callers_model(scale):
    model = _dense_head_model()
    for layer in model.layers:  # gradients of ~1e-4 as well as ~1
        if layer.name == "predictions":
            layer.kernel.assign(layer.kernel.numpy() * scale)
    images = np.random.default_rng(5).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    result = Explainer(model, layer="last_conv", preprocess="none").explain_batch(images)
    expected = _tape_cams(model, images, result.class_index)
    np.testing.assert_allclose(result.cams, expected,
                               rtol=1e-4, atol=1e-6 * expected.max())


def _tape_cams(model, images, class_index):
    """Grad-CAM of ``last_conv`` worked out independently: the caller's model split at last_conv and at the
    input of the final Dense 'predictions', the score before the softmax, float64 sums."""
    split = keras().Model(model.inputs, [model.get_layer("last_conv").output, model.get_layer("predictions").input])
    last = model.get_layer("predictions")
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        activations, hidden = split(x)
        logits = tf.matmul(hidden, last.kernel) + last.bias
        score = tf.reduce_sum(tf.gather(logits, class_index, axis=1, batch_dims=1))
    gradients = tape.gradient(score, activations).numpy().astype(np.float64)
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("bhwk,bk->bhw", activations.numpy().astype(np.float64), weights), 0)


@pytest.mark.parametrize("method", ["gradcam", "guided-gradcam"])
def test_a_dense_layer_called_twice_explains_as_the_plain_tape(method):
    """Each call of a shared layer gets its own wrapper, named apart (one name twice: Keras refuses the graph)."""
    k = keras()
    k.utils.set_random_seed(3)
    inputs = k.Input((16, 16, 3))
    x = k.layers.Conv2D(6, 3, strides=2, activation="relu", name="last_conv")(inputs)
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(24, activation="relu", name="fc0")(x)
    shared = k.layers.Dense(24, activation="relu", name="fc1")
    x = shared(shared(x))
    model = k.Model(inputs, k.layers.Dense(5, activation="softmax", name="predictions")(x))
    images = np.random.default_rng(5).uniform(0, 255, (3, 16, 16, 3)).astype(np.float32)
    result = Explainer(model, layer="last_conv", preprocess="none", method=method).explain_batch(images)
    if method == "gradcam":
        expected = _tape_cams(model, images, result.class_index)
        np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-6 * expected.max())
    assert np.isfinite(result.cams).all()


@pytest.mark.parametrize("policy", ["float64", "mixed_float16", "mixed_bfloat16"])
def test_a_float32_model_explained_under_another_global_dtype_policy_computes_in_float32(policy):
    """The graph's own layers take the caller's layers' dtype policies, not the global one: under float64 the
    fast Dense's product met a float32 input (TypeError), under mixed_float16 a Dense output of ~6e5 overflowed
    float16 (scores inf, classes wrong) and the head's pre-activation was computed in float16 (2e-4 off)."""
    k = keras()
    rescaled = _dense_head_model(hidden_scale=1e-3)
    fc1 = rescaled.get_layer("fc1")
    fc1.kernel.assign(fc1.kernel.numpy() * 2000.0)  # hidden values beyond float16's 65504
    images = np.random.default_rng(5).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    expected_probabilities = rescaled(images).numpy()
    assert k.Model(rescaled.inputs, fc1.output)(images).numpy().max() > 65504
    before = k.config.dtype_policy()
    k.config.set_dtype_policy(policy)
    try:
        result = Explainer(rescaled, layer="last_conv", preprocess="none").explain_batch(images)
    finally:
        k.config.set_dtype_policy(before)
    assert np.array_equal(result.class_index, expected_probabilities.argmax(axis=1))
    np.testing.assert_allclose(result.probabilities, expected_probabilities, rtol=1e-5, atol=1e-7)
    expected = _tape_cams(rescaled, images, result.class_index)
    np.testing.assert_allclose(result.cams, expected, rtol=1e-4, atol=1e-6 * expected.max())


def _slow_input_gradients(graph, kernel_shapes) -> list:
    """MatMul ops of ``graph`` of the form dy @ W^T with W of one of ``kernel_shapes``."""
    return [op for op in graph.get_operations() if op.type == "MatMul" and op.get_attr("transpose_b")
            and tuple(op.inputs[1].shape) in kernel_shapes]


def test_the_compiled_step_has_no_dense_input_gradient_of_the_slow_form():
    model = _dense_head_model()
    explainer = Explainer(model, layer="last_conv", preprocess="none")
    graph = explainer._steps.step.get_concrete_function().graph
    shapes = {tuple(model.get_layer(name).kernel.shape) for name in ("fc1", "predictions")}
    assert [op for op in graph.get_operations() if op.type == "MatMul"]  # the head is in this graph
    assert _slow_input_gradients(graph, shapes) == []
    guided = Explainer(model, layer="last_conv", preprocess="none", method="guided-gradcam")
    assert _slow_input_gradients(guided._steps.step.get_concrete_function().graph, shapes) == []


def test_only_a_plain_float32_dense_on_a_batch_of_vectors_is_taken():
    k = keras()

    class MyDense(k.layers.Dense):
        pass

    vectors, tokens = k.Input((12,)), k.Input((3, 12))
    assert plain_dense(k.layers.Dense(4), vectors)
    assert not plain_dense(MyDense(4), vectors)
    assert not plain_dense(k.layers.Dense(4), tokens)
    assert not plain_dense(k.layers.Dense(4, dtype="mixed_float16"), vectors)
    assert not plain_dense(k.layers.Dense(4), k.Input((12,), dtype="float16"))
    assert not plain_dense(k.layers.Conv2D(4, 1), vectors)


def test_a_dense_layer_on_tokens_or_in_mixed_precision_still_explains_as_before():
    k = keras()
    k.utils.set_random_seed(0)
    inputs = k.Input((16, 16, 3))
    x = k.layers.Conv2D(6, 3, strides=2, activation="relu", name="last_conv")(inputs)
    x = k.layers.Dense(8, activation="relu", name="per_pixel")(x)  # rank-4 input: Keras's own call
    x = k.layers.GlobalAveragePooling2D()(x)
    model = k.Model(inputs, k.layers.Dense(3, activation="softmax", name="predictions")(x))
    images = np.random.default_rng(1).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    result = Explainer(model, layer="last_conv", preprocess="none").explain_batch(images)
    assert np.isfinite(result.cams).all() and result.cams.max() > 0
