"""STUB: being written (issue 2)."""
import keras


class ShiftAndBalance(keras.layers.Layer):
    pass
