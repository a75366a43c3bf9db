"""STUB: being written (issue 2)."""
import keras


class ShuffleAttention(keras.layers.Layer):
    pass
