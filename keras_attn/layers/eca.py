"""STUB: being written (issue 2)."""
import keras


class ECA(keras.layers.Layer):
    pass
