"""Optimizers that models trained with :mod:`search` carry in their ``.keras`` files.

They live in ``keras_attn`` (not in ``search``) so that ``import keras_attn`` is enough to load
any model the search saves, in a fresh process, whatever precision and strategy trained it. The
registered name keeps its original package, ``keras_attn_search``, so files saved before the move
still load.
"""

from __future__ import annotations

import keras

__all__ = ["ReplicaSafeLossScaleOptimizer"]


@keras.saving.register_keras_serializable(package="keras_attn_search")
class ReplicaSafeLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' ``LossScaleOptimizer`` with the finite-gradient check taken over *all* replicas.

    Keras 3.15's ``LossScaleOptimizer`` under a merge-call strategy (``MirroredStrategy``) decides
    whether to apply or skip a step from the first replica's gradients only, assuming they were
    all-reduced; but the all-reduce happens later, inside the inner optimizer. When replica 0's
    gradients are finite and another replica's overflowed in float16, the step is applied with
    the summed inf/NaN gradients and the weights become NaN. Here the step is applied only when
    every replica's gradients are finite, as with one device. Identical otherwise (and to Keras'
    own class without a strategy).
    """

    def _tf_apply(self, grads, trainable_variables=None):
        import tensorflow as tf  # this path only runs under the TensorFlow backend

        if tf.distribute.in_cross_replica_context() or \
                tf.__internal__.distribute.strategy_supports_no_merge_call():
            return super()._tf_apply(grads, trainable_variables)

        def handle_cross_replica(distribution, grads, trainable_variables):
            finite_per_replica = distribution.extended.call_for_each_replica(
                self.check_finite, args=(grads,)
            )
            finite = tf.reduce_all(
                tf.stack(distribution.experimental_local_results(finite_per_replica))
            )

            def apply_fn():
                distribution.extended.call_for_each_replica(
                    self._stateful_handle_finite_grads, args=(grads, trainable_variables)
                )

            keras.ops.cond(finite, apply_fn, self._stateful_handle_non_finite_grads)

        tf.distribute.get_replica_context().merge_call(
            handle_cross_replica, args=(grads, trainable_variables)
        )
