"""The choice lists of :mod:`search.training`'s arguments, in a module that imports nothing.

:mod:`search.training` imports TensorFlow; the CLI reads these lists from here instead (through
``search.training``'s re-exports or directly), so that ``--help`` and its option errors stay
instant and list the same choices as the functions that take them.
"""

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
# The strategies resolve_strategy builds; "multi_worker" is a name it recognises only to explain
# why it refuses it (see search.training.MULTI_WORKER_MESSAGE).
SUPPORTED_STRATEGIES = ("auto", "one_device", "mirrored")
STRATEGIES = SUPPORTED_STRATEGIES + ("multi_worker",)
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")
