"""The names of the CLI's tuners (``--tuner``), importable without KerasTuner or TensorFlow so
that ``--help`` and option errors stay instant. :data:`search.tuning.TUNER_CLASSES` maps each
to its class."""

TUNERS = ("random", "bayesian", "hyperband", "nsga2", "tpe")
