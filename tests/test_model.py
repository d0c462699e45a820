import dataclasses
import json

import keras
import numpy as np
import pytest

from mnist_keras.config import Config
from mnist_keras.constants import IMAGE_SIDE, NUM_CLASSES, NUM_PIXELS
from mnist_keras.data.mnist import preprocess_images
from mnist_keras.errors import ConfigError
from mnist_keras.model import (
    RandomAffine,
    RandomStroke,
    augmentation_layers,
    build_augmenter,
    build_model,
    count_parameters,
)


def test_seed_model_parameter_counts():
    total, trainable = count_parameters(build_model(Config()))
    assert (total, trainable) == (570_506, 568_970)


def test_seed_layer_order():
    kinds = [type(layer).__name__ for layer in build_model(Config()).layers]
    assert kinds == [
        "Dense", "BatchNormalization", "Dropout",
        "Dense", "BatchNormalization", "Dropout",
        "Dense", "Dropout",
        "Dense",
    ]


def test_widths_and_rates_come_from_config():
    config = dataclasses.replace(Config(), hidden_units=(20, 10), dropout_rates=(0.5, 0.0), batch_norm=(False, True))
    model = build_model(config)
    dense_units = [layer.units for layer in model.layers if type(layer).__name__ == "Dense"]
    assert dense_units == [20, 10, 10]
    assert [layer.rate for layer in model.layers if type(layer).__name__ == "Dropout"] == [0.5]
    assert sum(type(layer).__name__ == "BatchNormalization" for layer in model.layers) == 1
    total, _ = count_parameters(model)
    assert total == (784 * 20 + 20) + (20 * 10 + 10) + 4 * 10 + (10 * 10 + 10)


CONVNET = dataclasses.replace(
    Config(), model="cnn", conv_filters=(4, 8), conv_kernels=(5, 3), conv_pooling=(True, True),
    conv_batch_norm=(True, False), hidden_units=(16,), dropout_rates=(0.2,), batch_norm=(False,), epochs=1,
    batch_size=32, shift=0.1, rotation=10.0, zoom=0.1,
)


def test_convnet_shape_comes_from_the_recipe():
    model = build_model(CONVNET)
    convolutions = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(layer.filters, layer.kernel_size) for layer in convolutions] == [(4, (5, 5)), (8, (3, 3))]
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 2
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 1
    assert model.input_shape == (None, NUM_PIXELS) and model.output_shape == (None, NUM_CLASSES)
    with_reject = build_model(dataclasses.replace(CONVNET, not_digit_class=True))
    assert with_reject.output_shape == (None, NUM_CLASSES + 1)


@pytest.mark.parametrize("config", [Config(hidden_units=(16, 8), dropout_rates=(0.1, 0.0), batch_norm=(True, False),
                                           shift=0.1, rotation=10.0, zoom=0.1, shear=10.0, stroke=0.2), CONVNET])
