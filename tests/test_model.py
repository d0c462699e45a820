import dataclasses

from mnist_keras.config import Config
from mnist_keras.model import build_model, count_parameters


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
