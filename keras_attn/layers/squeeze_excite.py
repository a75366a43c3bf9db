"""STUB: being written (issue 2)."""
import keras


class SqueezeExcite(keras.layers.Layer):
    pass