def test_augmentation_acts_in_training_only_and_is_not_in_the_model(config):
    model = build_model(config)
    assert not any("random" in layer.name for layer in model.layers), "a saved or exported model never augments"
    augmenter = build_augmenter(config)
    assert any(isinstance(layer, RandomAffine) for layer in augmenter.layers)
    assert any(isinstance(layer, RandomStroke) for layer in augmenter.layers) == bool(config.stroke)
    images = np.zeros((8, IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    images[:, 8:20, 12:16] = 1.0
    pixels = images.reshape(8, NUM_PIXELS)
    trained_on = keras.ops.convert_to_numpy(augmenter(pixels, training=True))
    assert trained_on.shape == pixels.shape and not np.allclose(trained_on, pixels)
    # Still the same stroke: moved, turned, scaled, slanted or thickened a little, not erased or multiplied.
    assert 0.6 < trained_on.sum(axis=1).min() / pixels.sum(axis=1).max() < 1.5
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(augmenter(pixels, training=False)), pixels)
    assert build_augmenter(Config()) is None


def centre_and_ink(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each N×H×W×1 image's centre of mass (row, column) and its total ink."""
    images = images[..., 0]
    rows, columns = np.indices(images.shape[1:])
    ink = images.sum(axis=(1, 2))
    return (images * rows).sum(axis=(1, 2)) / ink, (images * columns).sum(axis=(1, 2)) / ink, ink


def test_random_affine_turns_scales_and_slants_about_the_centre_and_shifts_within_its_range():
    bars = np.zeros((64, IMAGE_SIDE, IMAGE_SIDE, 1), dtype=np.float32)
    bars[:, 8:20, 12:16] = 1.0  # a bar centred on the image's centre, 13.5
    centre = (IMAGE_SIDE - 1) / 2
    turned = keras.ops.convert_to_numpy(RandomAffine(rotation=90.0, seed=1)(bars, training=True))
    rows, columns, ink = centre_and_ink(turned)
    np.testing.assert_allclose(rows, centre, atol=0.05)
    np.testing.assert_allclose(columns, centre, atol=0.05)
    np.testing.assert_allclose(ink, bars[0].sum(), rtol=0.05)  # turned, not erased or smeared out
    assert np.ptp(turned[:, :, :, 0].max(axis=1).argmax(axis=1)) > 0, "each image draws its own angle"
    scaled = keras.ops.convert_to_numpy(RandomAffine(zoom=0.3, seed=1)(bars, training=True))
    rows, columns, ink = centre_and_ink(scaled)
    np.testing.assert_allclose(rows, centre, atol=0.05)
    # Scaling by s changes the ink by 1/s², with s in [0.7, 1.3].
    assert bars[0].sum() / 1.3 ** 2 * 0.95 < ink.min() < ink.max() < bars[0].sum() / 0.7 ** 2 * 1.05
    assert ink.max() / ink.min() > 1.5, "zoom draws both ways"
    shifted = keras.ops.convert_to_numpy(RandomAffine(shift=0.1, seed=1)(bars, training=True))
    rows, columns, ink = centre_and_ink(shifted)
    most = 0.1 * IMAGE_SIDE
    for moved in (rows - centre, columns - centre):
        assert np.abs(moved).max() <= most + 0.05 and moved.min() < -most / 2 and moved.max() > most / 2
    np.testing.assert_allclose(ink, bars[0].sum(), rtol=1e-3)
    slanted = keras.ops.convert_to_numpy(RandomAffine(shear=20.0, seed=1)(bars, training=True))
    rows, columns, ink = centre_and_ink(slanted)
    np.testing.assert_allclose(columns, centre, atol=0.05)
    np.testing.assert_allclose(ink, bars[0].sum(), rtol=1e-3)
    # The bar's columns lean: its top and bottom rows move apart sideways, either way,
    # by at most tan(20°) over the rows between them.
    lean = centre_and_ink(slanted[:, 8:10])[1] - centre_and_ink(slanted[:, 18:20])[1]
    assert lean.min() < -1 and lean.max() > 1 and np.abs(lean).max() <= np.tan(np.radians(20.0)) * 10 + 0.05


def test_random_stroke_makes_strokes_bolder_or_thinner_by_up_to_one_pixel():
    bars = np.zeros((64, IMAGE_SIDE, IMAGE_SIDE, 1), dtype=np.float32)
    bars[:, 8:20, 12:16] = 1.0  # a bar 4 pixels wide
    changed = keras.ops.convert_to_numpy(RandomStroke(1.0, seed=1)(bars, training=True))
    ink = changed.sum(axis=(1, 2, 3)) / bars[0].sum()
    # Fully bolder is 6 × 14 pixels, fully thinner 2 × 10, against 4 × 12.
    assert ink.min() >= 20 / 48 - 1e-6 and ink.max() <= 84 / 48 + 1e-6
    assert ink.min() < 0.8 and ink.max() > 1.2, "each image draws its own weight, both ways"
    assert changed.min() >= 0.0 and changed.max() <= 1.0
    np.testing.assert_array_equal(changed[:, 21:], 0.0)  # never more than one pixel beyond the stroke
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(RandomStroke(1.0)(bars)), bars)


def test_augmentation_layers_show_each_transformation_alone():
    shown = augmentation_layers(CONVNET)
    assert [layer.name for layer in shown] == ["random_shift", "random_rotation", "random_zoom"]
    assert [(layer.shift, layer.rotation, layer.zoom) for layer in shown] == [
        (CONVNET.shift, 0.0, 0.0), (0.0, CONVNET.rotation, 0.0), (0.0, 0.0, CONVNET.zoom)]
    shown = augmentation_layers(dataclasses.replace(CONVNET, shift=0.0, shear=10.0, stroke=0.5))
    assert [layer.name for layer in shown] == ["random_rotation", "random_zoom", "random_shear", "random_stroke"]
    assert shown[2].shear == 10.0 and shown[3].stroke == 0.5
    assert augmentation_layers(Config()) == []


def test_each_family_trains_saves_and_loads_in_plain_keras(tmp_path, tiny_mnist):
    """The fast sibling of the export test below: the same two families, without the run's files or ONNX."""
    from mnist_keras.model import load_run_model
    from mnist_keras.training.train import train

    pixels = preprocess_images(tiny_mnist.x_test)
    for family, config in (("mlp", dataclasses.replace(Config(), hidden_units=(16,), dropout_rates=(0.1,),
                                                         batch_norm=(True,), epochs=1, batch_size=32)),
                           ("cnn", dataclasses.replace(CONVNET, not_digit_class=False))):
        run_dir = tmp_path / family
        run_dir.mkdir()
        trained = train(config, tiny_mnist, verbose=0)
        trained.model.save(run_dir / "model.keras")
        (run_dir / "config.json").write_text(json.dumps({"recipe": config.to_dict()}))
        expected = np.asarray(trained.model.predict_on_batch(pixels))
        loaded = keras.saving.load_model(run_dir / "model.keras")  # plain Keras, no mnist_keras needed
        np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(pixels)), expected, atol=1e-6)
        np.testing.assert_allclose(np.asarray(load_run_model(run_dir).predict_on_batch(pixels)), expected, atol=1e-6)


