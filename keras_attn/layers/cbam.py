"""STUB: being written (issue 2)."""
import keras


class CBAM(keras.layers.Layer):
    pass
