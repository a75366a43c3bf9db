"""A custom search space under the paired protocol: Shift-and-Balance per layer vs the baseline.

The SB paper (Luo et al., arXiv 2103.13080) varies the control-factor initialisation lambda
(Table 8: 0.01 ... 1.0) and the gate on the attention branch (Table 9: tanh, sigmoid, softmax,
relu, none). This fixes attention and placement, searches those two, and trains each configuration
and the baseline with the same two seeds (same initial backbone weights and data order), so the
leaderboard's paired differences measure SB, not the seed.

    python examples/custom_space_sb.py     # offline, real Fashion-MNIST, a few minutes on 2 cores
"""

from search.data import load_dataset
from search.protocol import Protocol
from search.report import collect_trials, configuration_rows, leaderboard_text
from search.tuning import make_tuner

data = load_dataset("fashion_mnist", image_size=None, channels=None, train_size=4000,
                    validation_split=2000, batch_size=64)
tuner, _ = make_tuner(
    backbone="resnet20",
    input_shape=data.input_shape,  # (28, 28, 1): the small-image backbones take any size
    num_classes=data.num_classes,
    out="runs",
    project_name="sb_space",
    epochs=1,
    steps_per_epoch=data.steps_per_epoch["train"],
    max_trials=4,  # the baseline first, then 3 SB configurations
    learning_rate=0.05,  # one recipe for every trial
    protocol=Protocol.with_repeats(2, seed=0, train_data=data.train_with_seed),
    space={
        "attention": ["none", "sb"],
        "placement": "layer",  # a scalar fixes a hyperparameter
        "lambda_init": [0.01, 0.1, 1.0],  # a list restricts its choices
        "gate": ["tanh", "sigmoid", "none"],
    },
)
tuner.search(data.train, validation_data=data.val, epochs=1, verbose=2)
print(leaderboard_text(configuration_rows(collect_trials(tuner), num_classes=data.num_classes)))