@pytest.mark.slow
def test_each_family_trains_saves_loads_and_exports(tmp_path, tiny_mnist):
    from mnist_keras.inference.export import TOLERANCE, export_run, onnx_probabilities
    from mnist_keras.model import load_run_model
    from mnist_keras.training.run import train_run

    pixels = preprocess_images(tiny_mnist.x_test)
    for family, config in (("mlp", dataclasses.replace(Config(), hidden_units=(16,), dropout_rates=(0.1,),
                                                         batch_norm=(True,), epochs=1, batch_size=32)),
                           ("cnn", dataclasses.replace(CONVNET, not_digit_class=False))):
        run_dir = tmp_path / family
        train_run(config, tiny_mnist, run_dir, verbose=0, export_onnx=False)
        loaded = keras.saving.load_model(run_dir / "model.keras")  # plain Keras, no mnist_keras needed
        ours = load_run_model(run_dir)
        expected = np.asarray(ours.predict_on_batch(pixels))
        np.testing.assert_allclose(np.asarray(loaded.predict_on_batch(pixels)), expected, atol=1e-6)
        exported = export_run(run_dir, "onnx", tmp_path / f"{family}.onnx")
        np.testing.assert_allclose(onnx_probabilities(exported, pixels), expected, rtol=0, atol=TOLERANCE)


def test_convnet_recipe_fields_are_checked():
    with pytest.raises(ConfigError, match="conv_kernels"):
        dataclasses.replace(CONVNET, conv_kernels=(3,))
    with pytest.raises(ConfigError, match="model"):
        dataclasses.replace(CONVNET, model="transformer")
    with pytest.raises(ConfigError, match="rotation"):
        dataclasses.replace(CONVNET, rotation=180.0)
    with pytest.raises(ConfigError, match="validation_split"):
        Config(validation_split=0.0)
