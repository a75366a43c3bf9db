"""The names of the CLI's tuners (``--tuner``), importable without KerasTuner or TensorFlow so
that ``--help`` and option errors stay instant. :data:`search.tuning.TUNER_CLASSES` maps each
to its class."""

TUNERS = ("random", "bayesian", "hyperband", "nsga2", "tpe")
#: ``--tuner hyperband``'s reduction factor (KerasTuner's default): each round keeps 1/3 of its
#: configurations and trains them 3x longer.
HYPERBAND_FACTOR = 3
