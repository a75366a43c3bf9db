"""A custom search space: only Shift-and-Balance, per layer, searching the SB paper's ablations.

The SB paper (Luo et al., arXiv 2103.13080) varies the control-factor initialisation lambda
(Table 8: 0.01 ... 1.0) and the gate on the attention branch (Table 9: tanh, sigmoid, softmax,
relu, none). This fixes attention and placement and searches those two plus the learning rate.

    python examples/custom_space_sb.py            # offline, real Fashion-MNIST, ~5 min on 2 cores
"""

import keras
import keras_tuner as kt

from search.data import load_dataset
from search.hypermodel import AttentionHyperModel

data = load_dataset("fashion_mnist", image_size=32, train_size=6000, batch_size=128)
hypermodel = AttentionHyperModel(
    backbone="mobilenetv2",
    input_shape=data.input_shape,
    num_classes=data.num_classes,
    backbone_kwargs={"alpha": 0.35},
    optimizer="adam",  # converges in the 2 short epochs below; the papers use SGD for 100+
    space={
        "attention": "sb",  # a scalar fixes a hyperparameter
        "placement": "layer",
        "lambda_init": [0.01, 0.1, 1.0],  # a list restricts its choices
        "gate": ["tanh", "sigmoid", "none"],
    },
)
tuner = kt.RandomSearch(hypermodel, objective="val_accuracy", max_trials=3,
                        directory="runs", project_name="sb_space", overwrite=True, seed=0)
tuner.search(data.train, validation_data=data.val, epochs=2, verbose=2)
tuner.results_summary(3)
best = tuner.get_best_models(1)[0]
print("test:", best.evaluate(data.test, verbose=0, return_dict=True))
