"""STUB: being written (issue 2)."""
import keras


class DCASqueezeExcite(keras.layers.Layer):
    pass


class DCACBAM(keras.layers.Layer):
    pass


class DCAShiftAndBalance(keras.layers.Layer):
    pass
